"""Operational endpoints: `/healthz` (alive), `/readyz` (config loaded, store reachable), `/metrics`."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.http.appkeys import METRICS, STORE

PROBE_PATHS = frozenset({"/healthz", "/readyz"})  # always open, never refused for load
OPS_PATHS = PROBE_PATHS | {"/metrics"}  # not traffic: never counted as requests nor held to in-flight caps


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    ok = await store.ping()
    body = {"status": "ready" if ok else "unready", "store": store.kind, "store_ok": ok}
    return web.Response(status=200 if ok else 503, body=orjson.dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this app's registry (all workers' in multiprocess mode)."""
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if METRICS in app:
        app.router.add_get("/metrics", metrics)
