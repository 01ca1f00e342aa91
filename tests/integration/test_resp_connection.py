"""The plain hiredis connection under the Redis store (store/resp.py), on a real Redis."""

from __future__ import annotations

import asyncio
import gc

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from gateway.store import StoreError
from gateway.store.redis import RedisStore
from gateway.store.resp import RespConnection

pytestmark = pytest.mark.redis


async def test_a_batch_answers_in_order_with_errors_in_their_place(redis_url: str, key_prefix: str,
                                                                   real_redis: aioredis.Redis) -> None:
    conn = RespConnection.for_url(parse_url(redis_url))
    assert conn is not None
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
    store = RedisStore.from_url(redis_url, timeout=0.5)
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


async def test_a_batch_past_its_deadline_gives_up_and_the_late_reply_is_never_misread() -> None:
    # A stand-in server: the first connection answers too late (a frozen Redis), later ones at once.
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        late = connections == 1
        while await reader.read(4096):
            if late:
                await asyncio.sleep(0.3)
            writer.write(b"+late\r\n" if late else b"$4\r\nmine\r\n")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout=0.05)  # commands wait at most 0.2 s
    try:
        with pytest.raises(StoreError):
            await store.get("k")
        assert await store.get("k") == b"mine"  # a new connection: the late reply is never taken for this one
        assert connections == 2
    finally:
        await store.close()
        server.close()


def test_only_plain_tcp_urls_get_the_raw_connection() -> None:
    assert RespConnection.for_url(parse_url("redis://127.0.0.1:6379/2")) is not None
    assert RespConnection.for_url(parse_url("rediss://example:6380/0")) is None
    assert RespConnection.for_url(parse_url("unix:///tmp/redis.sock")) is None


async def test_connection_refused_is_a_store_error() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout=0.1)
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
    conn = RespConnection("127.0.0.1", port)

    async def lost() -> type[BaseException]:
        try:
            async with asyncio.timeout(0.2):
                await conn.execute([("GET", "a"), ("GET", "b"), ("GET", "c")])
        except (RedisConnectionError, TimeoutError) as exc:
            return type(exc)
        raise AssertionError("the batch was answered")

    try:
        assert await lost() is (RedisConnectionError if server_closes else TimeoutError)
        for _ in range(3):  # the aborted transport reports its loss on a later turn of the loop
            await asyncio.sleep(0)
        gc.collect()  # an unretrieved exception is reported when its future is collected
        assert [c["message"] for c in reported] == []
    finally:
        loop.set_exception_handler(previous)
        conn.close()
        server.close()
