"""A scripted in-process `Upstream` for unit tests of stages: no sockets, no simulator.

    up = FakeUpstream("hf")
    up.script(ModelLoading("loading", estimated_time=20), Reply(200, b"[]"))
    app = create_app(settings, upstreams={"hf": up})

Each `send` pops the next scripted item (an Answer is returned, an exception raised); when the
script is empty it answers `default(call, model)`. Every call is recorded in `calls`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import orjson

from gateway.core.call import Answer, Call, Reply
from gateway.core.upstream_config import UpstreamConfig, UpstreamKind

Scripted = Answer | BaseException | Callable[[Call, str], Answer]  # what `send` returns, raises or calls


def _echo(call: Call, model: str) -> Answer:
    return Reply(200, orjson.dumps({"model": model, "echo": call.body}))


class FakeUpstream:
    """Upstream protocol, scripted."""

    def __init__(self, name: str = "hf", kind: UpstreamKind = "hf", config: UpstreamConfig | None = None,
                 default: Callable[[Call, str], Answer] = _echo) -> None:
        self.name = name
        self.kind = kind
        self.config = config or UpstreamConfig(kind=kind)
        self.default = default
        self.calls: list[tuple[Call, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay: float = 0.0  # real seconds each send takes (for concurrency tests)
        self._script: deque[Scripted] = deque()

    def script(self, *items: Scripted) -> None:
        """Queue answers (Reply/StreamReply) or exceptions, consumed one per send."""
        self._script.extend(items)

    async def send(self, call: Call, model: str) -> Answer:
        self.calls.append((call, model))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            item = self._script.popleft() if self._script else None
            if item is None:
                return self.default(call, model)
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                return item(call, model)
            return item
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def pool_stats(self) -> tuple[int, int]:
        return self.in_flight, 0
