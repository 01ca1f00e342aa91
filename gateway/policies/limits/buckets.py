"""Token buckets in the store: the Python face of `store/scripts/token_bucket.lua` (and its memory twin).

`decide(store, buckets)` runs the script once for a group of buckets that share one hash tag:
all of them pay or none does. The limiters call it through `store/guard.py`'s `StoreGuard`.

Invariants (held for both stores by tests/contract/test_bucket_contract.py):
- a denied call changes no bucket; refill is fractional; time going backwards refills nothing;
- `Decision.wait` is the exact time the buckets need (denied) or the queueing delay (admitted
  into debt, used by outbound pacing);
- the memory twin does the same float operations in the same order as the Lua script.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.store.ordered import send_script
from gateway.store.protocol import Store

SCRIPT = "token_bucket"
Mode = Literal["take", "force"]


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket of one decision: where it lives, how it refills, what this call costs."""

    key: str
    rate: float  # tokens per second
    capacity: float
    cost: float = 1.0
    max_wait: float = 0.0  # > 0: may go into debt, the caller waits (outbound pacing)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the script answered for a group of buckets."""

    allowed: bool
    wait: float  # allowed: delay before proceeding; denied: seconds until it would be admitted
    remaining: tuple[float, ...]  # per bucket, in the order given


def script_args(buckets: Sequence[Bucket], mode: Mode, now: float | None) -> tuple[list[str], list[str]]:
    """KEYS and ARGV for one call of the script."""
    args = ["" if now is None else repr(now), mode]
    for b in buckets:
        args += [repr(b.rate), repr(b.capacity), repr(b.cost), repr(b.max_wait)]
    return [b.key for b in buckets], args


def parse_reply(raw: Any) -> Decision:
    """The script's reply (bytes or str numbers) as a Decision."""
    allowed, wait, *remaining = raw
    return Decision(bool(int(allowed)), max(0.0, float(wait)), tuple(float(r) for r in remaining))


async def decide(store: Store, buckets: Sequence[Bucket], *, mode: Mode = "take",
                 now: float | None = None) -> Decision:
    """Take (or force) every bucket's cost in one atomic store round trip."""
    if not buckets:
        return Decision(True, 0.0, ())
    keys, args = script_args(buckets, mode, now)
    return parse_reply(await store.run_script(SCRIPT, keys, args))


def send_decision(store: Store, buckets: Sequence[Bucket], *, mode: Mode = "take",
                  now: float | None = None) -> Awaitable[Any]:
    """The script for `buckets`, queued now on a pipelined store (see store/ordered.py); its raw reply."""
    keys, args = script_args(buckets, mode, now)
    return send_script(store, SCRIPT, keys, args)








