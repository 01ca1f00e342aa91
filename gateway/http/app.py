"""create_app: wiring only. Every dependency is made here (or injected by tests) and reached via AppKeys.

The request's road, outermost first, is the `stages` list in `build_stages`; each line says why
it stands where it does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from gateway.core.call import Upstream
from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Settings
from gateway.core.pipeline import Stage, build_pipeline
from gateway.core.routing import Router
from gateway.http.appkeys import CLOCK, ROUTER, SETTINGS, STORE, UPSTREAMS
from gateway.http.handlers import Gateway
from gateway.http.middleware.auth import auth_middleware
from gateway.http.middleware.errors import error_middleware
from gateway.http.middleware.observe import observe_middleware
from gateway.http.middleware.overload import overload_middleware
from gateway.http.ops import add_ops_routes
from gateway.http.parsing import CallParser
from gateway.http.status import add_status_route
from gateway.observability.metrics import METRICS, Metrics
from gateway.observability.readouts import watch_policies
from gateway.observability.stage import MetricsStage, UpstreamTimer
from gateway.policies.cache.coalesce import CoalesceStage
from gateway.policies.cache.stage import CacheStage
from gateway.policies.limits.shaping import ShapingStage
from gateway.policies.limits.stage import RateLimitStage
from gateway.policies.resilience.coldstart import ColdStartStage
from gateway.policies.resilience.fallback import FallbackStage
from gateway.policies.resilience.retry import RetryStage
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.store.redis import RedisStore
from gateway.store.timed import TimedStore
from gateway.upstream.factory import build_upstreams
from gateway.upstream.terminal import UpstreamTerminal


def build_stages(app: web.Application) -> Sequence[Stage]:
    """The ordered policy stages, outermost first."""
    stages: list[Stage] = []
    # Slots, outermost first. Each policy appends its stage at its slot with a one-line reason.
    # [metrics]    outermost: times and counts every answer, cache hits and rejections included (issue 6)
    stages.append(MetricsStage(app[METRICS], app[CLOCK]))
    # [cache]      a hit answers before any quota or upstream work is spent (issue 5)
    stages.append(CacheStage.from_app(app))
    # [coalesce]   identical in-flight requests share one leader's upstream call (issue 5)
    stages.append(CoalesceStage.from_app(app))
    # [ratelimit]  tenant/model buckets; settles token estimates with the real usage (issue 4)
    stages.append(RateLimitStage(app[SETTINGS], app[STORE], app[CLOCK]))
    # [fallback]   tries the route's deployments in order, skipping open circuits (issue 3)
    stages.append(FallbackStage.from_app(app))
    # [coldstart]  parks behind one probe while a deployment's model loads (issue 3)
    stages.append(ColdStartStage.from_app(app))
    # [retry]      backoff with full jitter, Retry-After honoured, inside the deadline (issue 3)
    stages.append(RetryStage.from_app(app))
    # [shaping]    paces each attempt to the upstream's declared budget (issue 4)
    stages.append(ShapingStage(app[SETTINGS], app[STORE], app[CLOCK], app[UPSTREAMS]))
    # A stage inert for this configuration (`active` false: no limit, no budget, cache off) costs a
    # coroutine per request for nothing: it is left off the road (issue 7).
    return [s for s in stages if _active(s)]


def _active(stage: Stage) -> bool:
    active = getattr(stage, "active", True)
    return bool(active() if callable(active) else active)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    upstreams: dict[str, Upstream] | None = None,
    metrics_dir: str | None = None,
) -> web.Application:
    """The gateway application. Tests inject a FakeClock, a store, or fake upstreams.

    `metrics_dir`: the multiprocess metrics directory shared by `--workers N` (see gateway/server.py).
    """
    clock = clock or SystemClock()
    if store is None:
        if settings.redis_url:
            store = RedisStore.from_url(settings.redis_url, timeout=settings.ratelimit.store_timeout * 5)
        else:
            store = MemoryStore(clock)
    upstreams = upstreams if upstreams is not None else build_upstreams(settings, clock)
    router = Router(settings.models, upstreams)
    metrics = _metrics(settings, router, upstreams, metrics_dir)
    if store.kind == "redis":
        store = TimedStore(store, metrics, clock)

    # Errors outermost (so a 401 is rendered in the route's dialect), then auth: tenant before any handler.
    middlewares = [error_middleware(clock), auth_middleware(settings, store, clock)]
    # Observe outside everything: it sees the status the client got and times the whole request.
    middlewares.insert(0, observe_middleware(metrics, clock))
    # In-flight caps after auth (the tenant is known), before any handler reads a body (issue 8).
    overload = overload_middleware(settings)
    if overload is not None:
        middlewares.append(overload)
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[METRICS] = metrics
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[STORE] = store
    app[UPSTREAMS] = upstreams
    app[ROUTER] = router

    stages = build_stages(app)
    pipeline = build_pipeline(stages, UpstreamTimer(UpstreamTerminal(clock), metrics, clock))
    watch_policies(app, metrics, stages)  # circuits, loading models, outbound queues: read at scrape time
    parser = CallParser(router, clock, settings.max_body_bytes, settings.request_timeout)
    add_ops_routes(app)
    add_status_route(app)
    Gateway(parser, router, pipeline).add_routes(app)
    app.cleanup_ctx.append(_lifetimes)
    app.cleanup_ctx.append(_metrics_refresh)
    return app


def _metrics(settings: Settings, router: Router, upstreams: dict[str, Upstream], path: str | None) -> Metrics:
    """The app's Metrics: labels bounded by the configured models, tenants and deployments; pool probes."""
    deployments = {d.id for route in router.routes for d in route.deployments} | set(upstreams)
    metrics = Metrics(models=router.labels(), tenants=settings.tenants, deployments=deployments, multiprocess_dir=path)
    for name, up in upstreams.items():
        metrics.register_pool_probe(name, up.pool_stats)  # pools belong to upstreams (deployments share them)
    return metrics


async def _metrics_refresh(app: web.Application) -> AsyncIterator[None]:
    """Multiprocess mode: publish this worker's scrape-time gauges every few seconds for the others' scrapes."""
    metrics = app[METRICS]
    task = asyncio.create_task(_refresh_every(metrics, app[CLOCK], 5.0)) if metrics.multiprocess else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _refresh_every(metrics: Metrics, clock: Clock, seconds: float) -> None:
    while True:
        metrics.refresh()
        await clock.sleep(seconds)


async def _lifetimes(app: web.Application) -> AsyncIterator[None]:
    for up in app[UPSTREAMS].values():
        await up.start()
    yield
    for up in app[UPSTREAMS].values():
        await up.close()
    await app[STORE].close()
