"""Fault-suite fixtures: one `Tally` for the whole suite, printed as one line at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .rig import Tally, report


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
