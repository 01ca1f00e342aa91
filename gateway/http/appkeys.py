"""Typed application keys: how handlers and stages reach the app's dependencies."""

from __future__ import annotations

from aiohttp import web

from gateway.core.call import Call, Upstream
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.routing import Router
from gateway.store.protocol import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
STORE: web.AppKey[Store] = web.AppKey("store", Store)  # type: ignore[type-abstract]
UPSTREAMS: web.AppKey[dict[str, Upstream]] = web.AppKey("upstreams", dict)

# Per-request storage.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
STARTED: web.RequestKey[float] = web.RequestKey("started", float)
TENANT: web.RequestKey[str] = web.RequestKey("tenant", str)  # set by auth when a key matched
API_KEY_ID: web.RequestKey[str] = web.RequestKey("api_key_id", str)
CALL: web.RequestKey[Call] = web.RequestKey("call", Call)  # set by the handler once the request is parsed
