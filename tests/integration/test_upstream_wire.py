"""The upstream HTTP/1.1 client (`upstream/transport/`) against a raw TCP server scripted byte by byte.

Every framing an upstream may use (Content-Length, chunked with extensions and trailers, close-
delimited), keep-alive reuse and when it must not happen, a connection dropped while idle, the pool
limit, flow control on a large body, timeouts, and malformed answers.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.upstream.transport.connection import (
    BadHeader,
    BadResponse,
    ConnectTimeout,
    Disconnected,
    LineTooLong,
    ReadTimeout,
    Truncated,
    request_bytes,
)
from gateway.upstream.transport.pool import Pool
from tests.support.scripted_upstream import CLOSE, OK, serving


async def post(pool: Pool, body: bytes = b"{}") -> bytes:
    resp = await pool.request("POST", f"{pool.origin}/v1/x", {"Content-Type": "application/json"}, body)
    data = await resp.read()
    resp.release()
    return data


async def test_content_length_answers_reuse_one_connection() -> None:
    async with serving([OK, OK, OK]) as (script, pool):
        assert [await post(pool) for _ in range(3)] == [b'{"ok":true}'] * 3
        assert script.connections == 1 and pool.stats() == (0, 1)
        first = script.requests[0]
        assert first.startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:") and b"Content-Length: 2\r\n" in first


async def test_chunked_with_extensions_and_trailers_then_reuse() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4;name=v\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n")
    async with serving([chunked, OK]) as (script, pool):
        assert await post(pool) == b"abcdefg"
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == 1


async def test_a_body_ended_by_close_is_read_whole_and_never_reused() -> None:
    async with serving([b"HTTP/1.1 200 OK\r\n\r\nuntil the end", OK]) as (script, pool):
        assert await post(pool) == b"until the end"
        assert pool.stats() == (0, 0)
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == 2


async def test_connection_close_is_honoured() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
    async with serving([closing, OK]) as (script, pool):
        assert await post(pool) == b"hi"
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == 2


async def test_a_truncated_body_is_an_error_and_frees_the_slot() -> None:
    async with serving([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabc"]) as (_, pool):
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        with pytest.raises(Truncated):
            await resp.read()
        resp.release()
        assert pool.stats() == (0, 0)


@pytest.mark.parametrize("answer", [
    b"SMTP 220 hello\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
], ids=["not-http", "bad-code", "bad-header", "two-lengths"])
async def test_malformed_heads_are_refused(answer: bytes) -> None:
    async with serving([answer]) as (_, pool):
        with pytest.raises(BadResponse):
            await pool.request("POST", f"{pool.origin}/", {}, b"")
        assert pool.stats() == (0, 0) and not pool._open  # slot free, connection closed


async def test_a_bad_chunk_size_is_refused() -> None:
    async with serving([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"]) as (_, pool):
        with pytest.raises(BadResponse):  # (body bytes that came with the head are parsed with it)
            resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
            await resp.read()
        assert pool.stats() == (0, 0)


async def test_sse_lines_across_chunk_boundaries_and_an_overlong_line() -> None:
    events = b"data: {\"a\":1}\n\ndata: [DONE]\n\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(events[i:i + 5]), events[i:i + 5]) for i in range(0, len(events), 5))
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    long_line = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    async with serving([answer + b"0\r\n\r\n", long_line]) as (_, pool):
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        lines = []
        while line := await resp.readline(1024):
            lines.append(line)
        resp.release()
        assert lines == [b'data: {"a":1}\n', b"\n", b"data: [DONE]\n", b"\n"]
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        with pytest.raises(LineTooLong):
            await resp.readline(50)
        resp.close()


async def test_a_connection_dropped_while_idle_is_replaced_once() -> None:
    async with serving([OK, CLOSE, OK]) as (script, pool):
        assert await post(pool) == b'{"ok":true}'
        assert await post(pool) == b'{"ok":true}'  # the reused one hung up: sent again on a new connection
        assert script.connections == 2 and len(script.requests) == 3


async def test_a_new_connection_that_hangs_up_is_an_error_not_a_loop() -> None:
    async with serving([CLOSE, CLOSE]) as (script, pool):
        with pytest.raises(Disconnected):
            await post(pool)
        assert script.connections == 1 and pool.stats() == (0, 0)


async def test_the_pool_limit_queues_the_next_request() -> None:
    async with serving([OK, OK], limit=1) as (script, pool):
        first = await pool.request("POST", f"{pool.origin}/", {}, b"")
        second = asyncio.ensure_future(post(pool))
        for _ in range(5):  # let it start and queue behind the limit (no time passes)
            await asyncio.sleep(0)
        assert pool._slots.locked() and not second.done() and pool.stats() == (1, 0)
        await first.read()
        first.release()
        assert await second == b'{"ok":true}'
        assert script.connections == 1


async def test_a_large_body_read_slowly_arrives_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: past the pause threshold many times
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(big), big)
    async with serving([answer]) as (_, pool):
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        parts = []
        async for part in resp.chunks():
            parts.append(part)
            await asyncio.sleep(0)
        resp.release()
        assert b"".join(parts) == big


async def test_an_upstream_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=2, connect_timeout=1.0,
                read_timeout=0.05)
    try:
        with pytest.raises(ReadTimeout):
            await post(pool)
        assert pool.stats() == (0, 0)
    finally:
        await pool.close()
        server.close()


async def test_interim_answers_are_skipped() -> None:
    async with serving([b"HTTP/1.1 100 Continue\r\n\r\n" + OK]) as (_, pool):
        assert await post(pool) == b'{"ok":true}'


async def test_a_response_left_unread_is_not_reused() -> None:
    async with serving([OK, OK]) as (script, pool):
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        resp.release()  # body never read: the connection cannot serve another request
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == 2


async def test_a_request_cancelled_before_its_answer_frees_its_slot() -> None:
    asked = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()  # the request arrived: the client now waits for an answer that never comes
        await asyncio.Event().wait()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=1, connect_timeout=1.0,
                read_timeout=30.0)
    try:
        task = asyncio.ensure_future(post(pool))
        await asyncio.wait_for(asked.wait(), 5)
        assert pool.stats() == (1, 0) and not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats() == (0, 0)
    finally:
        await pool.close()
        server.close()


def test_targets_keep_the_path_and_quote_only_what_must_be() -> None:
    pool = Pool("http://up:8080/base", limit=1, connect_timeout=1, read_timeout=1)
    assert pool.target("http://up:8080/base/models/org/m:fast?x=1") == "/base/models/org/m:fast?x=1"
    assert pool.target("http://up:8080/a b") == "/a%20b"
    assert pool.host_header == "up:8080"
    with pytest.raises(ValueError):
        pool.target("http://elsewhere/x")
    assert Pool("https://router.example", limit=1, connect_timeout=1, read_timeout=1).ssl is not None


def test_request_bytes_carry_host_and_length() -> None:
    data = request_bytes("POST", "/v1/x", "h:1", {"Authorization": "Bearer fake"}, b"{}")
    assert data == b"POST /v1/x HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer fake\r\nContent-Length: 2\r\n\r\n{}"
    assert b"Content-Length" not in request_bytes("GET", "/", "h", {}, None)
    for bad in ({"X-A": "v\r\nX-Injected: 1"}, {"X-A\n": "v"}):
        with pytest.raises(BadHeader):
            request_bytes("POST", "/", "h", bad, b"")


READ, KEPT, REFUSED = "read", "kept", "refused"  # body read, connection kept for the next request; refused


@pytest.mark.parametrize("head, body, expected", [
    (b"Transfer-Encoding: gzip\r\nContent-Length: 2", b"hi", REFUSED),
    (b"Transfer-Encoding: gzip, chunked", b"2\r\nhi\r\n0\r\n\r\n", REFUSED),  # no TE was sent: only chunked
    (b"Transfer-Encoding: chunked\r\nContent-Length: 5", b"2\r\nhi\r\n0\r\n\r\n", REFUSED),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked", b"2\r\nhi\r\n0\r\n\r\n", REFUSED),
    (b"Transfer-Encoding: gzip", b"hi", REFUSED),  # would otherwise run until a close that never comes
    (b"Content-Length: 7", b"seven!!", KEPT),
    (b"Content-Length:  7 ", b"seven!!", KEPT),  # optional whitespace around the value is no error
    (b"Transfer-Encoding: Chunked", b"2\r\nhi\r\n0\r\n\r\n", KEPT),
    (b"X-No-Framing: 1", b"until the end", READ),
    (b"Content-Length: 9", b"", KEPT),  # 204: no body whatever the head says
    (b"Upgrade: websocket\r\nConnection: upgrade", b"", REFUSED),  # 101: nobody asked to switch
], ids=["te-not-chunked-with-length", "te-chunked-last", "te-and-length", "te-chunked-twice", "te-unknown",
        "length", "length-with-ows", "te-chunked-any-case", "no-framing", "no-content", "switching"])
async def test_framing_follows_rfc_9112(head: bytes, body: bytes, expected: str) -> None:
    status = b"204 No Content" if b"Content-Length: 9" in head else b"101 Switching" if b"Upgrade" in head \
        else b"200 OK"
    answer = b"HTTP/1.1 " + status + b"\r\n" + head + b"\r\n\r\n" + body
    async with serving([answer, OK]) as (script, pool):
        if expected == REFUSED:
            with pytest.raises(BadResponse):
                resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
                await resp.read()
            assert pool.stats() == (0, 0)
            return
        data = await post(pool)
        assert data in (b"", b"seven!!", b"hi", b"until the end")
        assert pool.stats() == ((0, 1) if expected == KEPT else (0, 0))
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == (1 if expected == KEPT else 2)


@pytest.mark.parametrize("value", [b"1_0", b"+5", b"5 5", b"0x5", b"", b"99999999999999999999999"])
async def test_only_plain_digits_make_a_content_length(value: bytes) -> None:
    async with serving([b"HTTP/1.1 200 OK\r\nContent-Length: " + value + b"\r\n\r\nhello"]) as (_, pool):
        with pytest.raises(BadResponse):
            await pool.request("POST", f"{pool.origin}/", {}, b"")


async def test_only_plain_hex_makes_a_chunk_size() -> None:
    async with serving([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n0\r\n\r\n"]) as (_, pool):
        with pytest.raises(BadResponse):
            resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
            await resp.read()
        assert pool.stats() == (0, 0)


async def test_waiting_for_a_free_connection_counts_against_the_connect_timeout() -> None:
    async with serving([OK, OK], limit=1, connect_timeout=0.05) as (_, pool):
        held = await pool.request("POST", f"{pool.origin}/", {}, b"")
        with pytest.raises(ConnectTimeout):
            await post(pool)
        await held.read()
        held.release()
        assert await post(pool) == b'{"ok":true}' and pool.stats() == (0, 1)


async def test_a_response_dropped_unreleased_gives_its_slot_back() -> None:
    async with serving([OK, OK], limit=1) as (_, pool):
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        assert pool.stats() == (1, 0)
        del resp
        gc.collect()
        assert pool.stats() == (0, 0)
        assert await post(pool) == b'{"ok":true}'


def test_the_host_header_leaves_out_a_default_port() -> None:
    def host(url: str) -> str:
        return Pool(url, limit=1, connect_timeout=1, read_timeout=1).host_header

    assert host("https://router.example:443") == "router.example"
    assert host("http://tei.internal:80/x") == "tei.internal"
    assert host("http://tei.internal:8080") == "tei.internal:8080"
    assert host("http://[::1]:8080") == "[::1]:8080"

