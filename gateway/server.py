"""Running the app: uvloop, handler cancellation on client disconnect, SO_REUSEPORT workers, graceful drain.

With `--workers N` the supervisor switches prometheus-client to multiprocess mode before forking
(`enable_multiprocess`), every worker writes its figures to that directory, whichever worker answers
`GET /metrics` adds them all up, and a worker that exits is marked dead so its live gauges leave the
sums. The directory is `PROMETHEUS_MULTIPROC_DIR` when set (emptied at start), else a fresh temporary
one, removed at exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import shutil
import socket
import sys
import tempfile

from aiohttp import web

from .app import create_app
from .config import Settings

log = logging.getLogger("gateway")


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _configure_logging(settings: Settings) -> None:
    try:
        from .logs import configure_logging
    except ImportError:  # pragma: no cover - until the structured logger lands
        logging.basicConfig(level=settings.log_level, stream=sys.stderr)
        return
    configure_logging(settings.log_format, settings.log_level)


def _run_one(settings: Settings, sock: socket.socket | None = None, metrics_dir: str | None = None) -> None:
    _install_uvloop()
    app = create_app(settings, metrics_dir=metrics_dir)
    if not settings.keys:
        log.warning("no API keys configured: the gateway is open to anyone who can reach %s:%s",
                    settings.host, settings.port)
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
    )


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; with workers > 1, fork that many processes on one SO_REUSEPORT port."""
    _configure_logging(settings)
    log.info("hf-gateway listening on http://%s:%s (%d worker%s, state: %s)", settings.host, settings.port,
             settings.workers, "s" if settings.workers > 1 else "", "redis" if settings.redis_url else "memory")
    if settings.workers <= 1:
        _run_one(settings)
        return
    from .metrics import enable_multiprocess, mark_worker_dead

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
