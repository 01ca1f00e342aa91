"""`SentinelConnection`: the master a set of Redis Sentinels names, followed across failovers.

It stands where `RespConnection` stands under the command queue (`pipelining.py`). Before the
first batch, and after the master failed us, it asks the Sentinels of the URL in turn
(`SENTINEL GET-MASTER-ADDR-BY-NAME <master>`) and connects to the address the first one gives,
with the URL's credentials, database and TLS. A lost, refused or stalled connection, or a
`READONLY` answer (the old master came back as a replica), makes the next batch ask again, so
a failover needs no restart. The failed batch itself fails (its commands may or may not have
run: nothing is retried).

The Sentinels are asked without credentials (their own `requirepass` is not supported: the URL's
password is the master's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from gateway.core.redis_url import RedisUrl
from gateway.store.protocol import StoreError
from gateway.store.resp import DEFAULT_STALL, Endpoint, RespConnection

log = logging.getLogger("gateway.store")


class SentinelConnection:
    """Executes batches on the current master of `url.service`."""

    def __init__(self, url: RedisUrl, *, stall: float = DEFAULT_STALL) -> None:
        self.url = url
        self.stall = stall
        self.master: tuple[str, int] | None = None
        self._conn: RespConnection | None = None
        self.discoveries = 0  # times the Sentinels were asked (tests)

    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands` from the current master (StoreError when the batch was lost)."""
        conn = self._conn if self._conn is not None else await self._discover()
        try:
            replies = await conn.execute(commands)
        except StoreError:
            self._forget()
            raise
        if any(isinstance(r, ResponseError) and str(r).startswith("READONLY") for r in replies):
            self._forget()  # a demoted master: ask the Sentinels again on the next batch
        return replies

    async def _discover(self) -> RespConnection:
        tried: list[str] = []
        for host, port in self.url.hosts:
            sentinel = RespConnection(Endpoint(host, port, tls=Endpoint.of(self.url).tls), stall=self.stall)
            try:
                reply = (await sentinel.execute([("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.url.service)]))[0]
            except StoreError as exc:
                tried.append(f"{host}:{port} ({exc.cause})")
                continue
            finally:
                sentinel.close()
            if isinstance(reply, list) and len(reply) == 2:
                master = (reply[0].decode(), int(reply[1]))
                if master != self.master:
                    log.warning("redis sentinel: the master of %r is %s:%s", self.url.service, *master)
                self.master = master
                self.discoveries += 1
                self._conn = RespConnection(Endpoint.of(self.url, *master), stall=self.stall)
                return self._conn
            tried.append(f"{host}:{port} (knows no master {self.url.service!r})")
        raise StoreError(f"redis sentinel: no master for {self.url.service!r} ({', '.join(tried)})", "refused")

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._forget()
