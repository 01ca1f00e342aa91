"""`StoreHealth`: what one Redis store's traffic says about its server; the breaker that makes a dead one cheap.

Every command's outcome passes here (from `pipelining.CommandQueue`):
- a connection cause (`causes.CONNECTION`: refused, lost, stalled, TLS, credentials) opens the
  breaker: from then on every command fails at once with that same error, costing no I/O and no
  wait, until a probe (`PING` on a fresh connection, run by the queue every `retry` seconds, with
  backoff) answers and closes it again. A *slow* Redis never gets here: only a refused, lost or
  silent one does (resp.py);
- a command cause (NOPERM, OOM, MOVED, ...) leaves the breaker closed (other commands still work)
  and is remembered for `window` seconds.

Logging, once per change, never per request: a line when a cause starts (naming it, the server's
own words, and what to do), one when it changes, one when it is over (a connection cause: the
first answer; a command cause: an answer after `window` seconds without it).

`problems()` is what `/readyz` and `/status` show: the causes seen in the last `window` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.store.causes import CONNECTION, HINTS
from gateway.store.protocol import StoreError

log = logging.getLogger("gateway.store")
Now = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Problem:
    """One cause seen recently: its name, the last message, seconds since last seen."""

    cause: str
    detail: str
    age: float


class StoreHealth:
    """The breaker and the recent causes of one store (`name`: "main" or "cache", for messages)."""

    def __init__(self, name: str = "main", *, window: float = 10.0, now: Now = time.monotonic) -> None:
        self.name = name
        self.window = window
        self._now = now
        self.down: StoreError | None = None  # the breaker is open: every command fails with this at once
        self._seen: dict[str, tuple[float, str]] = {}  # cause -> (last seen, last message)
        self._logged: str | None = None  # the cause of the current episode, as last logged

    def failed(self, err: StoreError) -> None:
        """A command failed with `err`: remember its cause; a connection cause opens the breaker."""
        now = self._now()
        self._seen[err.cause] = (now, str(err))
        if err.cause in CONNECTION:
            self.down = err
        if err.cause != self._logged:
            log.warning("redis (%s store): %s: %s. %s", self.name, err.cause.upper(), HINTS.get(err.cause, ""),
                        _server_words(err), extra={"store_cause": err.cause})
            self._logged = err.cause

    def answered(self) -> None:
        """A command was answered: a connection outage is over; a command cause is over once quiet `window` s."""
        if self.down is not None:
            self.down = None
        if self._logged is None:
            return
        seen = self._seen.get(self._logged)
        if self._logged in CONNECTION or seen is None or self._now() - seen[0] >= self.window:
            log.warning("redis (%s store): answering again (after %s)", self.name, self._logged.upper())
            self._logged = None

    def problems(self) -> list[Problem]:
        """The causes seen within the last `window` seconds, most recent first (the open breaker's included)."""
        now = self._now()
        out = [Problem(cause, detail, round(now - at, 3)) for cause, (at, detail) in self._seen.items()
               if now - at < self.window or (self.down is not None and cause == self.down.cause)]
        return sorted(out, key=lambda p: p.age)


def _server_words(err: StoreError) -> str:
    text = str(err).removeprefix("redis: ")
    return f"({text})" if text else ""
