"""`Readiness`: what `/readyz` and `/status` say about the Redis stores and whether the limiter can run.

Ready means: the main store answers PING and, when rate limits are configured on Redis, one
bucket decision runs end to end (the script, its `TIME`, its writes: what a request needs), and
no cluster redirect (MOVED / CROSSSLOT) was seen in the last few seconds, which a probe on one
key could miss. The cache's own Redis is shown but never makes the gateway unready: the cache
degrades to bypass, the requests still flow.

Every failure is named by its cause (store/causes.py) and the server's own words; never a URL
nor a password (the messages are built without them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.store.health import StoreHealth
from gateway.store.protocol import Store, StoreError

REDIRECTS = frozenset(("moved", "crossslot"))  # a probe on one key may land on the right node: go by traffic


@dataclass(frozen=True, slots=True)
class Readiness:
    """The stores and the limiter check `create_app` built."""

    store: Store
    cache_store: Store
    limiter_check: Any = None  # async () -> StoreError | None (RateLimitStage.check), None without limits

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the JSON body of /readyz)."""
        ok = await self.store.ping()
        body: dict[str, Any] = {"store": self.store.kind, "store_ok": ok}
        failure: StoreError | None = None
        if ok and self.limiter_check is not None:
            failure = await self.limiter_check()
        health = _health(self.store)
        redirects = [p for p in health.problems() if p.cause in REDIRECTS] if health is not None else []
        if failure is None and redirects:
            failure = StoreError(redirects[0].detail, redirects[0].cause)
        if failure is None and not ok and health is not None and health.down is not None:
            failure = health.down
        if failure is not None:
            body["limiter"] = {"ok": False, "cause": failure.cause, "detail": str(failure)}
        elif self.limiter_check is not None:
            body["limiter"] = {"ok": ok}
        body["redis"] = self.stores()
        ready = ok and failure is None
        return ready, {"status": "ready" if ready else "unready", **body}

    def stores(self) -> dict[str, Any]:
        """Per Redis store ("main", and "cache" when the cache has its own): state and recent causes."""
        out: dict[str, Any] = {}
        seen: set[int] = set()
        for name, store in (("main", self.store), ("cache", self.cache_store)):
            health = _health(store)
            if health is None or id(health) in seen:
                continue
            seen.add(id(health))
            problems = health.problems()
            state = "down" if health.down is not None else ("failing" if problems else "ok")
            out[name] = {"state": state, "problems": [
                {"cause": p.cause, "detail": p.detail, "seconds_ago": p.age} for p in problems]}
        return out


def _health(store: Store) -> StoreHealth | None:
    health = getattr(store, "health", None)
    return health if isinstance(health, StoreHealth) else None
