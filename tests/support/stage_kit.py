"""Test kit for the resilience stages: settings, Calls, a cold model, a pipeline of fallback/coldstart/retry."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.core.call import Answer, Call, Dialect, Flags, Op, Reply, StreamReply
from gateway.core.clock import Clock, FakeClock
from gateway.core.config import Settings, load_settings
from gateway.core.errors import ModelLoading
from gateway.core.pipeline import Handler, build_pipeline
from gateway.core.routing import Router
from gateway.core.upstream_config import UpstreamConfig
from gateway.policies.resilience.breaker import Breakers
from gateway.policies.resilience.coldstart import ColdStartStage
from gateway.policies.resilience.fallback import FallbackStage
from gateway.policies.resilience.loading import LoadingBoard
from gateway.policies.resilience.retry import RetryStage
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.upstream.fake import FakeUpstream
from gateway.upstream.terminal import UpstreamTerminal

MODEL = "org/model"
_ids = itertools.count()


def settings(*, upstreams: dict[str, Any] | None = None, models: list[dict[str, Any]] | None = None,
             resilience: dict[str, Any] | None = None, **kw: Any) -> Settings:
    """Settings with one `hf` upstream (or the given ones) and a `*` route (or the given ones)."""
    return load_settings(
        None,
        upstreams=upstreams or {"hf": {"kind": "hf", "base_url": "http://hf.test", "token_env": None}},
        models=models or [{"name": "*"}],
        resilience=resilience or {},
        **kw,
    )


def ok(call: Call, model: str) -> Answer:
    return Reply(200, orjson.dumps({"model": model, "ok": True}))


class ColdModel:
    """An upstream answer script: 503 loading (with the true time left) until `ready_at`, then 200."""

    def __init__(self, clock: Clock, seconds: float, *, list_form: bool = False) -> None:
        self.clock = clock
        self.ready_at = clock.monotonic() + seconds
        self.list_form = list_form
        self.loading_answers = 0
        self.ok_answers = 0
        self.times: list[float] = []  # monotonic time of every call

    def calls_until_ready(self) -> int:
        """Calls made while loading, plus the first one that found the model ready."""
        return sum(1 for t in self.times if t < self.ready_at) + min(1, self.ok_answers)

    def __call__(self, call: Call, model: str) -> Answer:
        self.times.append(self.clock.monotonic())
        left = self.ready_at - self.clock.monotonic()
        if left > 0:
            self.loading_answers += 1
            raise ModelLoading(f"Model {model} is currently loading", estimated_time=left)
        self.ok_answers += 1
        if call.stream:
            return stream_of(b'data:{"token":{"text":"a"}}\n\n', b'data:{"token":{"text":"b"}}\n\n')
        return ok(call, model)


def stream_of(*events: bytes) -> StreamReply:
    async def rest() -> AsyncIterator[bytes]:
        for ev in events[1:]:
            yield ev

    return StreamReply(first=events[0], rest=rest())


class InFlightUpstream(FakeUpstream):
    """A FakeUpstream whose calls stay in flight for a few loop turns, as a network call would,
    so concurrent requests really overlap (without real time passing)."""

    async def send(self, call: Call, model: str) -> Answer:
        for _ in range(3):
            await asyncio.sleep(0)
        return await super().send(call, model)


def fake(name: str = "hf", kind: str = "hf", cold: ColdModel | None = None, **config: Any) -> FakeUpstream:
    cfg = UpstreamConfig(kind=kind, base_url="http://x.test", token_env=None, **config)  # type: ignore[arg-type]
    return InFlightUpstream(name, kind, cfg, default=cold or ok)


class Rig:
    """The three resilience stages around the terminal, on one store, with fake upstreams."""

    def __init__(self, cfg: Settings, upstreams: dict[str, FakeUpstream], *, clock: FakeClock | None = None,
                 store: Store | None = None, seed: int = 7) -> None:
        self.settings = cfg
        self.clock = clock or FakeClock(autojump=True)
        self.store = store or MemoryStore(self.clock)
        self.upstreams = upstreams
        self.router = Router(cfg.models, dict(upstreams))
        self.breakers = Breakers(self.clock, {n: u.config for n, u in upstreams.items()})
        self.board = LoadingBoard(self.store, self.clock, cfg.redis_prefix, cfg.resilience)
        self.rand = random.Random(seed)
        self.stages = [
            FallbackStage(self.breakers, self.board, self.clock),
            ColdStartStage(self.board, self.clock, cfg.resilience),
            RetryStage(self.clock, self.breakers, cfg.resilience, rand=self.rand.random),
        ]
        self.pipeline: Handler = build_pipeline(self.stages, UpstreamTerminal(self.clock))

    def call(self, model: str = MODEL, *, stream: bool = False, wait: bool | None = None, timeout: float = 300.0,
             dialect: Dialect = Dialect.HF) -> Call:
        now = self.clock.monotonic()
        body = {"inputs": "hello", "stream": stream}
        return Call(
            request_id=f"req-{next(_ids)}", dialect=dialect, op=Op.HF_TASK, route_label="hf_task", model=model,
            route=self.router.resolve(model), body=body, raw=orjson.dumps(body), stream=stream,
            task="text-generation", flags=Flags(wait_for_model=wait), started=now, deadline=now + timeout,
        )

    async def run(self, call: Call) -> Answer:
        return await self.pipeline(call)


async def drain(answer: Answer) -> list[bytes]:
    """Every event of a stream answer (running its close hooks), or the body of a complete one."""
    if isinstance(answer, Reply):
        return [answer.body]
    events = [ev async for ev in answer.events()]
    for hook in answer.on_close:
        result = hook()
        if result is not None:
            await result
    return events
