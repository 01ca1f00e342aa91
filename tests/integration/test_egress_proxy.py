"""The gateway behind a corporate forward proxy: a real proxy on loopback (tests/support/forward_proxy.py),
the simulator behind it over http (absolute-form requests) and over https (CONNECT, then TLS with a
throwaway CA), proxies from the environment and per upstream, and proxies that refuse."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.simulator.app import create_simulator_app
from tests.support.control_plane_proxy import ControlPlaneProxy
from tests.support.endpoint_kit import TOKEN, TOKEN_ENV, sim_config, stack
from tests.support.forward_proxy import forward_proxy
from tests.support.live_simulator import live_simulator
from tests.support.serving import gateway_client, serving
from tests.support.tls import Tls, make_tls

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
USER, SECRET = "alice", "pr0xy-s3cret-p@ss"  # '@' percent-encoded in the URL, decoded for the proxy


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@asynccontextmanager
async def gateway(upstream: dict[str, Any]) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """The gateway with one upstream `up` (kind hf) for every model; settings (and so the environment) read here."""
    settings = load_settings(None, upstreams={"up": {"kind": "hf", "token_env": None, **upstream}},
                             models=[{"name": "*", "deployments": [{"upstream": "up"}]}], cache={"enabled": False})
    async with gateway_client(settings, clock=FakeClock(autojump=True)) as client:
        yield client


@asynccontextmanager
async def tls_simulator(directory: Path) -> AsyncIterator[tuple[str, Tls]]:
    """The simulator on https://localhost:PORT, its certificate signed by a fresh CA (`Tls.ca_file`)."""
    tls = make_tls(directory)
    async with serving(create_simulator_app(), tls=tls.server_context()) as url:
        yield url, tls


async def chat(client: TestClient, **extra: Any) -> tuple[int, bytes]:  # type: ignore[type-arg]
    resp = await client.post("/v1/chat/completions", json={**CHAT, **extra})
    return resp.status, await resp.read()


async def test_a_plain_http_upstream_is_asked_of_HTTP_PROXY_in_absolute_form(monkeypatch: pytest.MonkeyPatch) -> None:
    async with live_simulator() as sim, forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with gateway({"base_url": sim.base}) as client:
            for _ in range(2):
                status, body = await chat(client)
                assert status == 200, body
    assert proxy.requests == [f"POST {sim.base}/v1/chat/completions"] * 2
    assert proxy.connections == 1  # the connection to the proxy is kept alive and reused
    assert proxy.tunnels == []
    assert len(sim.state.requests) == 2


async def test_an_https_upstream_is_reached_through_a_CONNECT_tunnel_with_TLS_end_to_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with tls_simulator(tmp_path) as (url, tls), forward_proxy(credentials=(USER, SECRET)) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with(USER, SECRET))
        async with gateway({"base_url": url, "ca_file": str(tls.ca_file)}) as client:
            status, body = await chat(client)
            assert status == 200, body
            status, body = await chat(client, stream=True)
            assert status == 200 and body.rstrip().endswith(b"data: [DONE]"), body
    assert proxy.tunnels == [url.removeprefix("https://")]  # one tunnel, reused by the second request
    assert proxy.authorizations == [basic(USER, SECRET)]  # sent with CONNECT, decoded from the URL
    assert [start[:1] for start in proxy.tunnel_starts] == [b"\x16"]  # a TLS handshake went through, not HTTP
    assert tls.names == ["localhost"]  # SNI names the upstream, through the tunnel
    assert proxy.requests == []


async def test_the_upstream_certificate_is_checked_through_the_tunnel(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `ca_file` the throwaway CA is not trusted: a 502; `verify: false` checks nothing."""
    async with tls_simulator(tmp_path) as (url, _), forward_proxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        async with gateway({"base_url": url, "retry": {"max_attempts": 1}}) as client:
            status, body = await chat(client)
            assert status == 502 and b"upstream_unreachable" in body, body
        async with gateway({"base_url": url, "verify": False}) as client:
            status, body = await chat(client)
            assert status == 200, body
    assert len(proxy.tunnels) == 2


@pytest.mark.parametrize(("no_proxy", "proxied"), [
    ("127.0.0.1", False),
    ("example.com, 127.0.0.0/8", False),
    ("localhost,127.0.0.1:{port}", False),  # that host and port only
    ("*", False),
    ("127.0.0.1:1", True),  # another port
    ("example.com,.127.0.0", True),  # names never match an IP address
])
async def test_NO_PROXY_sends_matching_upstreams_direct(monkeypatch: pytest.MonkeyPatch, no_proxy: str,
                                                       proxied: bool) -> None:
    async with live_simulator() as sim, forward_proxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy.replace("{port}", sim.base.rpartition(":")[2]))
        async with gateway({"base_url": sim.base}) as client:
            status, body = await chat(client)
            assert status == 200, body
    assert proxy.connections == (1 if proxied else 0)
    assert len(sim.state.requests) == 1


async def test_a_per_upstream_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with live_simulator() as sim, forward_proxy() as from_env, forward_proxy() as own:
        monkeypatch.setenv("HTTP_PROXY", from_env.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # says direct: the upstream's own proxy is used anyway
        async with gateway({"base_url": sim.base, "proxy": own.url}) as client:
            assert (await chat(client))[0] == 200
        monkeypatch.delenv("NO_PROXY")
        async with gateway({"base_url": sim.base, "proxy": "none"}) as client:  # the environment is ignored
            assert (await chat(client))[0] == 200
    assert len(own.requests) == 1 and from_env.connections == 0
    assert len(sim.state.requests) == 2


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and basic(USER, SECRET).split()[1] not in text


@pytest.mark.parametrize(("refuse", "attempts"), [(None, 1), (403, 1), (502, 3)])
async def test_a_proxy_that_refuses_the_tunnel_is_a_502_naming_the_upstream_and_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        refuse: int | None, attempts: int) -> None:
    """Wrong credentials (407) and a forbidding proxy (403) are configuration: answered at once; a 502 from
    the proxy (it cannot reach the upstream) is retried like a refused connection."""
    caplog.set_level(logging.DEBUG)
    async with tls_simulator(tmp_path) as (url, tls), forward_proxy(("alice", "right"), refuse=refuse) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url_with(USER, SECRET))
        async with gateway({"base_url": url, "ca_file": str(tls.ca_file)}) as client:
            resp = await client.post("/v1/chat/completions", json=CHAT)
            body = await resp.text()
            metrics = await (await client.get("/metrics")).text()
            status = await (await client.get("/status")).text()
    assert resp.status == 502, body
    error = json.loads(body)["error"]
    assert error["code"] == "upstream_proxy_refused"
    assert error["message"] == f"upstream up cannot be reached: the proxy refused the tunnel (status {refuse or 407})"
    assert proxy.refused == attempts and proxy.tunnels == []
    _no_secret(body, metrics, status, caplog.text)
    assert tls.names == []


async def test_a_plain_http_request_the_proxy_refuses_with_407_is_a_502(monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Through a proxy a 407 is the proxy's answer: never relayed as if the upstream asked the client to log in."""
    caplog.set_level(logging.DEBUG)
    async with live_simulator() as sim, forward_proxy(("alice", "right")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url_with(USER, SECRET))
        async with gateway({"base_url": sim.base}) as client:
            status, body = await chat(client)
    assert status == 502, body
    assert b"upstream up cannot be reached: the proxy refused the request (status 407)" in body
    assert proxy.refused == 1 and sim.state.requests == []
    _no_secret(body.decode(), caplog.text)


async def test_a_managed_endpoint_reaches_its_control_plane_and_its_url_through_the_proxy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    async with forward_proxy() as proxy, stack(sim_config(), endpoint={"proxy": proxy.url}) as s:
        status, body = await s.chat("solo")
        assert status == 200, body
    control = f"GET {s.sim_url}/v2/endpoint/acme/acme-chat"
    assert proxy.requests[0] == control  # the first reading, at start
    assert any(r.startswith(f"POST {s.sim_url}/endpoints/acme-chat/") for r in proxy.requests), proxy.requests
    assert s.served_by_endpoint() == 1


async def test_NO_PROXY_is_applied_per_URL_to_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control plane (a pass-through in front of the simulator's, on its own port) goes through
    HTTP_PROXY; the endpoint's URL, on the simulator's port, is in NO_PROXY and is called direct: one
    upstream, one proxy choice per URL."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    plane = ControlPlaneProxy(target="")

    def control(sim_url: str) -> str:
        plane.target = sim_url
        monkeypatch.setenv("NO_PROXY", f"example.com, 127.0.0.1:{sim_url.rpartition(':')[2]}")
        return plane.url

    try:
        async with forward_proxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            await plane.up()
            async with stack(sim_config(), control=control) as s:
                status, body = await s.chat("solo")
                assert status == 200, body
    finally:
        await plane.close()
    assert proxy.requests and all(r.startswith(f"GET {plane.url}/v2/") for r in proxy.requests), proxy.requests
    assert s.served_by_endpoint() == 1
