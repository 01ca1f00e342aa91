"""`EndpointUpstream`: a managed dedicated endpoint as an `Upstream`, aimed wherever the control plane says.

The endpoint's URL and engine are not in the configuration: the endpoint policy
(`gateway/policies/endpoints/`) reads them from the control plane and calls `point_at`. Each (URL,
engine) pair gets its own `HttpUpstream` (its own connection pool and dialect); a replaced one is kept
until shutdown, so a call still streaming from it is never cut. Before the first reading the upstream
uses the configured `url` / `engine` hint, if any; without one it refuses with `EndpointUnavailable`.

What the endpoint's state allows (waking, paused...) is decided by the endpoint stage before a call
gets here; this class only sends, with the same token on the data plane as on the control plane.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.call import Answer, Call
from gateway.core.clock import Clock
from gateway.core.errors import EndpointUnavailable
from gateway.core.upstream_config import UpstreamConfig, UpstreamKind
from gateway.upstream.endpoints.engines import EngineDialect, dialect_for
from gateway.upstream.http import HttpUpstream


@dataclass(frozen=True, slots=True)
class Aim:
    """Where calls go now."""

    url: str
    engine: str
    dialect: EngineDialect
    repository: str
    upstream: HttpUpstream


class EndpointUpstream:
    """Upstream protocol for `kind: endpoint`."""

    def __init__(self, name: str, config: UpstreamConfig, clock: Clock, retry_after_cap: float = 120.0) -> None:
        self.name = name
        self.kind: UpstreamKind = "endpoint"
        self.config = config
        self._clock = clock
        self._retry_after_cap = retry_after_cap
        self._aim: Aim | None = None
        self._retired: list[HttpUpstream] = []
        self._started = False

    @property
    def label(self) -> str:
        """`namespace/name`, as HF shows the endpoint."""
        return f"{self.config.namespace}/{self.config.name}"

    @property
    def aim(self) -> Aim | None:
        """Where calls go now (None: no URL known yet)."""
        return self._aim

    async def start(self) -> None:
        self._started = True
        if self.config.url and self._aim is None:
            await self.point_at(self.config.url, self.config.engine or "tgi", "")

    async def point_at(self, url: str, engine: str, repository: str) -> None:
        """Send calls to `url`, in the dialect of `engine`, naming `repository` where the server checks it."""
        current = self._aim
        if current is not None and current.url == url and current.engine == engine:
            if current.repository != repository and repository:
                self._aim = Aim(url, engine, current.dialect, repository, current.upstream)
            return
        dialect = dialect_for(engine)
        cfg = self.config.model_copy(update={"base_url": url + dialect.base_suffix})
        inner = HttpUpstream(self.name, cfg, dialect.planner, self._clock, self._retry_after_cap)
        if self._started:
            await inner.start()
        if current is not None:
            self._retired.append(current.upstream)
        self._aim = Aim(url, engine, dialect, repository or (current.repository if current else ""), inner)

    async def send(self, call: Call, model: str) -> Answer:
        aim = self._aim
        if aim is None:
            raise EndpointUnavailable(
                f"endpoint {self.label} has not been found yet: the control plane has not answered "
                "(set `url` on the upstream to use a known URL meanwhile)")
        if model == self.name and aim.repository:
            model = aim.repository  # the route did not name a model: the endpoint's own
        return await aim.upstream.send(call, model)

    async def close(self) -> None:
        if self._aim is not None:
            await self._aim.upstream.close()
        for old in self._retired:
            await old.close()
        self._retired.clear()

    def pool_stats(self) -> tuple[int, int]:
        """(active, idle) connections over every URL this endpoint had."""
        uppers = self._retired + ([self._aim.upstream] if self._aim is not None else [])
        active = idle = 0
        for up in uppers:
            a, i = up.pool_stats()
            active, idle = active + a, idle + i
        return active, idle
