"""The HTTP client through a forward proxy, byte by byte: what it sends a proxy, and what it makes of the
proxy's answers (a raw TCP server plays the proxy; the upstream's own name is never dialled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from gateway.core.proxies import ProxyUrl
from gateway.upstream.transport.connection import BadResponse, ConnectFailed, ProxyRefused, WireError
from gateway.upstream.transport.pool import Pool
from tests.support.scripted_upstream import CLOSE, OK, Scripted


@asynccontextmanager
async def via_scripted_proxy(url: str, answers: list[bytes],
                             credentials: tuple[str, str] = ("u", "p")) -> AsyncIterator[tuple[Scripted, Pool]]:
    script = Scripted(answers)
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    proxy = ProxyUrl("127.0.0.1", server.sockets[0].getsockname()[1], *credentials)
    pool = Pool(url, limit=2, connect_timeout=2.0, read_timeout=5.0, proxy=proxy)
    try:
        yield script, pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("url", "authority"), [
    ("https://router.example", b"router.example:443"),
    ("https://[fd00::1]:8443/v1", b"[fd00::1]:8443"),
])
async def test_an_https_upstream_is_asked_for_with_CONNECT_and_the_proxy_credentials(url: str,
                                                                                    authority: bytes) -> None:
    async with via_scripted_proxy(url, [b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"]) as (script, pool):
        with pytest.raises(ProxyRefused, match=r"the proxy refused the tunnel \(status 407\)"):
            await pool.request("GET", url, {}, None)
        assert pool.stats() == (0, 0)  # the slot is free again, the connection gone
    assert script.requests == [b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority
                               + b"\r\nProxy-Authorization: Basic dTpw\r\n\r\n"]


@pytest.mark.parametrize(("answer", "error", "text"), [
    (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope!", ProxyRefused, "status 403"),
    (b"HTTP/1.0 502 Bad Gateway\r\n\r\n", ProxyRefused, "status 502"),
    (b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK", BadResponse, "after its answer to CONNECT"),
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", BadResponse, "without an HTTP/1.x status line"),
    (CLOSE, ConnectFailed, "closed the connection before answering CONNECT"),
])
async def test_what_the_proxy_answers_to_CONNECT(answer: bytes, error: type[WireError], text: str) -> None:
    async with via_scripted_proxy("https://router.example", [answer]) as (_, pool):
        with pytest.raises(error, match=text) as caught:
            await pool.request("POST", "https://router.example/v1/chat/completions", {}, b"{}")
        assert pool.stats() == (0, 0)
    assert ":p@" not in str(caught.value) and "dTpw" not in str(caught.value)


async def test_a_plain_http_upstream_is_asked_of_the_proxy_in_absolute_form() -> None:
    url = "http://tgi.example:8080"
    async with via_scripted_proxy(url, [OK, OK]) as (script, pool):
        for _ in range(2):
            resp = await pool.request("POST", f"{url}/generate?x=1", {"Authorization": "Bearer t"}, b"{}")
            assert resp.status == 200 and await resp.read() == b'{"ok":true}'
            resp.release()
    assert script.connections == 1  # the connection to the proxy is reused
    for sent in script.requests:
        assert sent.startswith(b"POST http://tgi.example:8080/generate?x=1 HTTP/1.1\r\nHost: tgi.example:8080\r\n")
        assert b"\r\nProxy-Authorization: Basic dTpw\r\n" in sent and b"\r\nAuthorization: Bearer t\r\n" in sent


async def test_a_proxy_without_credentials_gets_no_proxy_authorization() -> None:
    async with via_scripted_proxy("http://tgi.example", [OK], credentials=("", "")) as (script, pool):
        (await pool.request("GET", "http://tgi.example/health", {}, None)).release()
    assert script.requests[0].startswith(b"GET http://tgi.example/health HTTP/1.1\r\nHost: tgi.example\r\n")
    assert b"proxy-authorization" not in script.requests[0].lower()


async def test_a_407_to_a_plain_http_request_is_the_proxys_refusal() -> None:
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with via_scripted_proxy("http://tgi.example", [refusal]) as (_, pool):
        with pytest.raises(ProxyRefused, match=r"refused the request \(status 407\)"):
            await pool.request("GET", "http://tgi.example/health", {}, None)
        assert pool.stats() == (0, 0)
