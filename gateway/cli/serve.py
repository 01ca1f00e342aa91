"""Running the app: uvloop, handler cancellation on client disconnect, SO_REUSEPORT workers, graceful drain.

With `--workers N` the supervisor switches prometheus-client to multiprocess mode before forking
(`enable_multiprocess`), every worker writes its figures to that directory, whichever worker answers
`GET /metrics` adds them all up, and a worker that exits is marked dead so its live gauges leave the
sums. The directory is `PROMETHEUS_MULTIPROC_DIR` when set (emptied at start), else a fresh temporary
one, removed at exit.

Graceful drain (SIGTERM or SIGINT), as aiohttp's `run_app(shutdown_timeout=drain_timeout)` does it:
the listening socket closes first (new connections are refused), idle keep-alive connections are
closed, requests and streams in progress get up to `drain_timeout` seconds to finish, whatever
still runs then is cancelled (its upstream request is dropped), the app's cleanup closes the
upstream pools and the store, and the process exits 0. With `--workers N` the supervisor forwards
the signal to every worker and exits 0 once they all have. tests/faults/test_sigterm.py proves it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile

from aiohttp import web

from gateway.cli.server_log import ServerLog
from gateway.core.config import Settings, missing_credentials
from gateway.http.app import create_app
from gateway.http.appkeys import METRICS, SETTINGS
from gateway.observability.logs import configure_logging

log = logging.getLogger("gateway")
# Seconds an INFO line (the access line) may wait to be written with others: one write per batch
# instead of one per request (bench/PROFILE.md). Warnings and errors are written at once.
LOG_HOLD = 0.05


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level, hold=LOG_HOLD)


def _tune_gc() -> None:
    """Collect less often: a request allocates thousands of short-lived containers, reference counting frees
    them, and the default gen-0 threshold (700) ran the collector every few requests over every object the
    process holds. Start-up objects are frozen out of later collections. Measured +23% req/s (bench/PROFILE.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _run_one(settings: Settings, sock: socket.socket | None = None, metrics_dir: str | None = None) -> None:
    _install_uvloop()
    app = create_app(settings, metrics_dir=metrics_dir)
    app.on_shutdown.append(_drain_notice)
    _tune_gc()
    if not settings.keys and not settings.ratelimit.keys_in_store:
        log.warning("no API keys configured: the gateway is open to anyone who can reach %s:%s",
                    settings.host, settings.port)
    try:
        web.run_app(
            app,
            host=None if sock else settings.host,
            port=None if sock else settings.port,
            sock=sock,
            shutdown_timeout=settings.drain_timeout,
            handler_cancellation=True,
            access_log=None,
            print=None,
            reuse_port=settings.workers > 1 or None,
            logger=ServerLog(app[METRICS]),  # a request aiohttp cannot parse: one INFO line and a count, no traceback
        )
    finally:
        for handler in logging.getLogger().handlers:  # lines still held (LOG_HOLD) are written before exit
            handler.flush()


async def _drain_notice(app: web.Application) -> None:
    """Runs once the listener is closed, before in-flight requests are waited for."""
    log.info("shutting down: no new connections; finishing requests in flight for up to %ss",
             app[SETTINGS].drain_timeout)


def _warn_missing_credentials(settings: Settings) -> None:
    """Once per start (the supervisor, not each worker): which credential variables are unset. The name only."""
    for var, upstreams in missing_credentials(settings).items():
        log.warning("%s is not set: upstream%s %s will be called without a credential, and an upstream that needs "
                    "one (the HF router does) will refuse every call; set %s, or `token_env: null` on an upstream "
                    "that needs none", var, "s" if len(upstreams) > 1 else "", ", ".join(upstreams), var)


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; with workers > 1, fork that many processes on one SO_REUSEPORT port."""
    _configure_logging(settings)
    log.info("hf-gateway listening on http://%s:%s (%d worker%s, state: %s)", settings.host, settings.port,
             settings.workers, "s" if settings.workers > 1 else "", "redis" if settings.redis_url else "memory")
    _warn_missing_credentials(settings)
    if settings.workers <= 1:
        _run_one(settings)
        return
    from gateway.observability.metrics import enable_multiprocess, mark_worker_dead

    own_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    metrics_dir = tempfile.mkdtemp(prefix="hf-gateway-metrics-") if own_dir else os.environ["PROMETHEUS_MULTIPROC_DIR"]
    enable_multiprocess(metrics_dir)
    children: list[int] = []
    for _ in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _run_one(settings, metrics_dir=metrics_dir)
            finally:
                os._exit(0)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        remaining = set(children)
        while remaining:
            pid, _status = os.wait()  # whichever worker exits first
            if pid in remaining:
                remaining.discard(pid)
                mark_worker_dead(pid, metrics_dir)  # its in-flight and pool gauges leave the sums
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
