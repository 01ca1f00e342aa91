"""create_app: wiring only. Every dependency is made here (or injected by tests) and reached via AppKeys.

The request's road, outermost first, is the `stages` list in `build_stages`; each line says why
it stands where it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from .clock import Clock, SystemClock
from .config import Settings
from .handlers import Gateway
from .keys import CLOCK, ROUTER, SETTINGS, STORE, UPSTREAMS
from .middleware import error_middleware
from .ops import add_ops_routes
from .parsing import CallParser
from .pipeline import Stage, build_pipeline
from .policies.cache import CacheStage
from .policies.coalesce import CoalesceStage
from .routing import Router
from .store.base import Store
from .store.memory import MemoryStore
from .store.redis import RedisStore
from .upstream.base import Upstream
from .upstream.factory import build_upstreams
from .upstream.terminal import UpstreamTerminal


def build_stages(app: web.Application) -> Sequence[Stage]:
    """The ordered policy stages, outermost first."""
    stages: list[Stage] = []
    # Slots, outermost first. Each policy appends its stage at its slot with a one-line reason.
    # [metrics]    outermost: times and counts every answer, cache hits and rejections included (issue 6)
    # [cache]      a hit answers before any quota or upstream work is spent (issue 5)
    stages.append(CacheStage.from_app(app))
    # [coalesce]   identical in-flight requests share one leader's upstream call (issue 5)
    stages.append(CoalesceStage.from_app(app))
    # [ratelimit]  tenant/model buckets; settles token estimates with the real usage (issue 4)
    # [fallback]   tries the route's deployments in order, skipping open circuits (issue 3)
    # [coldstart]  parks behind one probe while a deployment's model loads (issue 3)
    # [retry]      backoff with full jitter, Retry-After honoured, inside the deadline (issue 3)
    # [shaping]    paces each attempt to the upstream's declared budget (issue 4)
    return stages


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    upstreams: dict[str, Upstream] | None = None,
) -> web.Application:
    """The gateway application. Tests inject a FakeClock, a store, or fake upstreams."""
    clock = clock or SystemClock()
    if store is None:
        if settings.redis_url:
            store = RedisStore.from_url(settings.redis_url, timeout=settings.ratelimit.store_timeout * 5)
        else:
            store = MemoryStore(clock)
    upstreams = upstreams if upstreams is not None else build_upstreams(settings, clock)
    router = Router(settings.models, upstreams)

    app = web.Application(middlewares=[error_middleware(clock)], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[STORE] = store
    app[UPSTREAMS] = upstreams
    app[ROUTER] = router

    pipeline = build_pipeline(build_stages(app), UpstreamTerminal(clock))
    parser = CallParser(router, clock, settings.max_body_bytes, settings.request_timeout)
    add_ops_routes(app)
    Gateway(parser, router, pipeline).add_routes(app)
    app.cleanup_ctx.append(_lifetimes)
    return app


async def _lifetimes(app: web.Application) -> AsyncIterator[None]:
    for up in app[UPSTREAMS].values():
        await up.start()
    yield
    for up in app[UPSTREAMS].values():
        await up.close()
    await app[STORE].close()
