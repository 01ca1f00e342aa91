"""The embedded store's expiry sweep: it reaches every expired key, whatever was written before it."""

from __future__ import annotations

from gateway.core.clock import FakeClock
from gateway.store.memory import MemoryState


def test_expired_keys_behind_long_lived_ones_are_swept() -> None:
    clock = FakeClock()
    state = MemoryState(clock)
    for i in range(2000):  # long-lived entries written first (a cache), then short-lived locks
        state.set(f"entry:{i}", b"x", ttl=3600)
    for i in range(500):
        state.set(f"lock:{i}", b"t", ttl=1)
    clock.advance(2)
    state.sweep()
    assert not [k for k in state.data if k.startswith("lock:")]
    assert len(state.data) == 2000


def test_a_key_written_again_keeps_its_new_expiry_and_stale_heap_items_are_dropped() -> None:
    clock = FakeClock()
    state = MemoryState(clock)
    for _ in range(5000):  # one bucket rewritten on every request
        state.set("bucket", b"b", ttl=1)
    state.set("bucket", b"b", ttl=10)
    clock.advance(2)
    state.sweep()
    assert state.get("bucket") == b"b"
    assert len(state._heap) <= 2 * len(state.expiry) + 1024  # rebuilt: the stale items are gone


def test_writes_sweep_on_their_own() -> None:
    clock = FakeClock()
    state = MemoryState(clock)
    for i in range(100):
        state.set(f"old:{i}", b"x", ttl=1)
    clock.advance(2)
    for i in range(MemoryState.SWEEP_EVERY):
        state.set(f"new:{i}", b"x")
    assert not [k for k in state.data if k.startswith("old:")]
