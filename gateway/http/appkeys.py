"""Typed aiohttp application and request keys: how handlers and ops routes reach what `create_app` built.

Only the http layer uses them; policies and upstreams get their dependencies as constructor
arguments from `create_app`, never from the app.
"""

from __future__ import annotations

from aiohttp import web

from gateway.core.call import Call, Upstream
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.core.routing import Router
from gateway.http.readiness import Readiness
from gateway.observability.metrics import Metrics
from gateway.policies.endpoints.fleet import EndpointFleet
from gateway.policies.resilience.breaker import Breakers
from gateway.policies.resilience.loading import LoadingBoard
from gateway.store.protocol import Store

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)
ROUTER: web.AppKey[Router] = web.AppKey("router", Router)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
UPSTREAMS: web.AppKey[dict[str, Upstream]] = web.AppKey("upstreams", dict)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
BREAKERS: web.AppKey[Breakers] = web.AppKey("breakers", Breakers)
LOADING: web.AppKey[LoadingBoard] = web.AppKey("loading_board", LoadingBoard)
ENDPOINTS: web.AppKey[EndpointFleet] = web.AppKey("endpoints", EndpointFleet)
READINESS: web.AppKey[Readiness] = web.AppKey("readiness", Readiness)
STORES: web.AppKey[list[Store]] = web.AppKey("stores", list)  # every store the app opened (closed at exit)

# Per-request storage.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
STARTED: web.RequestKey[float] = web.RequestKey("started", float)
TENANT: web.RequestKey[str] = web.RequestKey("tenant", str)  # set by auth when a key matched
API_KEY_ID: web.RequestKey[str] = web.RequestKey("api_key_id", str)
CALL: web.RequestKey[Call] = web.RequestKey("call", Call)  # set by the handler once the request is parsed
