"""The upstream HTTP/1.1 client against answers a careful proxy must not take: heads over the limits or
malformed, endless trailers, bytes nobody asked for (after an answer, or on an idle connection), a
body cut by a reset, CR/LF/CRLF line ends split across reads, connections shared across partitions.

Each refusal comes at once (never at the read timeout) and leaves nothing in use.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from gateway.upstream.transport.connection import BadResponse, Reset
from gateway.upstream.transport.pool import Pool
from tests.support.scripted_upstream import OK, serving


async def post(pool: Pool, body: bytes = b"{}") -> bytes:
    resp = await pool.request("POST", f"{pool.origin}/v1/x", {"Content-Type": "application/json"}, body)
    data = await resp.read()
    resp.release()
    return data


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(101)) + b"Content-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 099 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nX A: v\r\nContent-Length: 2\r\n\r\nhi",
    b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
], ids=["101-fields", "head-70k-one-read", "status-099", "status-2000", "bare-lf", "nul-in-value", "space-in-name",
        "not-http"])
async def test_heads_a_proxy_must_refuse_are_refused_at_once(answer: bytes) -> None:
    async with serving([answer], read_timeout=60.0) as (_, pool):  # refused at once, not at the read timeout
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(BadResponse):
            await pool.request("POST", f"{pool.origin}/", {}, b"")
        assert loop.time() - start < 5.0 and pool.stats() == (0, 0)


async def test_endless_trailers_are_refused() -> None:
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 1000) for i in range(200))
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n" + trailers + b"\r\n"
    async with serving([answer]) as (_, pool):
        with pytest.raises(BadResponse):
            resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
            try:
                await resp.read()
            finally:
                resp.close()
        assert pool.stats() == (0, 0)


async def test_bytes_after_the_answer_in_the_same_read_retire_the_connection() -> None:
    async with serving([OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", OK]) as (script, pool):
        assert await post(pool) == b'{"ok":true}'
        assert pool.stats() == (0, 0)  # not kept: the stray answer would be the next request's
        assert await post(pool) == b'{"ok":true}'
        assert script.connections == 2


async def test_bytes_on_an_idle_connection_retire_it() -> None:
    idle = asyncio.Event()
    sent = asyncio.Event()

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await idle.wait()  # the answer was read and the connection went back to the pool
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
        await writer.drain()
        sent.set()
        await reader.read()  # until the client hangs up

    server = await asyncio.start_server(late, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=2, connect_timeout=1.0,
                read_timeout=5.0)
    try:
        assert await post(pool) == b'{"ok":true}' and pool.stats() == (0, 1)
        idle.set()
        await sent.wait()
        for _ in range(200):
            if pool.stray:
                break
            await asyncio.sleep(0.005)
        assert pool.stray == 1 and pool.stats() == (0, 0) and not pool._open
    finally:
        await pool.close()
        server.close()


async def test_a_body_that_runs_to_the_close_is_whole_only_after_a_clean_close() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nhalf of it")
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # a reset, not a FIN

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=2, connect_timeout=1.0,
                read_timeout=5.0)
    try:
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        with pytest.raises(Reset):
            await resp.read()
        resp.close()
    finally:
        await pool.close()
        server.close()
    async with serving([b"HTTP/1.1 200 OK\r\n\r\nall of it"]) as (_, pool):
        assert await post(pool) == b"all of it"  # the same framing ended by a FIN: complete


async def test_lines_may_end_in_cr_lf_or_crlf_even_split_across_reads() -> None:
    parts = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"a\r\ndata: one\r\r\n",
             b"1\r\n\n\r\n", b"c\r\ndata: two\r\n\r\r\n", b"0\r\n\r\n"]

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for part in parts:  # one write per part: the CR of "one" and its LF arrive apart
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=2, connect_timeout=1.0,
                read_timeout=5.0)
    try:
        resp = await pool.request("POST", f"{pool.origin}/", {}, b"")
        lines = []
        while line := await resp.readline(1024):
            lines.append(line)
        resp.release()
        assert lines == [b"data: one\r", b"data: two\r\n", b"\r"]  # the CRLF split across reads is one line end
        assert pool.stats() == (0, 1)
    finally:
        await pool.close()
        server.close()


async def test_connections_are_never_shared_between_partitions() -> None:
    async with serving([OK] * 8, limit=2) as (script, pool):
        async def ask(partition: str) -> None:
            resp = await pool.request("POST", f"{pool.origin}/", {}, b"", partition=partition)
            await resp.read()
            resp.release()

        await ask("a")
        await ask("b")  # a's idle connection is not b's: a second connection
        await ask("a")
        await ask("b")
        assert script.connections == 2 and pool.stats() == (0, 2)
        await ask("c")  # a third partition: a new connection, and the oldest idle one goes (limit 2)
        assert script.connections == 3 and pool.stats() == (0, 2)


async def test_a_head_answer_has_no_body() -> None:
    async with serving([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", OK]) as (script, pool):
        resp = await pool.request("HEAD", f"{pool.origin}/", {}, None)
        assert resp.status == 200 and await resp.read() == b""
        resp.release()
        assert await post(pool) == b'{"ok":true}' and script.connections == 1
