"""`CommandQueue`: automatic pipelining of one process's Redis commands, in the order they were issued.

Every command a `RedisStore` sends is queued here and answered through a future. Whatever was
queued during one turn of the event loop leaves as ONE pipeline (one write, one round trip), and
only one pipeline is in flight at a time, so:
- concurrent requests share round trips (a request's two rate-limit groups, its cache lookup and
  the settlements of requests that just finished travel together), and redis-py's per-command
  machinery runs once per batch instead of once per command;
- the server runs this process's commands in exactly the order they were queued. A command whose
  answer nobody waits for (a settlement sent after the response) is still ahead of every later
  command of this process: the process always reads its own writes.

Invariants: every future is resolved (result, or `StoreError`); a command waits at most its own
`timeout` from the moment it was queued (the batch carrying it is bounded by the earliest deadline
in it); `drain()` returns once everything queued before it has been answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.protocol import StoreError
from gateway.store.resp import RespConnection

log = logging.getLogger("gateway.store")


@dataclass(slots=True)
class Command:
    """One queued command: its arguments, its answer, and (for EVALSHA) the script to load on NOSCRIPT."""

    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    deadline: float
    script: Callable[[], str] | None = None  # the script's source, when args is an EVALSHA
    options: dict[str, Any] = field(default_factory=dict)


def store_error(exc: BaseException) -> StoreError:
    """The one translation of a redis / socket / timeout failure."""
    return StoreError(f"redis: {type(exc).__name__}")


class CommandQueue:
    """FIFO auto-pipelining over a redis-py client (a real server or fakeredis alike)."""

    def __init__(self, client: Any, timeout: float, raw: RespConnection | None = None) -> None:
        self.client = client
        self.raw = raw  # a plain connection written to directly (resp.py); else redis-py's pipeline
        self.timeout = timeout
        self._queue: list[Command] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0  # pipelines (round trips) sent: read by tests and the bench
        self.commands = 0

    def submit(self, *args: Any, script: Callable[[], str] | None = None, **options: Any) -> asyncio.Future[Any]:
        """Queue one command now (it keeps its place in the order); its answer comes on the future."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append(Command(args, fut, loop.time() + self.timeout, script, options))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all())
        return fut

    async def drain(self) -> None:
        """Wait until everything queued so far has been answered (shutdown: settlements are not lost)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})

    async def _send_all(self) -> None:
        # Started on the next turn of the loop: everything queued in this turn is in the first batch.
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._send(batch)
            except BaseException as exc:  # cancelled at shutdown, or a bug: nobody may wait forever
                _fail(batch, exc if isinstance(exc, Exception) else StoreError("redis: cancelled"))
                if not isinstance(exc, Exception):
                    _fail(self._queue, StoreError("redis: cancelled"))
                    self._queue = []
                    raise

    async def _send(self, batch: list[Command]) -> None:
        loop = asyncio.get_running_loop()
        live = [c for c in batch if not c.future.done()]  # a waiter that was cancelled needs no answer
        late = [c for c in live if c.deadline <= loop.time()]
        if late:
            _fail(late, StoreError("redis: TimeoutError"))
            live = [c for c in live if c.deadline > loop.time()]
        if not live:
            return
        self.batches += 1
        self.commands += len(live)
        results = await _by_deadline(live, self._execute)
        if results is None:
            return
        retried = [c for c, r in zip(live, results, strict=True) if isinstance(r, NoScriptError) and c.script]
        if not retried:
            _settle(zip(live, results, strict=True))
            return
        # Every command answered for good is settled now, so a failed reload below cannot take back an
        # answer that already happened in Redis (a take that paid, a lock that was claimed).
        rerun = {id(c) for c in retried}
        _settle((c, r) for c, r in zip(live, results, strict=True) if id(c) not in rerun)
        answers = await _by_deadline(retried, self._reload_scripts)
        if answers is not None:
            _settle(zip(retried, answers, strict=True))

    async def _reload_scripts(self, again: list[Command]) -> list[Any]:
        """The server lost its scripts (restart, SCRIPT FLUSH): in ONE more round trip, load each script
        once and run every command that answered NOSCRIPT again, in their order; their new answers."""
        sources = {c.args[1]: c.script for c in again}  # sha -> its source, one per script
        # (_execute reads only a command's args: the loads borrow a future and deadline they never touch)
        loads = [Command(("SCRIPT", "LOAD", source()), again[0].future, again[0].deadline)
                 for source in sources.values() if source is not None]
        answers = await self._execute(loads + again)
        for answer in answers[:len(loads)]:
            if isinstance(answer, Exception):
                log.warning("redis: loading a script failed: %s", answer)
        return answers[len(loads):]

    async def _execute(self, live: list[Command]) -> list[Any]:
        if self.raw is not None:
            return await self.raw.execute([c.args for c in live])
        if len(live) == 1:
            return [await _one(self.client, live[0])]
        pipe = self.client.pipeline(transaction=False)
        for cmd in live:
            pipe.execute_command(*cmd.args, **cmd.options)
        return list(await pipe.execute(raise_on_error=False))


async def _one(client: Any, cmd: Command) -> Any:
    try:
        return await client.execute_command(*cmd.args, **cmd.options)
    except NoScriptError as exc:
        return exc
    except (RedisConnectionError, RedisTimeoutError):
        raise  # the connection failed: the whole batch did
    except RedisError as exc:
        return exc  # a command error (wrong type, script error): this command's answer, not the batch's


async def _by_deadline(commands: list[Command],
                       run: Callable[[list[Command]], Awaitable[list[Any]]]) -> list[Any] | None:
    """`run(commands)` by the earliest of their deadlines; on failure every one of them fails, and None."""
    try:
        async with asyncio.timeout_at(min(c.deadline for c in commands)):
            return await run(commands)
    except (RedisError, OSError, TimeoutError) as exc:
        _fail(commands, store_error(exc))
        return None


def _settle(answered: Iterable[tuple[Command, Any]]) -> None:
    for cmd, result in answered:
        if cmd.future.done():
            continue
        if isinstance(result, Exception):
            cmd.future.set_exception(store_error(result))
        else:
            cmd.future.set_result(result)


def _fail(batch: list[Command], exc: Exception) -> None:
    err = exc if isinstance(exc, StoreError) else store_error(exc)
    for cmd in batch:
        if not cmd.future.done():
            cmd.future.set_exception(err)
