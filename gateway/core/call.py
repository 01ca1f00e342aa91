"""A request and where it can go: `Call`, its answers, and the `Route` / `Deployment` / `Upstream` it points at.

These types refer to each other (a call carries its route, a route its deployments, a deployment
its upstream, an upstream takes a call), so they live in one module: splitting them would make an
import cycle. The logic around them lives elsewhere: resolving names (`core/routing.py`), the
stages (`core/pipeline.py`), the upstreams themselves (`gateway/upstream/`).

Invariants:
- A `Reply` is complete bytes; a `StreamReply` has already peeked its first event, so an upstream
  that fails before its first byte raises instead of returning a 200 stream.
- Nothing downstream of the handler touches `aiohttp.web.Request`: a `Call` is all a stage sees.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.core.config import ModelConfig
from gateway.core.upstream_config import UpstreamConfig, UpstreamKind


class Dialect(enum.Enum):
    """How errors and streams are shaped for the client."""

    OPENAI = "openai"  # /v1/*: {"error": {"message","type","code"}}
    HF = "hf"  # /models, /pipeline, /hf-inference, TGI/TEI native: {"error": "...", "error_type"?}


class Op(enum.Enum):
    """What the client asked for, independent of the backend that will serve it."""

    CHAT = "chat"  # OpenAI chat completions
    COMPLETIONS = "completions"  # OpenAI completions
    EMBEDDINGS = "embeddings"  # OpenAI embeddings
    RESPONSES = "responses"  # OpenAI Responses API (`event:` + `data:` SSE events, no `[DONE]`)
    HF_TASK = "hf_task"  # an HF inference task ({"inputs", "parameters"}), see Call.task
    TGI_GENERATE = "tgi_generate"  # TGI POST /generate (bare object answer)
    TEI_EMBED = "tei_embed"  # TEI POST /embed
    TEI_PREDICT = "tei_predict"  # TEI POST /predict
    TEI_RERANK = "tei_rerank"  # TEI POST /rerank


@dataclass(slots=True)
class Flags:
    """Per-request policy switches parsed from legacy `options` and headers."""

    wait_for_model: bool | None = None  # None: the configured default
    use_cache: bool | None = None  # x-use-cache / options.use_cache; False = neither read nor write
    no_cache: bool = False  # Cache-Control: no-cache: skip the read, still write
    no_store: bool = False  # Cache-Control: no-store: neither read nor write
    timeout: float | None = None  # X-Gateway-Timeout: the client's shorter deadline (seconds)


@dataclass(slots=True)
class Call:
    """One client request, parsed and routed; what every stage reads and annotates."""

    request_id: str
    dialect: Dialect
    op: Op
    route_label: str  # bounded label for metrics: "chat", "hf_task", ...
    model: str  # the model name the client asked for (URL-bound model wins over the body)
    route: Route
    body: dict[str, Any] | None  # parsed JSON (None for raw-bytes bodies)
    raw: bytes  # the body as received
    stream: bool = False
    task: str | None = None  # HF task when known ("text-generation", "feature-extraction", ...)
    content_type: str | None = None
    accept: str | None = None
    forward_headers: dict[str, str] = field(default_factory=dict)  # x-hf-bill-to, ...
    flags: Flags = field(default_factory=Flags)
    tenant: str | None = None  # set by auth
    api_key_id: str | None = None
    started: float = 0.0  # clock.monotonic() at arrival
    deadline: float = 0.0  # clock.monotonic() past which nothing more is attempted
    # Filled in on the way through, read by metrics and the access log.
    target: Deployment | None = None  # the deployment the terminal calls (fallback sets it per try)
    deployment: str | None = None
    upstream_seconds: float = 0.0
    waited_seconds: float = 0.0
    retries: int = 0
    cache: str = "none"
    reply_headers: dict[str, str] = field(default_factory=dict)  # added to whatever is answered
    tokens_in: int = 0
    tokens_out: int = 0
    path_task: str | None = None  # the task named by a `/pipeline/{task}` path (parsing -> the hf dialect)
    provider: str | None = None  # the provider the inbound URL named (`/hf-inference/models/...`), for the hf dialect
    # X-Scale-Up-Timeout seconds for this attempt: HF's proxy holds it while a managed endpoint wakes
    # (set by the endpoint stage, policies/endpoints/stage.py; sent by upstream/http.py).
    scale_up_hold: float | None = None
    # What the stages did, for the stages after them, the metrics and the access line: one record per family.
    caching: CacheNotes = field(default_factory=lambda: CacheNotes())
    limiting: LimitNotes = field(default_factory=lambda: LimitNotes())
    resilience: ResilienceNotes = field(default_factory=lambda: ResilienceNotes())
    streaming: StreamNotes = field(default_factory=lambda: StreamNotes())
    pending: int = 0  # how many pieces of store work the stages' `prepare` started (core/pipeline.py)
    let_go: Callable[[], None] | None = None  # undoes them at once (core/pipeline.py `let_go`)


@dataclass(slots=True)
class CacheNotes:
    """What the cache and coalesce stages did (policies/cache/)."""

    plan: Any = None  # policies.cache.key.CachePlan, made by the first stage that asks
    digest: str | None = None  # the request's cache digest, computed once
    sent: Any = None  # policies.cache.stage.Sent: the lookup `prepare` queued before the pipeline ran
    claim: Any = None  # policies.cache.claims.Claim: the flight the lookup claimed, for the coalesce stage
    served_bytes: int = 0  # bytes answered from the cache (a hit, or a coalesced follower)
    store: Literal["store", "store_skipped"] | None = None  # what became of this answer
    stored_bytes: int = 0
    store_errors: int = 0


@dataclass(slots=True)
class LimitNotes:
    """What the rate-limit and shaping stages decided (policies/limits/)."""

    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (scope, outcome) per decision
    taken: Any = None  # policies.limits.stage.Taken: the take `prepare` queued before the pipeline ran
    store_error: bool = False
    settle_error: bool = False
    tokens_settled: int | None = None
    shaping_wait: float = 0.0  # seconds queued for an outbound slot
    shaping_store_error: bool = False


@dataclass(slots=True)
class ResilienceNotes:
    """What fallback, cold start and retry did (policies/resilience/)."""

    handoff: bool = False  # set by fallback: another deployment can still take the call, so do not park
    fallbacks: int = 0  # moves from one deployment to the next
    retry_reasons: list[str] = field(default_factory=list)  # the metric reason of each retry
    coldstart: str | None = None  # how the call met a cold model: "probe" | "parked" | "rejected"
    coldstart_wait: float = 0.0  # seconds parked
    coldstart_store_error: bool = False
    keepalives: int = 0  # SSE comments sent while parked
    last_failure: tuple[str, str] | None = None  # (deployment id, reason) of the last failed attempt
    endpoint_passed_over: str | None = None  # a managed endpoint (upstream name) skipped: waking, paused, failed


@dataclass(slots=True)
class StreamNotes:
    """How a streamed answer went (the metrics stage and the relay)."""

    ttfb: float | None = None  # seconds from arrival to the first byte written to the client
    error: str | None = None  # the error that ended the stream early
    client_gone: bool = False


@dataclass(slots=True)
class Reply:
    """A complete answer."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamReply:
    """An SSE answer whose first event has been read already (`first`), the rest still to come."""

    first: bytes
    rest: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    content_type: str = "text/event-stream"
    on_close: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)

    async def events(self) -> AsyncGenerator[bytes, None]:
        """Every event, the peeked one first."""
        try:
            if self.first:
                yield self.first
            async for ev in self.rest:
                yield ev
        finally:
            # Closing now (not at garbage collection) drops the upstream response the moment we stop.
            aclose = getattr(self.rest, "aclose", None)
            if aclose is not None:
                await aclose()


Answer = Reply | StreamReply


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place a route can be served: an upstream and the model's name there (None: as asked)."""

    id: str  # bounded label, "upstream" or "upstream:model"
    upstream: Upstream
    model: str | None

    def target_model(self, requested: str) -> str:
        """The model name to send upstream.

        A managed endpoint serves exactly one model whatever name was asked for, so without a
        configured `model` its name stands for it (one target per endpoint for loading state and
        circuits); the endpoint upstream sends the endpoint's own repository where the name matters.
        """
        if self.model is not None:
            return self.model
        if self.upstream.kind == "endpoint":
            return self.upstream.name
        if self.upstream.kind in ("hf", "openai"):
            return requested
        return requested.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Route:
    """A configured model entry, resolved."""

    label: str  # bounded metric label: the configured name, the pattern, or "other" for `*`
    name: str
    task: str | None
    deployments: tuple[Deployment, ...]
    config: ModelConfig
    aliases: tuple[str, ...] = field(default=())


class Upstream(Protocol):
    """A configured backend with its own connection pool."""

    name: str
    kind: UpstreamKind
    config: UpstreamConfig

    async def send(self, call: Call, model: str) -> Answer: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def pool_stats(self) -> tuple[int, int]: ...
