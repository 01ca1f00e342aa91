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

Failures (`health.py`): every outcome is reported to the store's `StoreHealth`. While its breaker
is open (Redis refused, lost or stalled) a command fails at once with the cause, and one probe
(PING) at a time tests the server, with backoff, until it answers.

Invariants: every future is resolved (result, or `StoreError` with its cause); on our own
connection (resp.py) a command is never given up for being late, only when the connection fails
or stalls; through redis-py (fakeredis in tests) it waits at most `timeout` from the moment it was
queued; `drain()` returns once everything queued before it has been answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.store.causes import cause_of_exception, cause_of_reply
from gateway.store.health import StoreHealth
from gateway.store.protocol import StoreError

log = logging.getLogger("gateway.store")
PROBE_BACKOFF = (0.05, 0.1, 0.2, 0.4, 0.5)  # seconds between probes of a server that is down


class Connection(Protocol):
    """What the queue needs of a connection: resp.RespConnection, or a test's stand-in."""

    async def execute(self, commands: list[tuple[Any, ...]]) -> list[Any]: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class Command:
    """One queued command: its arguments, its answer, and (for EVALSHA) the script to load on NOSCRIPT."""

    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    deadline: float
    script: Callable[[], str] | None = None  # the script's source, when args is an EVALSHA
    options: dict[str, Any] = field(default_factory=dict)


def store_error(exc: BaseException) -> StoreError:
    """The one translation of a redis / socket / timeout failure, with its cause."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, ResponseError) and not isinstance(exc, NoScriptError):
        return StoreError(f"redis: {exc}", cause_of_reply(str(exc)))
    if isinstance(exc, NoScriptError):
        return StoreError(f"redis: {exc}", "noscript")
    if isinstance(exc, RedisTimeoutError):
        return StoreError("redis: no answer in time", "stalled")
    if isinstance(exc, RedisConnectionError):
        return StoreError(f"redis: {exc}", "auth" if "AUTH" in str(exc).upper() else "lost")
    if isinstance(exc, OSError | TimeoutError):
        return StoreError(f"redis: {type(exc).__name__}", cause_of_exception(exc))
    return StoreError(f"redis: {type(exc).__name__}")


def again(err: StoreError) -> StoreError:
    """A fresh StoreError like `err`: one exception object raised in many places would pile up tracebacks."""
    return StoreError(str(err), err.cause)


class CommandQueue:
    """FIFO auto-pipelining over our own connection (`raw`), or a redis-py client (fakeredis in tests)."""

    def __init__(self, client: Any, timeout: float, raw: Connection | None = None,
                 health: StoreHealth | None = None) -> None:
        self.client = client
        self.raw = raw  # a connection written to directly (resp.py); else redis-py's pipeline
        self.timeout = timeout  # redis-py only: how long a command may wait from the moment it is queued
        self.health = health or StoreHealth()
        self._queue: list[Command] = []
        self._sender: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self.batches = 0  # pipelines (round trips) sent: read by tests and the bench
        self.commands = 0

    def submit(self, *args: Any, script: Callable[[], str] | None = None, **options: Any) -> asyncio.Future[Any]:
        """Queue one command now (it keeps its place in the order); its answer comes on the future."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        down = self.health.down
        if down is not None:  # the breaker is open: fail at once, and make sure a probe is on its way
            fut.set_exception(again(down))
            self._probe_soon()
            return fut
        self._queue.append(Command(args, fut, loop.time() + self.timeout, script, options))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_all())
        return fut

    async def drain(self) -> None:
        """Wait until everything queued so far has been answered (shutdown: settlements are not lost)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})

    async def close(self) -> None:
        """Stop probing (shutdown)."""
        if self._prober is not None and not self._prober.done():
            self._prober.cancel()
            await asyncio.gather(self._prober, return_exceptions=True)

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
        live = [c for c in batch if not c.future.done()]  # a waiter that was cancelled needs no answer
        if self.raw is None:
            loop = asyncio.get_running_loop()
            late = [c for c in live if c.deadline <= loop.time()]
            if late:
                _fail(late, StoreError("redis: no answer in time", "stalled"))
                live = [c for c in live if c.deadline > loop.time()]
        down = self.health.down
        if down is not None:  # opened while this batch waited: it fails as the ones before it did
            _fail(live, again(down))
            return
        if not live:
            return
        self.batches += 1
        self.commands += len(live)
        results = await self._bounded(live, self._execute)
        if results is None:
            return
        retried = [c for c, r in zip(live, results, strict=True) if isinstance(r, NoScriptError) and c.script]
        if not retried:
            self._settle(zip(live, results, strict=True))
            return
        # Every command answered for good is settled now, so a failed reload below cannot take back an
        # answer that already happened in Redis (a take that paid, a lock that was claimed).
        rerun = {id(c) for c in retried}
        self._settle((c, r) for c, r in zip(live, results, strict=True) if id(c) not in rerun)
        answers = await self._bounded(retried, self._reload_scripts)
        if answers is not None:
            self._settle(zip(retried, answers, strict=True))

    async def _bounded(self, commands: list[Command],
                       run: Callable[[list[Command]], Awaitable[list[Any]]]) -> list[Any] | None:
        """`run(commands)`; on failure every one of them fails (and the health hears of it), and None.

        On our own connection nothing times a batch out: resp.py fails it if the server stalls.
        Through redis-py the earliest deadline in the batch bounds it.
        """
        try:
            if self.raw is not None:
                return await run(commands)
            async with asyncio.timeout_at(min(c.deadline for c in commands)):
                return await run(commands)
        except (StoreError, RedisError, OSError, TimeoutError) as exc:
            err = store_error(exc)
            self.health.failed(err)
            _fail(commands, err)
            if self.health.down is not None:
                self._probe_soon()
            return None

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

    def _settle(self, answered: Iterable[tuple[Command, Any]]) -> None:
        ok = False
        for cmd, result in answered:
            if isinstance(result, Exception):
                err = store_error(result)
                self.health.failed(err)
                if not cmd.future.done():
                    cmd.future.set_exception(err)
                continue
            ok = True
            if not cmd.future.done():
                cmd.future.set_result(result)
        if ok:
            self.health.answered()

    # --- the breaker's probe ------------------------------------------------------------------------
    def _probe_soon(self) -> None:
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        """PING the server (a fresh connection) until it answers; then the breaker closes."""
        for attempt in range(1_000_000):
            await asyncio.sleep(PROBE_BACKOFF[min(attempt, len(PROBE_BACKOFF) - 1)])
            if self.health.down is None:
                return
            if self._sender is not None and not self._sender.done():
                continue  # a batch is still failing out; never two on the connection at once
            try:
                reply = await self._probe_once()
            except (StoreError, RedisError, OSError, TimeoutError) as exc:
                self.health.failed(store_error(exc))
                continue
            if isinstance(reply, Exception):
                self.health.failed(store_error(reply))
                continue
            self.health.answered()
            return

    async def _probe_once(self) -> Any:
        if self.raw is not None:
            return (await self.raw.execute([("PING",)]))[0]
        async with asyncio.timeout(self.timeout):
            return await self.client.execute_command("PING")


async def _one(client: Any, cmd: Command) -> Any:
    try:
        return await client.execute_command(*cmd.args, **cmd.options)
    except NoScriptError as exc:
        return exc
    except (RedisConnectionError, RedisTimeoutError):
        raise  # the connection failed: the whole batch did
    except RedisError as exc:
        return exc  # a command error (wrong type, script error): this command's answer, not the batch's


def _fail(batch: list[Command], exc: Exception) -> None:
    err = store_error(exc)
    for cmd in batch:
        if not cmd.future.done():
            cmd.future.set_exception(err)
