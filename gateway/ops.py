"""Operational endpoints: `/healthz` (alive) and `/readyz` (config loaded, store reachable)."""

from __future__ import annotations

import orjson
from aiohttp import web

from .keys import STORE


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


async def readyz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    ok = await store.ping()
    body = {"status": "ready" if ok else "unready", "store": store.kind, "store_ok": ok}
    return web.Response(status=200 if ok else 503, body=orjson.dumps(body), content_type="application/json")


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
