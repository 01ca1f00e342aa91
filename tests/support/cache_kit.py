"""Test kit for the cache and coalescing tests: settings, Calls, a gated upstream, stores, pipelines."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from gateway.core.call import Answer, Call, Dialect, Flags, Op, Reply, StreamReply
from gateway.core.clock import Clock
from gateway.core.config import Settings, load_settings
from gateway.core.pipeline import Handler, build_pipeline
from gateway.core.routing import Router
from gateway.policies.cache.coalesce import CoalesceStage
from gateway.policies.cache.key import CachePlanner
from gateway.policies.cache.response_cache import ResponseCache
from gateway.policies.cache.stage import CacheStage
from gateway.store import Store
from gateway.upstream.fake import FakeUpstream
from gateway.upstream.terminal import UpstreamTerminal

EMBED = "BAAI/bge-small-en-v1.5"
CHAT = "meta-llama/Llama-3.1-8B-Instruct"
CLASSIFY = "distilbert/sst2"
SHARED = "shared/embedder"
_ids = itertools.count()


def settings(cache: dict[str, Any] | None = None, models: list[dict[str, Any]] | None = None) -> Settings:
    """Gateway settings with an `hf` upstream (base URL per test) and a few model routes."""
    default_models = [
        {"name": EMBED, "task": "feature-extraction"},
        {"name": CHAT},
        {"name": CLASSIFY, "task": "text-classification"},
        {"name": SHARED, "task": "feature-extraction", "cache": {"shared": True}},
        {"name": "*"},
    ]
    return load_settings(
        None, upstreams={"hf": {"kind": "hf", "base_url": "http://hf.test"}},
        models=models if models is not None else default_models, cache=cache or {},
    )


class GatedUpstream(FakeUpstream):
    """A FakeUpstream whose calls wait for `gate` before answering; `arrived` counts calls as they come in."""

    def __init__(self, name: str = "hf", kind: str = "hf", **kw: Any) -> None:
        super().__init__(name, kind, default=_numbered, **kw)
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = 0

    async def send(self, call: Call, model: str) -> Answer:
        self.arrived += 1
        await self.gate.wait()
        return await super().send(call, model)


def _numbered(call: Call, model: str) -> Answer:
    """Default answer: differs on every upstream call, so a test can tell a stored answer from a fresh one."""
    return Reply(200, orjson.dumps({"model": model, "n": next(_ids), "echo": call.body}),
                 headers={"x-compute-time": "0.01", "x-ratelimit-remaining": "99"})


def make_call(router: Router, clock: Clock, *, model: str = EMBED, op: Op = Op.EMBEDDINGS,
              body: dict[str, Any] | None = None, tenant: str | None = None, stream: bool = False,
              flags: Flags | None = None, task: str | None = None, dialect: Dialect = Dialect.OPENAI) -> Call:
    """A parsed Call, as the handler would build it."""
    if body is None:
        body = {"model": model, "input": "hello"} if op is Op.EMBEDDINGS else {"inputs": "hello"}
    default_task = {Op.CHAT: "chat", Op.COMPLETIONS: "completions", Op.EMBEDDINGS: "embeddings"}.get(op)
    now = clock.monotonic()
    return Call(
        request_id=f"req-{next(_ids)}", dialect=dialect, op=op, route_label=op.value, model=model,
        route=router.resolve(model), body=body, raw=orjson.dumps(body), stream=stream,
        task=task or default_task, flags=flags or Flags(), tenant=tenant, started=now, deadline=now + 300.0,
    )


def chat_body(temperature: float | None = 0.0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}], **extra}
    if temperature is not None:
        body["temperature"] = temperature
    return body


class Replica:
    """One gateway's cache + coalesce stages in front of an upstream, on a (possibly shared) store."""

    def __init__(self, cfg: Settings, store: Store, clock: Clock, upstream: FakeUpstream) -> None:
        self.settings = cfg
        self.clock = clock
        self.upstream = upstream
        self.router = Router(cfg.models, {"hf": upstream})
        self.cache = ResponseCache(store, clock, cfg.cache, CachePlanner(cfg.cache, cfg.redis_prefix))
        self.stages: list[Any] = [CacheStage(self.cache), CoalesceStage(self.cache)]
        self.pipeline: Handler = build_pipeline(self.stages, UpstreamTerminal(clock))

    def call(self, **kw: Any) -> Call:
        return make_call(self.router, self.clock, **kw)

    async def run(self, call: Call) -> Answer:
        return await self.pipeline(call)


def prefixed(cfg: Settings, prefix: str) -> Settings:
    return cfg.model_copy(update={"redis_prefix": prefix})


async def drain(answer: Answer) -> list[bytes]:
    """Every event of a stream (consumed like the relay does), or the body of a reply as one item."""
    if isinstance(answer, Reply):
        return [answer.body]
    events = answer.events()
    out = [ev async for ev in events]
    await events.aclose()
    return out


def stream_reply(events: list[bytes], fail_after: int | None = None,
                 on_rest: Callable[[], None] | None = None) -> StreamReply:
    """A StreamReply of `events` (the first one peeked); optionally raising after `fail_after` more."""
    from gateway.core.errors import UpstreamProtocolError

    async def rest() -> AsyncIterator[bytes]:
        for i, ev in enumerate(events[1:]):
            if fail_after is not None and i >= fail_after:
                raise UpstreamProtocolError("upstream dropped the stream")
            yield ev
        if on_rest is not None:
            on_rest()

    return StreamReply(first=events[0], rest=rest(), headers={"x-compute-time": "0.1"})


StorePair = tuple[Store, Store, Clock]  # two clients of one store (two "processes"), and the clock to use
