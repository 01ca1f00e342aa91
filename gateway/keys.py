"""Typed application keys: how handlers and stages reach the app's dependencies."""

from __future__ import annotations

from aiohttp import web

from .clock import Clock
from .config import Settings
from .pipeline import Call
from .routing import Router
from .store.base import Store
from .upstream.base import Upstream

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
