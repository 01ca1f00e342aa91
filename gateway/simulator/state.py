"""`SimState`: the one object a simulator app owns (stats, fault book, endpoints, config, clock, fast cache).

Reached through `app[SIM_STATE]`; there is no module-level state. `reset()` restores a fresh
simulator except for requests still in flight, which keep their in-flight count.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.core.clock import Clock
from gateway.simulator.config import FaultSpec, SimConfig
from gateway.simulator.endpoints_plane import ControlPlane
from gateway.simulator.faults import FaultBook
from gateway.simulator.stats import ReceivedRequest, Stats
from gateway.simulator.wire import Rendered

CacheKey = tuple[str, str, str, bytes]
_FAST_CACHE_LIMIT = 4096


class SimState:
    """Everything a running simulator knows."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.stats = Stats(config.record_limit, keep_records=not config.fast)
        scripts = {name: spec.faults for name, spec in config.models.items() if spec.faults is not None}
        token = config.token.get_secret_value() if config.token is not None else None
        self.faults = FaultBook(scripts, token, clock)
        self.endpoints = ControlPlane(config.control_plane, clock)
        self._fast_cache: dict[CacheKey, Rendered] = {}

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Requests received (oldest first; none are kept in fast mode)."""
        return self.stats.requests

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self.stats.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests ever handled at once (since the last reset)."""
        return self.stats.max_in_flight

    @property
    def cancelled(self) -> int:
        """Requests whose client went away before the response finished."""
        return self.stats.cancelled

    def count(self, model: str | None = None, path_prefix: str | None = None) -> int:
        """Requests received, optionally filtered by model and path prefix."""
        return self.stats.count(model, path_prefix)

    def reset(self) -> None:
        """Forget requests, counters, run-time fault scripts and fault progress; endpoints restart as configured."""
        self.stats.reset()
        self.faults.reset()
        self.endpoints.reset()
        self._fast_cache.clear()

    def set_faults(self, model_or_endpoint: str, faults: list[FaultSpec]) -> None:
        """Script the faults of a model id or endpoint name (replaces its script, restarts it)."""
        self.faults.set(model_or_endpoint, faults)

    def rendered(self, key: CacheKey, render: Callable[[], Rendered]) -> Rendered:
        """`render()`, memoised by request in fast mode."""
        if not self.config.fast:
            return render()
        hit = self._fast_cache.get(key)
        if hit is None:
            if len(self._fast_cache) >= _FAST_CACHE_LIMIT:
                self._fast_cache.clear()
            hit = self._fast_cache[key] = render()
        return hit


SIM_STATE = web.AppKey("sim_state", SimState)
