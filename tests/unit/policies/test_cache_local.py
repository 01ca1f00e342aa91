"""The in-process copy of hot cache entries: bounded by count, bytes and time."""

from __future__ import annotations

from gateway.core.clock import FakeClock
from gateway.policies.cache.entry import Envelope
from gateway.policies.cache.local import LocalEntries


def _env(size: int) -> Envelope:
    return Envelope(kind="reply", meta={}, body=b"x" * size)


def test_an_entry_lives_at_most_local_ttl_and_never_past_its_own_expiry() -> None:
    clock = FakeClock()
    local = LocalEntries(clock, ttl=1.0, max_entries=10, max_bytes=1000)
    local.put("a", _env(1), ttl=100)
    local.put("b", _env(1), ttl=0.2)  # the entry itself has 0.2 s left in the store
    clock.advance(0.5)
    assert local.get("a") is not None and local.get("b") is None
    clock.advance(0.6)
    assert local.get("a") is None and len(local) == 0


def test_least_recently_used_goes_first_past_the_count_or_the_bytes() -> None:
    clock = FakeClock()
    local = LocalEntries(clock, ttl=10.0, max_entries=3, max_bytes=250)
    for k in "abc":
        local.put(k, _env(50), ttl=100)
    assert local.get("a") is not None  # a is now the most recent
    local.put("d", _env(50), ttl=100)
    assert local.get("b") is None and {k for k in "acd" if local.get(k) is not None} == set("acd")
    local.put("e", _env(210), ttl=100)  # bytes: only e fits with nothing else
    assert len(local) == 1 and local.get("e") is not None
    local.put("f", _env(300), ttl=100)  # larger than the whole budget: not held at all
    assert local.get("f") is None


def test_off_when_local_ttl_is_zero() -> None:
    assert not LocalEntries(FakeClock(), ttl=0.0, max_entries=10, max_bytes=10).enabled
