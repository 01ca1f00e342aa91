"""Connections through a forward proxy (RFC 9110 §9.3.6 CONNECT; RFC 9112 §3.2.2 absolute form).

An https upstream: the gateway connects to the proxy, asks `CONNECT host:port` (with
`Proxy-Authorization` when the proxy URL has credentials), and on a 2xx answer runs TLS with the
upstream through the tunnel, its name as SNI and checked against the certificate, exactly as on a
direct connection: the proxy relays encrypted bytes it cannot read. A plain-http upstream: the
connection is to the proxy itself and each request names the upstream in absolute form
(`GET http://host:port/path`), with `Proxy-Authorization`; `Pool` writes those.

Invariants:
- The answer to CONNECT is read up to `MAX_HEAD` bytes; it must start with an `HTTP/1.x` status
  line. A non-2xx is `ProxyRefused(status)` and its body is never read (the connection is closed);
  a proxy that closes first is `ConnectFailed`; bytes after a 2xx head are `BadResponse` (before TLS
  begins nothing may come: the client speaks first).
- A proxy that does not answer CONNECT within the read timeout is a `ConnectTimeout` (the request
  was never sent); the pool's connect timeout bounds the whole setup, TLS handshake included.
- Errors name the proxy by `ProxyUrl.shown` only, never with its credentials.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from gateway.core.proxies import ProxyUrl
from gateway.upstream.transport.connection import (
    MAX_HEAD,
    BadResponse,
    ConnectFailed,
    Connection,
    ConnectTimeout,
    ProxyRefused,
    ReadTimeout,
)

_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3})[ \r]")


def authority(host: str, port: int) -> str:
    """`host:port`, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_bytes(proxy: ProxyUrl, host: str, port: int) -> bytes:
    """The CONNECT request for `host:port`."""
    target = authority(host, port)
    auth = proxy.authorization
    credentials = f"Proxy-Authorization: {auth}\r\n" if auth else ""
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{credentials}\r\n".encode()


async def open_via_proxy(proxy: ProxyUrl, host: str, port: int, tls: ssl.SSLContext | None,
                         read_timeout: float | None) -> Connection:
    """A connection to `host:port` through `proxy`: a TLS tunnel when `tls` is given, else the proxy itself."""
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(read_timeout), proxy.host, proxy.port)
    if tls is None:
        return conn
    try:
        conn.send(connect_bytes(proxy, host, port))
        await _tunnel_answer(conn, proxy)
        assert conn.transport is not None
        transport = await loop.start_tls(conn.transport, conn, tls, server_hostname=host)
        if transport is None:  # (only when the loop is closing)
            raise ConnectFailed(f"no TLS through the proxy {proxy.shown}")
    except BaseException:
        conn.close()
        raise
    conn.transport = transport  # the TLS transport from now on
    return conn


async def _tunnel_answer(conn: Connection, proxy: ProxyUrl) -> None:
    """Read the proxy's answer to CONNECT; return on a 2xx, raise otherwise."""
    while (end := conn.buffer.find(b"\r\n\r\n")) < 0:
        if len(conn.buffer) > MAX_HEAD:
            raise BadResponse(f"the proxy {proxy.shown} answered CONNECT with a head over {MAX_HEAD} bytes")
        if conn.closed:
            raise ConnectFailed(f"the proxy {proxy.shown} closed the connection before answering CONNECT")
        try:
            await conn.more()
        except ReadTimeout as exc:
            raise ConnectTimeout(f"the proxy {proxy.shown} did not answer CONNECT in time") from exc
    head = conn.take(end + 4)
    match = _STATUS.match(head)
    if match is None:
        raise BadResponse(f"the proxy {proxy.shown} answered CONNECT without an HTTP/1.x status line")
    status = int(match.group(1))
    if not 200 <= status <= 299:
        raise ProxyRefused(status)
    if conn.buffer:
        raise BadResponse(f"the proxy {proxy.shown} sent bytes after its answer to CONNECT, before TLS began")
