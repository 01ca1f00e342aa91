"""Test-support code shared by several suites (not tests themselves; nothing here is collected).

- `redis_server`: the shared Redis (reachability, the CI rule) and private throw-away `redis-server`s.
- `processes`: real `hf-gateway serve` / `simulate` processes on free ports, always stopped.

The fixtures built on these are exposed by `tests/conftest.py`, so any test can request them.
"""
