"""A near-free upstream for the benchmark: fixed JSON bodies and fixed SSE streams, answered from memory.

It speaks just enough of the HF router's wire (docs/protocol.md, 'HF router routes') for the gateway's hot paths:
`/v1/chat/completions` (JSON, or SSE when the body says `"stream": true`), `/v1/embeddings`,
and `/hf-inference/models/{id}/pipeline/feature-extraction` (a 2-D float array). Every answer is
built once at start-up, so the upstream's own cost is as small as aiohttp allows.

`--drip S` turns streams into slow drips (one event every S seconds, up to `--drip-events`), to hold
many streams open through the gateway. `GET /__bench/stats` returns the request count, so the
runner can tell a cache hit (no upstream request) from a miss.

Run: `python -m bench.upstream --port 9100 [--drip 1.0]`.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import orjson
from aiohttp import web

CHAT_JSON = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench/model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "A short fixed answer for the benchmark."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
})
EMBEDDING = [round(0.001 * i, 3) for i in range(64)]
OPENAI_EMBEDDINGS_JSON = orjson.dumps({
    "object": "list", "model": "bench/embed", "data": [{"object": "embedding", "index": 0, "embedding": EMBEDDING}],
    "usage": {"prompt_tokens": 4, "total_tokens": 4},
})
HF_EMBEDDINGS_JSON = orjson.dumps([EMBEDDING])


def _chunk(text: str, finish: str | None = None) -> bytes:
    delta = {"content": text} if text else {}
    obj = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench/model",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + orjson.dumps(obj) + b"\n\n"


STREAM_EVENTS = [_chunk(w) for w in ("A ", "short ", "fixed ", "stream.")] + [_chunk("", "stop"), b"data: [DONE]\n\n"]


@dataclass
class Counter:
    """Requests answered since start (the cache-hit check reads it)."""

    requests: int = 0


@dataclass(frozen=True)
class DripConfig:
    interval: float | None  # None: streams are sent at once
    events: int


COUNTER = web.AppKey("counter", Counter)
DRIP = web.AppKey("drip", DripConfig)


async def chat(request: web.Request) -> web.StreamResponse:
    request.app[COUNTER].requests += 1
    raw = await request.read()
    body = orjson.loads(raw) if raw else {}
    if not body.get("stream"):
        return web.Response(body=CHAT_JSON, content_type="application/json")
    return await _stream(request)


async def _stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    drip = request.app[DRIP]
    if drip.interval is None:
        await resp.write(b"".join(STREAM_EVENTS[:1]))
        await resp.write(b"".join(STREAM_EVENTS[1:]))
    else:
        for i in range(drip.events):  # bounded: a drip stream ends by itself
            await resp.write(STREAM_EVENTS[i % 4])
            await asyncio.sleep(drip.interval)
        await resp.write(STREAM_EVENTS[-1])
    await resp.write_eof()
    return resp


async def openai_embeddings(request: web.Request) -> web.Response:
    request.app[COUNTER].requests += 1
    await request.read()
    return web.Response(body=OPENAI_EMBEDDINGS_JSON, content_type="application/json")


async def hf_model(request: web.Request) -> web.StreamResponse:
    request.app[COUNTER].requests += 1
    await request.read()
    return web.Response(body=HF_EMBEDDINGS_JSON, content_type="application/json")


async def stats(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps({"requests": request.app[COUNTER].requests}),
                        content_type="application/json")


def create_upstream_app(drip: float | None = None, drip_events: int = 120) -> web.Application:
    app = web.Application()
    app[COUNTER] = Counter()
    app[DRIP] = DripConfig(drip, drip_events)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", openai_embeddings)
    app.router.add_post("/hf-inference/models/{rest:.+}", hf_model)
    app.router.add_post("/models/{rest:.+}", hf_model)
    app.router.add_get("/__bench/stats", stats)
    return app


def main() -> None:
    p = argparse.ArgumentParser(description="near-free upstream for the hf-gateway benchmark")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--drip", type=float, default=None, help="seconds between stream events (slow-drip mode)")
    p.add_argument("--drip-events", type=int, default=120, help="events per drip stream before it ends")
    args = p.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    web.run_app(create_upstream_app(args.drip, args.drip_events), host=args.host, port=args.port,
                access_log=None, print=None, backlog=4096)


if __name__ == "__main__":
    main()
