"""Apps served for tests in the test's own event loop: on a real loopback port, or behind aiohttp's TestClient.

`serving(app)` is how the simulator (or a gateway) is put on a real port for clients that need a
URL (the real `openai` and `huggingface_hub` clients, a subprocess); `gateway_client(settings, ...)`
is the gateway built by `create_app` behind a `TestClient`, the way most in-process tests drive it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.config import Settings
from gateway.http.app import create_app


@asynccontextmanager
async def serving(app: web.Application, *, cancel: bool = False,
                  tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """`app` listening on 127.0.0.1 (a free port) until the block ends; yields its base URL.

    `cancel`: aiohttp's handler cancellation when a client disconnects (`hf-gateway serve` turns it
    on; `hf-gateway simulate` leaves it off). `tls`: serve https with this context; the URL then
    names `localhost` (what the test certificates of `tests/support/tls.py` are for).
    """
    runner = web.AppRunner(app, handler_cancellation=cancel, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield f"https://localhost:{port}" if tls is not None else f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def app_client(app: web.Application, *, cancel: bool = False) -> AsyncIterator[TestClient[Any, Any]]:
    """A started TestClient on `app`."""
    async with TestClient(TestServer(app, handler_cancellation=cancel)) as client:
        yield client


@asynccontextmanager
async def gateway_client(settings: Settings, *, cancel: bool = True, **app_kwargs: Any) -> AsyncIterator[
        TestClient[Any, Any]]:
    """The gateway (`create_app(settings, **app_kwargs)`: clock, store, upstreams) behind a TestClient."""
    async with app_client(create_app(settings, **app_kwargs), cancel=cancel) as client:
        yield client
