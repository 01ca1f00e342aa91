"""`TimedStore`: a `Store` that times every Redis operation and counts its failures, for `/metrics`.

`create_app` wraps a Redis store in it, so every policy's store traffic shows up in
`gateway_redis_duration_seconds` / `gateway_redis_errors_total` without any policy touching
metrics. The `op` label is the method name (`get`, `set`, `delete`, `ttl`, `publish`, `ping`,
`wait_for`) or, for `run_script`, the script's name (bounded: the files in `gateway/store/scripts/`).

Every failure is also counted by its cause (`causes.py`) through `on_failure`
(`gateway_store_failures_total{store, cause}`).

Invariants: behaviour is the inner store's, unchanged (same results, same `StoreError`s); a
`wait_for` is a deliberate wait, so only its failures are counted, never its duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.core.clock import Clock
from gateway.store.protocol import Store, StoreError

Recorder = Callable[[float, bool], None]  # (seconds, ok): one operation's duration and outcome
OnFailure = Callable[[str], None]  # the cause of one failed operation


class TimedStore:
    """Store protocol around another store, recording latency and errors per operation."""

    def __init__(self, inner: Store, recorder: Callable[[str], Recorder], clock: Clock,
                 on_failure: OnFailure | None = None) -> None:
        self.inner = inner
        self._on_failure = on_failure
        self.kind = inner.kind
        self.pipelined = bool(getattr(inner, "pipelined", False))
        self._recorder_for = recorder  # op -> its recording function (Metrics.redis_recorder)
        self._clock = clock
        self._recorders: dict[str, Recorder] = {}  # op -> its metric children, resolved once

    def _recorder(self, op: str) -> Recorder:
        record = self._recorders.get(op)
        if record is None:
            record = self._recorders[op] = self._recorder_for(op)
        return record

    async def _timed(self, op: str, aw: Any) -> Any:
        record = self._recorder(op)
        start = self._clock.monotonic()
        try:
            result = await aw
        except StoreError as exc:
            record(self._clock.monotonic() - start, False)
            self._failed(exc)
            raise
        record(self._clock.monotonic() - start, True)
        return result

    def _failed(self, exc: BaseException) -> None:
        if self._on_failure is not None:
            self._on_failure(exc.cause if isinstance(exc, StoreError) else "error")

    async def get(self, key: str) -> bytes | None:
        result: bytes | None = await self._timed("get", self.inner.get(key))
        return result

    async def set(self, key: str, value: bytes, *, ttl: float | None = None, nx: bool = False) -> bool:
        return bool(await self._timed("set", self.inner.set(key, value, ttl=ttl, nx=nx)))

    async def delete(self, *keys: str) -> None:
        await self._timed("delete", self.inner.delete(*keys))

    async def ttl(self, key: str) -> float | None:
        result: float | None = await self._timed("ttl", self.inner.ttl(key))
        return result

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._timed(name, self.inner.run_script(name, keys, args))

    def send_script(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self._sent(name, self.inner.send_script(name, keys, args))  # type: ignore[attr-defined]

    def send_get(self, key: str) -> asyncio.Future[Any]:
        return self._sent("get", self.inner.send_get(key))  # type: ignore[attr-defined]

    def _sent(self, op: str, fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Time a queued command from now until its answer, without waiting for it."""
        record = self._recorder(op)
        start = self._clock.monotonic()

        def done(f: asyncio.Future[Any]) -> None:
            failure = None if f.cancelled() else f.exception()
            record(self._clock.monotonic() - start, not f.cancelled() and failure is None)
            if failure is not None:
                self._failed(failure)

        fut.add_done_callback(done)
        return fut

    async def publish(self, channel: str, message: bytes) -> None:
        await self._timed("publish", self.inner.publish(channel, message))

    async def wait_for(self, channel: str, timeout: float) -> bytes | None:
        try:
            return await self.inner.wait_for(channel, timeout)
        except StoreError as exc:
            self._recorder("wait_for")(0.0, False)
            self._failed(exc)
            raise

    async def ping(self) -> bool:
        start = self._clock.monotonic()
        ok = await self.inner.ping()  # answers False rather than raising when Redis is down
        self._recorder("ping")(self._clock.monotonic() - start, ok)
        return ok

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Anything beyond the protocol (e.g. RedisStore.client) is the inner store's.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
