"""Running the app: uvloop, handler cancellation on client disconnect, SO_REUSEPORT workers, graceful drain."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

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


def _run_one(settings: Settings, sock: socket.socket | None = None) -> None:
    _install_uvloop()
    app = create_app(settings)
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
    children: list[int] = []
    for _ in range(settings.workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _run_one(settings)
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
    for pid in children:
        os.waitpid(pid, 0)
