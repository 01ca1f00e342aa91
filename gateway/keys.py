"""Typed application keys: how handlers and stages reach the app's dependencies."""

from __future__ import annotations

from aiohttp import web

from .clock import Clock
from .config import Settings
from .routing import Router
from .store.base import Store
from .upstream.base import Upstream

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
STORE: web.AppKey[Store] = web.AppKey("store", Store)  # type: ignore[type-abstract]
UPSTREAMS: web.AppKey[dict[str, Upstream]] = web.AppKey("upstreams", dict)
