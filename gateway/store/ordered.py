"""Store work sent now and answered later: the policies' side of the Redis store's command queue.

A pipelined store (`RedisStore`, and `TimedStore` around one) has `send_script` / `send_get`:
the command takes its place in the process's command order at once and its answer arrives on a
future, so a policy can put several commands in one round trip (send both, then await both) or
leave work it does not need an answer for (a settlement, a cache write) to finish after the
response, while every later command of the process still runs after it.

Any other store (the embedded `MemoryStore`, test doubles) gets the plain coroutine, awaited
where it stands: there is no round trip to save, and behaviour stays exactly sequential.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store.protocol import Store, StoreError

OnError = Callable[[StoreError], None]


def pipelined(store: Store) -> bool:
    """Whether `store` queues commands in order and answers them on futures."""
    return bool(getattr(store, "pipelined", False))


def send_script(store: Store, name: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
    """The script, queued now when the store pipelines (a future); else the coroutine, run when awaited."""
    if pipelined(store):
        fut: asyncio.Future[Any] = store.send_script(name, keys, args)  # type: ignore[attr-defined]
        return fut
    return store.run_script(name, keys, args)


def send_get(store: Store, key: str) -> Awaitable[bytes | None]:
    """`store.get`, queued now when the store pipelines; else the coroutine."""
    if pipelined(store):
        fut: asyncio.Future[bytes | None] = store.send_get(key)  # type: ignore[attr-defined]
        return fut
    return store.get(key)


async def in_background(work: Awaitable[Any], on_error: OnError | None = None,
                        on_done: Callable[[Any], None] | None = None) -> None:
    """Let queued work finish on its own (its failure goes to `on_error`); inline work is awaited here."""
    if isinstance(work, asyncio.Future):
        work.add_done_callback(lambda fut: _report(fut, on_error, on_done))
        return
    try:
        result = await work
    except StoreError as exc:
        if on_error is not None:
            on_error(exc)
        return
    if on_done is not None:
        on_done(result)


def forget(work: Awaitable[Any]) -> None:
    """Nobody will await `work` (a queued command): retrieve its outcome so asyncio does not report it."""
    if isinstance(work, asyncio.Future):
        work.add_done_callback(_swallow)
    elif asyncio.iscoroutine(work):
        work.close()


def _report(fut: asyncio.Future[Any], on_error: OnError | None, on_done: Callable[[Any], None] | None) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is None:
        if on_done is not None:
            on_done(fut.result())
    elif on_error is not None and isinstance(exc, StoreError):
        on_error(exc)


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
