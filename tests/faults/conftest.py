"""Fault-suite fixtures: one `Tally` for the whole suite, printed as one line at the end of the run."""

from __future__ import annotations

from tests.support.rig import tally_fixtures

faults_tally, tally = tally_fixtures("faults", "session")
