"""create_app: wiring only. Every shared object is made here (or injected by tests) and handed to
the stages as constructor arguments; the http layer reaches them through `appkeys`.

The request's road: middleware (observe, errors, auth, overload) -> handler (parse into a `Call`)
-> the stages of `build_stages`, outermost first, each line saying why it stands where it does
-> one upstream call (`UpstreamTerminal`, timed by `UpstreamTimer`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway.core.call import Upstream
from gateway.core.clock import Clock, SystemClock
from gateway.core.config import Settings
from gateway.core.pipeline import Stage, build_pipeline
from gateway.core.routing import Router
from gateway.http.appkeys import (
    BREAKERS,
    CLOCK,
    ENDPOINTS,
    LOADING,
    METRICS,
    READINESS,
    ROUTER,
    SETTINGS,
    STORE,
    STORES,
    UPSTREAMS,
)
from gateway.http.handlers import Gateway
from gateway.http.middleware.auth import auth_middleware
from gateway.http.middleware.observe import observe_middleware
from gateway.http.middleware.overload import overload_middleware
from gateway.http.middleware.render import error_middleware
from gateway.http.ops import add_ops_routes
from gateway.http.parsing import CallParser
from gateway.http.readiness import Readiness
from gateway.http.status import add_status_route
from gateway.observability.metrics import Metrics
from gateway.observability.readouts import watch_policies
from gateway.observability.stage import MetricsStage
from gateway.observability.upstream_timer import UpstreamTimer
from gateway.policies.cache.coalesce import CoalesceStage
from gateway.policies.cache.key import CachePlanner
from gateway.policies.cache.response_cache import ResponseCache
from gateway.policies.cache.stage import CacheStage
from gateway.policies.endpoints.fleet import EndpointFleet, build_fleet
from gateway.policies.endpoints.stage import EndpointStage
from gateway.policies.limits.shaping import ShapingStage
from gateway.policies.limits.stage import RateLimitStage
from gateway.policies.resilience.breaker import Breakers
from gateway.policies.resilience.coldstart import ColdStartStage
from gateway.policies.resilience.fallback import FallbackStage
from gateway.policies.resilience.loading import LoadingBoard
from gateway.policies.resilience.retry import RetryStage
from gateway.store.memory import MemoryStore
from gateway.store.protocol import Store
from gateway.store.redis import RedisStore
from gateway.store.room import CacheRoom
from gateway.store.timed import TimedStore
from gateway.upstream.factory import build_upstreams
from gateway.upstream.terminal import UpstreamTerminal


@dataclass(frozen=True, slots=True)
class Shared:
    """Every object the stages, the ops routes and /status share: built once, in `create_app`."""

    settings: Settings
    clock: Clock
    store: Store  # redis_url (or memory): limits, cold-start state, keys
    router: Router
    upstreams: dict[str, Upstream]
    metrics: Metrics
    breakers: Breakers
    board: LoadingBoard
    cache: ResponseCache  # on cache.redis_url when set, else on `store`
    endpoints: EndpointFleet


def build_stages(shared: Shared) -> list[Stage]:
    """The ordered policy stages, outermost first; each line says why it stands where it does."""
    s = shared
    stages: list[Stage] = [
        # [metrics]    outermost: times and counts every answer, cache hits and rejections included
        MetricsStage(s.metrics, s.clock),
        # [cache]      a hit answers before any quota or upstream work is spent
        CacheStage(s.cache),
        # [coalesce]   identical in-flight requests share one leader's upstream call
        CoalesceStage(s.cache),
        # [ratelimit]  tenant/model buckets; settles token estimates with the real usage
        limiter(s),
        # [fallback]   tries the route's deployments in order, skipping open circuits
        FallbackStage(s.breakers, s.board, s.clock),
        # [coldstart]  parks behind one probe while a deployment's model loads
        ColdStartStage(s.board, s.clock, s.settings.resilience),
        # [retry]      backoff with full jitter, Retry-After honoured, inside the deadline
        RetryStage(s.clock, s.breakers, s.settings.resilience),
        # [endpoints]  per attempt: a managed endpoint's state decides (wake once, resume, waking, paused)
        EndpointStage(s.endpoints, s.settings.resilience.retry_after_cap),
        # [shaping]    paces each attempt to the upstream's declared budget
        ShapingStage(s.settings, s.store, s.clock, s.upstreams),
    ]
    # A stage inert for this configuration (`active` false: no limit, no budget, cache off) costs a
    # coroutine per request for nothing: it is left off the road.
    return [stage for stage in stages if _active(stage)]


def limiter(shared: Shared) -> RateLimitStage:
    """The rate-limit stage (one per app: `build_stages` and `/readyz` share it)."""
    return RateLimitStage(shared.settings, shared.store, shared.clock)


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
    cache_store: Store | None = None,
) -> web.Application:
    """The gateway application. Tests inject a FakeClock, a store (and the cache's), or fake upstreams.

    `metrics_dir`: the multiprocess metrics directory shared by `--workers N` (see gateway/cli/serve.py).
    """
    clock = clock or SystemClock()
    upstreams = upstreams if upstreams is not None else build_upstreams(settings, clock)
    router = Router(settings.models, upstreams)
    metrics = _metrics(settings, router, upstreams, metrics_dir)
    store, cache_store = _stores(settings, clock, metrics, store, cache_store)
    room = None
    if cache_store is store and store.kind == "redis":  # the cache must leave the limiter its memory
        cfg = settings.cache
        room = CacheRoom(lambda: store.info("memory"), clock,  # type: ignore[attr-defined]
                         max_fill=cfg.redis_max_fill, interval=cfg.redis_memory_check)
    board = LoadingBoard(store, clock, settings.redis_prefix, settings.resilience)
    shared = Shared(
        settings=settings, clock=clock, store=store, router=router, upstreams=upstreams, metrics=metrics,
        breakers=Breakers(clock, settings.upstreams), board=board,
        cache=ResponseCache(cache_store, clock, settings.cache, CachePlanner(settings.cache, settings.redis_prefix),
                            room=room),
        endpoints=build_fleet(upstreams, router, store, settings.redis_prefix, clock, board, metrics),
    )

    # Observe outermost (it sees the status the client got and times the whole request), then errors
    # (so a 401 is rendered in the route's dialect), then auth: the tenant is known before any handler.
    middlewares = [observe_middleware(metrics, clock), error_middleware(), auth_middleware(settings, store, clock)]
    # In-flight caps after auth (the tenant is known), before any handler reads a body.
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
    app[BREAKERS] = shared.breakers
    app[LOADING] = shared.board
    app[ENDPOINTS] = shared.endpoints

    stages = build_stages(shared)
    rate = next((st for st in stages if isinstance(st, RateLimitStage)), None)
    app[READINESS] = Readiness(store, cache_store, rate.check if rate is not None else None)
    app[STORES] = [st for st in {id(store): store, id(cache_store): cache_store}.values()]
    pipeline = build_pipeline(stages, UpstreamTimer(UpstreamTerminal(clock), metrics, clock))
    watch_policies(  # circuits, loading models, outbound queues: read at scrape time
        metrics,
        deployments={d.id for route in router.routes for d in route.deployments},
        paced=[name for name, cfg in settings.upstreams.items() if cfg.budget is not None],
        breakers=shared.breakers, board=shared.board,
        shaping=next((st for st in stages if isinstance(st, ShapingStage)), None),
        endpoints=shared.endpoints,
    )
    parser = CallParser(router, clock, settings.max_body_bytes, settings.request_timeout)
    add_ops_routes(app)
    add_status_route(app)
    Gateway(parser, router, pipeline).add_routes(app)
    app.cleanup_ctx.append(_lifetimes)
    app.cleanup_ctx.append(_metrics_refresh)
    if room is not None:
        app.on_startup.append(lambda _app: room.open(settings.ratelimit.store_timeout))
        app.on_cleanup.append(lambda _app: room.close())
    return app


def _stores(settings: Settings, clock: Clock, metrics: Metrics, store: Store | None,
            cache_store: Store | None) -> tuple[Store, Store]:
    """The main store (redis_url, else memory) and the cache's (cache.redis_url, else the main one),
    each Redis one timed and counted under its own name."""
    stall = settings.ratelimit.store_timeout
    if store is None:
        store = RedisStore.from_url(settings.redis_url, stall=stall) if settings.redis_url else MemoryStore(clock)
    if cache_store is None and settings.cache.redis_url:
        cache_store = RedisStore.from_url(settings.cache.redis_url, stall=stall, name="cache")
    main = _timed(store, "main", clock, metrics)
    return main, (main if cache_store is None or cache_store is store else _timed(cache_store, "cache", clock, metrics))


def _timed(store: Store, name: str, clock: Clock, metrics: Metrics) -> Store:
    if store.kind != "redis":
        return store
    return TimedStore(store, metrics.redis_recorder, clock, metrics.store_failure_recorder(name))


def _metrics(settings: Settings, router: Router, upstreams: dict[str, Upstream], path: str | None) -> Metrics:
    """The app's Metrics: labels bounded by the configured models, tenants and deployments; pool probes."""
    deployments = {d.id for route in router.routes for d in route.deployments} | set(upstreams)
    endpoints = [name for name, cfg in settings.upstreams.items() if cfg.kind == "endpoint"]
    metrics = Metrics(models=router.labels(), tenants=settings.tenants, deployments=deployments,
                      multiprocess_dir=path, endpoints=endpoints)
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
    await app[ENDPOINTS].start()  # after the upstreams: its first readings aim them
    yield
    await app[ENDPOINTS].close()
    for up in app[UPSTREAMS].values():
        await up.close()
    await app[LOADING].close()
    for store in app[STORES]:
        await store.close()
