"""The fault rig: the simulator and a gateway on real ports in the test's loop, a counting client,
and leak checks.

Both servers listen on 127.0.0.1 (real TCP, real resets), so every transport fault is the genuine
article, while tasks and connection pools stay inspectable from the test. `Rig.send` makes one
request and reads its answer to the end (a stream until EOF); the shared `Tally` counts requests
sent against answers received and 5xx the gateway should not have produced. `Rig.settled` waits
until nothing is left behind: no gateway task but the listeners', no upstream connection in use,
nothing in flight at the simulator.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from gateway.core.clock import Clock
from gateway.core.config import Settings, load_settings
from gateway.http.app import create_app
from gateway.http.appkeys import UPSTREAMS
from gateway.simulator.app import SIM_STATE, create_simulator_app
from gateway.simulator.state import SimState
from tests.support.processes import free_port

UPSTREAM_TOKEN = "hf_fake_test_token_UPSTREAM_7c1e"
CLIENT_TIMEOUT = 15.0  # the client's own hard limit: an answer later than this is a hang


@dataclass
class Tally:
    """Requests sent versus answers received, for one suite."""

    name: str
    sent: int = 0
    answered: int = 0
    abandoned: int = 0  # the client left on purpose: no answer expected
    gateway_5xx: int = 0
    unexpected: list[str] = field(default_factory=list)

    def line(self) -> str:
        """`name: sent=N answered=N gateway_5xx=0`; requests their client abandoned on purpose are
        not counted as sent (no answer is owed to a client that left) and are listed apart."""
        extra = f" (+{self.abandoned} abandoned by their client on purpose)" if self.abandoned else ""
        return (f"{self.name}: sent={self.sent - self.abandoned} answered={self.answered} "
                f"gateway_5xx={self.gateway_5xx}{extra}")


@dataclass
class Answer:
    """One answer as the client saw it."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    stream: bool

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def events(self) -> list[bytes]:
        return [e for e in self.body.split(b"\n\n") if e.strip()]

    def error_event(self) -> Any | None:
        """The in-band error event of a stream (the last event), parsed, or None."""
        for ev in reversed(self.events):
            line = ev.split(b"\n")[-1]
            if line.startswith(b"data:"):
                data = line[5:].strip()
                if data == b"[DONE]":
                    return None
                try:
                    obj = orjson.loads(data)
                except orjson.JSONDecodeError:
                    return None
                return obj if isinstance(obj, dict) and "error" in obj else None
        return None


def fault_settings(sim_url: str, *, upstream_read_timeout: float = 1.0, **overrides: Any) -> Settings:
    """Gateway settings against the simulator: an `hf` upstream, an OpenAI one and a dead one."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    tight = {"connect_timeout": 1.0, "read_timeout": upstream_read_timeout, "max_response_bytes": 1024 * 1024}
    base: dict[str, Any] = dict(
        upstream_url=sim_url,
        upstreams={
            "hf": {"kind": "hf", **tight},
            "oai": {"kind": "openai", "base_url": f"{sim_url}/v1", **tight},
            "dead": {"kind": "tgi", "base_url": dead, **tight},  # not `hf`: upstream_url would replace it
        },
        models=[
            {"name": "oai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "dead/*", "deployments": [{"upstream": "dead"}]},
            {"name": "*", "deployments": [{"upstream": "hf"}]},
        ],
        request_timeout=5.0,
        log_format="text",
    )
    base.update(overrides)
    return load_settings(None, **base)


class Rig:
    """A simulator, a gateway in front of it, and a client session."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.sim_server: TestServer | None = None
        self.gw_server: TestServer | None = None
        self.session: aiohttp.ClientSession | None = None
        self.baseline: set[asyncio.Task[Any]] = set()

    @property
    def sim(self) -> SimState:
        assert self.sim_server is not None
        return self.sim_server.app[SIM_STATE]

    @property
    def sim_url(self) -> str:
        assert self.sim_server is not None
        return str(self.sim_server.make_url("")).rstrip("/")

    @property
    def gw_url(self) -> str:
        assert self.gw_server is not None
        return str(self.gw_server.make_url("")).rstrip("/")

    @property
    def gw_app(self) -> web.Application:
        assert self.gw_server is not None
        return self.gw_server.app

    async def start(self, settings_for: Callable[[str], Settings], sim_config: Any = None,
                    sim_clock: Clock | None = None, **app_kwargs: Any) -> None:
        self.baseline = set(asyncio.all_tasks())
        self.sim_server = TestServer(create_simulator_app(sim_config, clock=sim_clock), handler_cancellation=True)
        await self.sim_server.start_server()
        self.gw_server = TestServer(create_app(settings_for(self.sim_url), **app_kwargs), handler_cancellation=True)
        await self.gw_server.start_server()
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.gw_server is not None:
            await self.gw_server.close()
        if self.sim_server is not None:
            await self.sim_server.close()

    # --- requests --------------------------------------------------------------------------------
    async def send(self, method: str, path: str, *, expect: Iterable[int], json: Any = None,
                   data: bytes | None = None, headers: dict[str, str] | None = None) -> Answer:
        """One request, its whole answer read; counted in the tally against `expect`."""
        assert self.session is not None
        self.tally.sent += 1
        async with self.session.request(method, self.gw_url + path, json=json, data=data,
                                        headers=headers) as resp:
            body = await resp.read()
            answer = Answer(resp.status, CIMultiDict(resp.headers), body,
                            resp.headers.get("Content-Type", "").startswith("text/event-stream"))
        self.record(answer.status, set(expect), f"{method} {path}")
        return answer

    def record(self, status: int, expect: set[int], what: str) -> None:
        self.tally.answered += 1
        if status not in expect:
            self.tally.unexpected.append(f"{what} -> {status} (expected {sorted(expect)})")
            if status >= 500:
                self.tally.gateway_5xx += 1
        elif status == 500:
            self.tally.gateway_5xx += 1  # the gateway's own crash is never an acceptable answer

    # --- leak checks -----------------------------------------------------------------------------
    def pools(self) -> dict[str, tuple[int, int]]:
        return {name: up.pool_stats() for name, up in self.gw_app[UPSTREAMS].items()}

    def stray_tasks(self, allow: Iterable[str] = ()) -> list[str]:
        """Tasks started since the rig came up that are not a server's per-connection reader."""
        allowed = {"RequestHandler.start", *allow}  # one reader per open keep-alive connection
        out = []
        for task in asyncio.all_tasks() - self.baseline:
            if task is asyncio.current_task() or task.done():
                continue
            name = task.get_coro().__qualname__  # type: ignore[union-attr]
            if name not in allowed:
                out.append(name)
        return sorted(out)

    async def settled(self, timeout: float = 5.0, allow: Iterable[str] = ()) -> None:
        """Assert that nothing is left behind: upstream connections released, no stray tasks
        (but the long-lived ones named in `allow`, e.g. the store's pub/sub reader)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            busy = {n: s for n, s in self.pools().items() if s[0]}
            strays = self.stray_tasks(allow)
            if not busy and not strays and self.sim.in_flight == 0:
                return
            if loop.time() > end:
                raise AssertionError(f"left behind: pools in use {busy}, tasks {strays}, "
                                     f"simulator in flight {self.sim.in_flight}")
            await asyncio.sleep(0.02)


@asynccontextmanager
async def rig(tally: Tally, settings_for: Callable[[str], Settings] = fault_settings, sim_config: Any = None,
              sim_clock: Clock | None = None, **app_kwargs: Any) -> AsyncIterator[Rig]:
    """A started Rig (simulator built from `sim_config`, a `SimConfig`, on `sim_clock`, the real clock
    by default; `app_kwargs`, e.g. `clock`, go to the gateway's `create_app`); closed (servers, client) on exit."""
    r = Rig(tally)
    saved = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = UPSTREAM_TOKEN  # read once, while the settings are built
    try:
        try:
            await r.start(settings_for, sim_config, sim_clock, **app_kwargs)
        finally:
            if saved is None:  # leave the environment as we found it for other suites
                os.environ.pop("HF_TOKEN", None)
            else:
                os.environ["HF_TOKEN"] = saved
        yield r
    finally:
        await r.close()


async def eventually(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `pred` on the loop's clock until it holds (True) or `timeout` passes (False)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True


def chat(model: str, stream: bool = False, *, max_tokens: int = 20) -> dict[str, Any]:
    """An OpenAI chat-completions body for `model` (fault tokens go in the model name)."""
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens,
            "stream": stream}


def report(config: pytest.Config, tally: Tally) -> None:
    """Print the tally's one-line summary where CI output shows it (even under -q)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    line = tally.line()
    if reporter is None:  # pragma: no cover - running without the terminal plugin
        print(line)
        return
    if capture is None:  # pragma: no cover - running with -p no:capture
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        reporter.write_line("")
        reporter.write_line(line)


def tally_fixtures(name: str, scope: Literal["session", "module"]) -> tuple[Any, Any]:
    """The two fixtures of a suite that keeps a `Tally`: `<name>_tally`, one Tally per `scope`,
    reported as one line when the scope ends, and `tally`, the same object for one test, which
    fails the test if any of its answers was not one it expected. Assign both at module level:
    `faults_tally, tally = tally_fixtures("faults", "session")`."""
    suite_name = f"{name.replace('-', '_')}_tally"

    @pytest.fixture(scope=scope, name=suite_name)
    def suite(pytestconfig: pytest.Config) -> Iterator[Tally]:
        tally = Tally(name)
        yield tally
        report(pytestconfig, tally)

    @pytest.fixture(name="tally")
    def per_test(request: pytest.FixtureRequest) -> Iterator[Tally]:
        tally: Tally = request.getfixturevalue(suite_name)
        seen = len(tally.unexpected)
        yield tally
        new = tally.unexpected[seen:]
        assert not new, f"unexpected answers: {new}"

    return suite, per_test






