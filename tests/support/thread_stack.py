"""A simulator and a gateway listening on real ports, served from a background thread's event loop.

Sync clients (`OpenAI`, `InferenceClient`) can then be called straight from test code, and async
clients from the test's own loop, exactly as an application would use them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.http.app import create_app
from gateway.simulator.app import SIM_STATE, create_simulator_app

GATEWAY_TOKEN = "hf_fake_gateway_token"
CLIENT_TOKEN = "hf_fake_client_token"


@dataclass
class Stack:
    """Handles on the running pair."""

    sim_url: str = ""
    gw_url: str = ""
    sim_app: web.Application | None = None
    gw_app: web.Application | None = None
    loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def sim(self) -> Any:
        assert self.sim_app is not None
        return self.sim_app[SIM_STATE]

    def call_soon(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the servers' loop (for state that is not thread-safe) and return its result."""
        assert self.loop is not None
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # pragma: no cover - surfaced to the test
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return fut.result(timeout=10)


async def _serve(app: web.Application, stack: Stack) -> str:
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stack._runners.append(runner)
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"http://127.0.0.1:{port}"


def start_stack(settings_for: Callable[[str], Settings], sim_config: Any = None, clock: Clock | None = None) -> Stack:
    """Start the simulator, then a gateway built by `settings_for(sim_url)`, in a daemon thread.

    `clock`: one clock for both (a FakeClock moved from the test with `stack.call_soon`)."""
    os.environ.setdefault("HF_TOKEN", GATEWAY_TOKEN)
    stack = Stack()
    ready: Future[None] = Future()

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        stack.loop = loop

        async def boot() -> None:
            stack.sim_app = create_simulator_app(sim_config, clock=clock)
            stack.sim_url = await _serve(stack.sim_app, stack)
            stack.gw_app = create_app(settings_for(stack.sim_url), clock=clock)
            stack.gw_url = await _serve(stack.gw_app, stack)

        try:
            loop.run_until_complete(boot())
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        loop.run_forever()
        for runner in reversed(stack._runners):
            loop.run_until_complete(runner.cleanup())
        loop.close()

    stack._thread = threading.Thread(target=main, name="e2e-stack", daemon=True)
    stack._thread.start()
    ready.result(timeout=20)
    return stack


def stop_stack(stack: Stack) -> None:
    if stack.loop is not None:
        stack.loop.call_soon_threadsafe(stack.loop.stop)
    if stack._thread is not None:
        stack._thread.join(timeout=20)
