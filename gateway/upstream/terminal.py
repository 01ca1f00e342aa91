"""The pipeline's terminal: exactly one call to one deployment (`call.target`, else the first)."""

from __future__ import annotations

import asyncio

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.errors import UpstreamTimeout


class UpstreamTerminal:
    """Sends the call to its target deployment within the call's deadline."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, call: Call) -> Answer:
        dep = call.target or call.route.deployments[0]
        call.deployment = dep.id
        start = self._clock.monotonic()
        remaining = call.deadline - start
        if remaining <= 0:
            raise UpstreamTimeout("the request's deadline passed before the upstream could be called")
        try:
            async with asyncio.timeout(remaining) as scope:
                return await dep.upstream.send(call, dep.target_model(call.model))
        except TimeoutError as exc:
            if scope.expired():
                raise UpstreamTimeout(f"no answer from {dep.upstream.name} within the request's deadline") from exc
            raise
        finally:
            call.upstream_seconds += self._clock.monotonic() - start
