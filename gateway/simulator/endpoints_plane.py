"""`ControlPlane`: the simulated endpoints of one simulator, their tokens, and the clock that drives them.

Owned by `SimState` (`state.endpoints`); nothing here is module-level. The machines themselves never read
the clock (`endpoints_state`); this object reads it once per action and hands `now` down. A request that
asks to be held during a scale-up waits here, on the injected clock, and is woken early when a control
action changes some endpoint (so a `/_sim/` state change or a pause reaches held requests at once).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.core.clock import Clock
from gateway.simulator.endpoints_auth import TokenBook
from gateway.simulator.endpoints_config import ControlPlaneSpec
from gateway.simulator.endpoints_state import EndpointMachine


class ControlPlane:
    """Every configured endpoint's machine, by name."""

    def __init__(self, spec: ControlPlaneSpec, clock: Clock) -> None:
        self.spec = spec
        self.clock = clock
        self.tokens = TokenBook(spec)
        self._machines = self._build()
        self._changed: asyncio.Future[None] | None = None

    def _build(self) -> dict[str, EndpointMachine]:
        now = self.clock.monotonic()
        return {name: EndpointMachine(name, spec, now) for name, spec in self.spec.endpoints.items()}

    def get(self, name: str) -> EndpointMachine | None:
        """The endpoint called `name`, if the control plane manages it."""
        return self._machines.get(name)

    def in_namespace(self, namespace: str) -> list[EndpointMachine]:
        """The endpoints of a namespace, by name."""
        return sorted((m for m in self._machines.values() if m.spec.namespace == namespace), key=lambda m: m.name)

    def now(self) -> float:
        """The clock's monotonic time."""
        return self.clock.monotonic()

    def wall(self, monotonic: float) -> float:
        """The wall time (epoch seconds) of a monotonic instant."""
        return self.clock.time() - self.clock.monotonic() + monotonic

    def reset(self) -> None:
        """Every endpoint back to its configured state, counters at zero; held requests re-check."""
        self._machines = self._build()
        self.changed()

    def changed(self) -> None:
        """Wake held requests so they re-read their endpoint's state."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def snapshot(self, name: str | None = None) -> dict[str, Any]:
        """States, in-flight counts and counters, for `/_sim/endpoints` (settled to now)."""
        now = self.now()
        out: dict[str, Any] = {}
        for machine in self._machines.values():
            if name is not None and machine.name != name:
                continue
            machine.settle(now)
            out[machine.name] = {
                "namespace": machine.spec.namespace,
                "state": machine.state,
                "since": machine.since,
                "in_flight": machine.in_flight,
                "counters": machine.counters.as_dict(),
            }
        return out

    async def hold(self, machine: EndpointMachine, seconds: float, gone: asyncio.Future[None]) -> bool:
        """Wait until `machine` serves (True), or `seconds` pass, or it stops starting, or the client
        goes (`gone` completes): False."""
        deadline = self.now() + seconds
        while True:
            now = self.now()
            machine.settle(now)
            if machine.serving:
                return True
            ready = machine.ready_at()
            if ready is None or now >= deadline or gone.done():
                return False
            await self._wait(min(ready, deadline) - now, gone)

    async def _wait(self, seconds: float, gone: asyncio.Future[None]) -> None:
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            # The shared `_changed` future is never cancelled here: other held requests wait on it too.
            await asyncio.wait({sleeper, self._changed, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
