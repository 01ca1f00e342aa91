"""A control plane that breaks on demand: a real HTTP server in front of the simulator's `/v2/...` routes.

Modes (set with `mode = ...`, or `down()` / `up()` for the listening socket itself):
- "pass":    forwards to the simulator (with the simulator's Host, so the URLs it builds stay reachable);
- "slow":    holds every request until `release()` (or the client gives up);
- "401", "403", "500": answers that status with an HF-style error body;
- "garbage": answers 200 with a body that is not an endpoint object;
- "reads-fail": GETs answer 500, the rest (pause, resume...) pass: a reading that fails must stop actions;
- `down()`:  stops listening (connections are refused); `up()` listens again on the same port.
Every request that reaches it is counted in `seen`, with its Authorization header kept only as
"present or not", so a test can check what the gateway sent without holding a token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.processes import free_port


@dataclass
class ControlPlaneProxy:
    target: str  # the simulator's base URL
    mode: str = "pass"
    port: int = field(default_factory=free_port)
    seen: list[tuple[str, str, bool]] = field(default_factory=list)  # (method, path, had a bearer token)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None
    _gate: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def release(self) -> None:
        self._gate.set()

    async def close(self) -> None:
        self.release()
        await self.down()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.method, request.path, auth.lower().startswith("bearer ") and len(auth) > 7))
        if self.mode == "slow":
            await self._gate.wait()
        if self.mode in ("401", "403", "500") or (self.mode == "reads-fail" and request.method == "GET"):
            status = 500 if self.mode == "reads-fail" else int(self.mode)
            return web.json_response({"error": f"simulated control-plane failure {self.mode}"}, status=status)
        if self.mode == "garbage":
            return web.Response(body=b'{"oops": [1, 2', content_type="application/json")
        assert self._session is not None
        host = self.target.split("://", 1)[1]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        headers["Host"] = host
        async with self._session.request(request.method, self.target + request.path_qs, headers=headers,
                                         data=await request.read()) as resp:
            body = await resp.read()
            return web.Response(status=resp.status, body=body, content_type=resp.content_type)
