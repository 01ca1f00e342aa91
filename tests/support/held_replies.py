"""`HeldReplies`: the Redis store's plain connection (store/resp.py) stood in for by fakeredis, with replies held.

Every batch runs on the fakeredis server at once (the command took effect) but, while `hold()` is
on, its replies wait until `release()`: a reply still on its way back when its waiter gives up
(a guard timeout, a client that left). `ran` tells the test that a held batch has run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import fakeredis

from gateway.store.redis import RedisStore


class HeldReplies:
    """Executes batches on a fakeredis client; their replies come back only when released."""

    def __init__(self, client: fakeredis.FakeAsyncRedis) -> None:
        self.client = client
        self.released = asyncio.Event()
        self.released.set()
        self.ran = asyncio.Event()  # a batch ran while replies were held

    def hold(self) -> None:
        self.released.clear()
        self.ran.clear()

    def release(self) -> None:
        self.released.set()

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        replies = list(await pipe.execute(raise_on_error=False))
        if not self.released.is_set():
            self.ran.set()
            await self.released.wait()
        return replies

    def close(self) -> None:
        pass


def held_store(timeout: float = 1.0) -> tuple[RedisStore, HeldReplies]:
    """A RedisStore on a fresh fakeredis server whose batches go through a HeldReplies."""
    client = fakeredis.FakeAsyncRedis()
    held = HeldReplies(client)
    return RedisStore(client, timeout=timeout, raw=held), held  # type: ignore[arg-type]
