"""Fault-suite fixtures: one `Tally` for the whole suite, printed as one line at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .rig import Tally


def report(config: pytest.Config, tally: Tally) -> None:
    """Print the tally's one-line summary where CI output shows it (even under -q)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    line = tally.line()
    if reporter is None:  # pragma: no cover - running without the terminal plugin
        print(line)
        return
    if capture is None:  # pragma: no cover - running with -p no:capture
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="session")
def faults_tally(pytestconfig: pytest.Config) -> Iterator[Tally]:
    tally = Tally("faults")
    yield tally
    report(pytestconfig, tally)


@pytest.fixture
def tally(faults_tally: Tally) -> Iterator[Tally]:
    """The suite's tally; a test fails if any of its answers was not one it expected."""
    seen = len(faults_tally.unexpected)
    yield faults_tally
    new = faults_tally.unexpected[seen:]
    assert not new, f"unexpected answers: {new}"
