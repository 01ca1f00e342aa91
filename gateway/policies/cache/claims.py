"""The single-flight's two fused store steps, and their memory twins.

- `claim`: `cache_lookup_or_lock.lua`: the entry, or the lock (lead), or the holder's token
  (follow, counted as a waiter): what used to be a GET, a SET NX, a GET of the lock and a
  re-check GET, in one round trip and atomically (a leader never leads over an entry).
- `finish`: `cache_finish.lua`: the entry or the outcome, then the lock released if still ours,
  then a notification only when some follower registered: one command where there were three,
  and no PUBLISH for the common flight nobody followed. On Redis it is queued without waiting
  (store/ordered.py): the answer goes to the client without this round trip, and this process's
  later commands (its next lookup of the same key) still run after it.

The flight's keys derive from the entry key (`FlightKeys`); all share its hash tag.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from gateway.policies.cache.entry import Envelope
from gateway.store import Store
from gateway.store.ordered import send_script

LOOKUP_OR_LOCK = "cache_lookup_or_lock"
FINISH = "cache_finish"
_FOUND, _LEAD, _FOLLOW = 0, 1, 2


class FlightKeys:
    """The store keys of one flight, derived from the entry key."""

    def __init__(self, entry: str) -> None:
        self.entry = entry
        self.lock = f"{entry}:lock"
        self.outcome = f"{entry}:outcome"
        self.channel = f"{entry}:done"
        self.waiters = f"{entry}:waiters"


@dataclass(slots=True)
class Claim:
    """What `claim` found: the raw entry, or the lock (lead), or the holder's token (follow)."""

    token: str
    entry: bytes | None = None
    env: Envelope | None = None  # the entry decoded, when fit for the plan (set by the cache)
    lead: bool = False
    holder: bytes | None = None
    taken: bool = False  # the coalesce stage used it (else the cache stage releases a lead claim)


def send_claim(store: Store, keys: FlightKeys, token: str, lock_ttl: float) -> Awaitable[Any]:
    """Look the entry up and, when absent, take the lock or learn its holder: one atomic round trip.

    Queued now on a pipelined store; read the reply with `read_claim`.
    """
    return send_script(store, LOOKUP_OR_LOCK, [keys.entry, keys.lock, keys.waiters],
                       [token, max(1, int(lock_ttl * 1000))])


def read_claim(reply: Any, token: str) -> Claim:
    """The script's reply as a Claim."""
    kind = int(reply[0])
    if kind == _FOUND:
        return Claim(token, entry=_as_bytes(reply[1]))
    if kind == _LEAD:
        return Claim(token, lead=True)
    return Claim(token, holder=_as_bytes(reply[1]))


def finish(store: Store, keys: FlightKeys, token: str, what: str, payload: bytes, ttl: float) -> Any:
    """Queue (Redis) or run (memory) the leader's last step; awaitable, answering [released, waiters]."""
    return send_script(store, FINISH, [keys.entry, keys.lock, keys.outcome, keys.waiters],
                       [token, what, payload, max(1, int(ttl * 1000)), keys.channel])


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()




