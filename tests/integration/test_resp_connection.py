"""Our own connection under the Redis store (store/resp.py): order, failures by cause, stalls, on a real Redis."""

from __future__ import annotations

import asyncio
import gc
import select
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from gateway.store import StoreError
from gateway.store.redis import RedisStore
from gateway.store.resp import Endpoint, RespConnection, _Batch

pytestmark = pytest.mark.redis


async def test_a_batch_answers_in_order_with_errors_in_their_place(redis_url: str, key_prefix: str,
                                                                   real_redis: aioredis.Redis) -> None:
    conn = RespConnection.for_url(redis_url)
    k = f"{key_prefix}:k"
    try:
        replies = await conn.execute([("SET", k, b"v", "PX", 5000), ("GET", k), ("HGET", k, "f"),
                                      ("EVALSHA", "0" * 40, 0), ("PTTL", k)])
        assert replies[:2] == [b"OK", b"v"] and 0 < replies[4] <= 5000
        assert isinstance(replies[2], ResponseError) and isinstance(replies[3], NoScriptError)
    finally:
        conn.close()


async def test_a_killed_connection_loses_at_most_its_batch_and_the_next_batch_reconnects(
    redis_url: str, key_prefix: str, real_redis: aioredis.Redis,
) -> None:
    store = RedisStore.from_url(redis_url, stall=0.5)
    k = f"{key_prefix}:n"
    try:
        await store.set(k, b"1")
        name = f"{key_prefix}-victim"
        await store.queue.submit("CLIENT", "SETNAME", name)
        clients = await real_redis.client_list()
        victim = next(c for c in clients if c.get("name") == name)
        await real_redis.client_kill(victim["addr"])
        results = await asyncio.gather(store.get(k), return_exceptions=True)
        # Which of the two depends on whether the kill reached the client before the GET was written;
        # either way the batch gets one answer, never a hang or a reply meant for another command.
        assert results[0] == b"1" or isinstance(results[0], StoreError)
        assert await store.get(k) == b"1"  # whatever happened, the next command works on a new connection
    finally:
        await store.close()


async def test_a_silent_server_is_a_stall_and_the_late_reply_is_never_misread() -> None:
    # A stand-in server: the first connection says nothing for a while (a frozen Redis), later ones
    # answer at once. Silence past `stall` with answers owed fails the batch ("stalled") and closes the
    # connection, so the late reply can never be taken for the next command's.
    connections = 0
    release = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        late = connections == 1
        while await reader.read(4096):
            if late:
                await release.wait()
            writer.write(b"+late\r\n" if late else b"$4\r\nmine\r\n")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", stall=0.05)
    try:
        with pytest.raises(StoreError) as failed:
            await store.get("k")
        assert failed.value.cause == "stalled"
        release.set()
        assert store.health.down is not None  # the breaker opened: calls fail at once until a probe answers
        for _ in range(200):
            if store.health.down is None:
                break
            await asyncio.sleep(0.01)
        assert await store.get("k") == b"mine"  # a new connection: the late reply is never taken for this one
        assert connections >= 2
    finally:
        await store.close()
        server.close()


async def test_a_reply_waiting_unread_in_the_socket_is_never_a_stall(redis_url: str) -> None:
    # Under a burst the event loop itself falls behind: the reply has arrived but is not read yet when
    # the watchdog looks. The watchdog looks at the socket, so it waits instead of failing the batch.
    conn = RespConnection.for_url(redis_url, stall=0.05)
    try:
        await conn.execute([("PING",)])  # connected
        proto = conn._proto
        assert proto is not None and proto.transport is not None
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        proto.send(_Batch(1, fut), b"*1\r\n$4\r\nPING\r\n")
        sock = proto.transport.get_extra_info("socket")
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        assert poller.poll(2000), "no reply within 2 s"  # the reply is in the socket; the loop has not run
        proto.owed_since -= 10.0  # as if the loop had been busy for ten seconds since the batch was written
        proto.heard -= 10.0
        proto._check()
        assert not fut.done() and not proto.lost  # not blamed on Redis
        assert await fut == [b"PONG"]
        # And the converse: answers owed, nothing unread, silent past `stall`: a stall.
        stalled: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        proto.send(_Batch(1, stalled), b"*3\r\n$5\r\nBLPOP\r\n$12\r\nnever-filled\r\n$1\r\n0\r\n")
        proto.owed_since -= 10.0
        proto.heard -= 10.0
        proto._check()
        with pytest.raises(StoreError) as failed:
            await stalled
        assert failed.value.cause == "stalled"
    finally:
        conn.close()


def test_every_single_server_url_gets_our_connection() -> None:
    assert RespConnection.for_url("redis://127.0.0.1:6379/2").endpoint.db == 2
    tls = RespConnection.for_url("rediss://example:6380/0?ssl_cert_reqs=none").endpoint
    assert tls.tls is not None and tls.port == 6380
    assert RespConnection.for_url("unix:///tmp/redis.sock").endpoint.path == "/tmp/redis.sock"
    assert "fake-password" not in repr(RespConnection.for_url("redis://u:fake-password@h:1/0").endpoint)


async def test_connection_refused_is_a_store_error() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", stall=0.1)
    try:
        with pytest.raises(StoreError):
            await store.get("k")
        assert not await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("server_closes", [False, True], ids=["silent", "closes"])
async def test_a_lost_batch_leaves_no_unretrieved_failure_behind(server_closes: bool) -> None:
    # A Redis outage fails every batch in flight: that must not log "Future exception was never
    # retrieved" once per queued command (an ERROR line per command, every batch, all outage long).
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4096)  # the whole batch arrives; it is never answered
        if server_closes:
            writer.close()
        else:
            await reader.read(4096)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    conn = RespConnection(Endpoint("127.0.0.1", port), stall=0.05)

    async def lost() -> str:
        try:
            await conn.execute([("GET", "a"), ("GET", "b"), ("GET", "c")])
        except StoreError as exc:
            return exc.cause
        raise AssertionError("the batch was answered")

    try:
        assert await lost() == ("lost" if server_closes else "stalled")
        for _ in range(3):  # the aborted transport reports its loss on a later turn of the loop
            await asyncio.sleep(0)
        gc.collect()  # an unretrieved exception is reported when its future is collected
        assert [c["message"] for c in reported] == []
    finally:
        loop.set_exception_handler(previous)
        conn.close()
        server.close()
