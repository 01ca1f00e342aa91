"""Operational endpoints: `/healthz` (alive), `/readyz` (the store answers and the limiter can run: readiness.py),
`/metrics`."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.http.appkeys import METRICS, READINESS

PROBE_PATHS = frozenset({"/healthz", "/readyz"})  # always open, never refused for load
OPS_PATHS = PROBE_PATHS | {"/metrics"}  # not traffic: never counted as requests nor held to in-flight caps


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    ok, body = await request.app[READINESS].check()
    return web.Response(status=200 if ok else 503, body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this app's registry (all workers' in multiprocess mode)."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if METRICS in app:
        app.router.add_get("/metrics", metrics)
