"""One contract for the endpoint scripts (record, lease, wake, touch): Lua on fakeredis and a real Redis, and
the memory twins, held to the same answers."""

from __future__ import annotations

from gateway.policies.endpoints.record import EndpointRecord
from gateway.policies.endpoints.shared import EndpointBoard
from gateway.store.protocol import Store


def board(store: Store, prefix: str) -> EndpointBoard:
    return EndpointBoard(store, prefix, "acme/acme-chat")


async def test_the_later_reading_wins_whichever_lands_last(store: Store, key_prefix: str) -> None:
    b = board(store, key_prefix)
    newer = EndpointRecord(checked_at=200.0, state="running", url="http://ep.test", ready=True, since=150.0)
    older = EndpointRecord(checked_at=100.0, state="scaledToZero", url="http://ep.test", since=90.0)
    assert await b.write(newer)
    assert not await b.write(older)
    assert await b.read() == newer
    assert await b.write(EndpointRecord(checked_at=200.0, state="paused", since=200.0))  # a tie is written


async def test_one_lease_holder_at_a_time(store: Store, key_prefix: str) -> None:
    first, second = board(store, key_prefix), board(store, key_prefix)
    assert await first.lease(5) and await first.lease(5)  # taken, then renewed
    assert not await second.lease(5)


async def test_one_wake_claim_and_a_count(store: Store, key_prefix: str) -> None:
    b = board(store, key_prefix)
    assert await b.claim_wake(1000.0, 60) == 1
    assert await b.claim_wake(1001.0, 60) == 0
    assert await b.wake_started() == 1000.0
    await b.end_wake()
    assert await b.wake_started() is None
    assert await b.claim_wake(2000.0, 60) == 2
    assert await b.wake_ups() == 2


async def test_traffic_keeps_the_latest_moment(store: Store, key_prefix: str) -> None:
    b = board(store, key_prefix)
    assert await b.touch(500.0, 60) == 500.0
    assert await b.touch(400.0, 60) == 500.0  # a late report never moves the timer back
    assert await b.touch(600.5, 60) == 600.5
    assert await b.last_used() == 600.5


async def test_the_idle_action_is_claimed_once(store: Store, key_prefix: str) -> None:
    assert await board(store, key_prefix).claim_idle(60)
    assert not await board(store, key_prefix).claim_idle(60)
