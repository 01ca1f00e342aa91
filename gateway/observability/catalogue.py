"""The metric catalogue: every family the gateway exports, with its labels, buckets and bounds.

`Catalogue` only defines the families; `gateway.observability.metrics.Metrics` records into them. Children
(`.labels(...)`) are cached per bounded label tuple in `Children`, and label values that come
from a fixed vocabulary (cache outcome, retry reason, ...) are checked once, when their child
is first created, so a typo fails loudly instead of minting a new series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, Literal, TypeGuard, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from gateway.store.causes import CAUSES
from gateway.upstream.endpoints.control import REASONS as CONTROL_ERROR_REASONS
from gateway.upstream.endpoints.info import STATES

UNKNOWN_STATE = "unknown"  # an endpoint not read yet

CacheOutcome = Literal["hit", "miss", "bypass", "coalesced", "none"]
CacheEvent = Literal["hit", "miss", "bypass", "coalesced", "store", "store_skipped"]
CacheBytesDirection = Literal["served", "stored"]
RetryReason = Literal["429", "5xx", "connect", "timeout", "loading"]
RateLimitScope = Literal[
    "tenant", "tenant_model", "model", "tokens_tenant", "tokens_tenant_model", "outbound"
]
RateLimitOutcome = Literal["allowed", "limited", "error_open", "error_closed"]
CircuitState = Literal["closed", "half_open", "open"]
IdleAction = Literal["pause", "scale_to_zero"]
MalformedKind = Literal["framing", "header", "request_line", "too_long", "other"]
PoolProbe = Callable[[], tuple[int, int]]  # () -> (active, idle) connections

CIRCUIT_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
CACHE_OUTCOMES: frozenset[CacheOutcome] = frozenset(("hit", "miss", "bypass", "coalesced", "none"))
CACHE_EVENTS: frozenset[CacheEvent] = frozenset(("hit", "miss", "bypass", "coalesced", "store", "store_skipped"))
CACHE_DIRECTIONS = frozenset(("served", "stored"))
RETRY_REASONS = frozenset(("429", "5xx", "connect", "timeout", "loading"))
RATELIMIT_SCOPES: frozenset[RateLimitScope] = frozenset(
    ("tenant", "tenant_model", "model", "tokens_tenant", "tokens_tenant_model", "outbound")
)
RATELIMIT_OUTCOMES: frozenset[RateLimitOutcome] = frozenset(("allowed", "limited", "error_open", "error_closed"))
TOKEN_DIRECTIONS = frozenset(("in", "out"))
MALFORMED_KINDS: frozenset[MalformedKind] = frozenset(("framing", "header", "request_line", "too_long", "other"))
POOL_STATES = frozenset(("active", "idle"))
ENDPOINT_STATES = frozenset(STATES) | {UNKNOWN_STATE}
IDLE_ACTIONS = frozenset(("pause", "scale_to_zero"))
STORES = frozenset(("main", "cache"))  # the Redis behind redis_url, and the one behind cache.redis_url
POOL_HELP = "Upstream connections per deployment, by state (active or idle)."

# Whole requests: 1 ms (a cache hit) .. 120 s (a long generation after a cold start).
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
)  # fmt: skip
# The gateway's own cost is expected well under a millisecond, so it needs fine buckets.
OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
)  # fmt: skip
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A dedicated endpoint's wake-up: seconds (a warm container) to half an hour (a large model from zero).
WAKE_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0)

C = TypeVar("C", Counter, Gauge, Histogram)
V = TypeVar("V", bound=str)
Allowed = tuple[frozenset[str] | None, ...]  # per label: permitted values; None = bounded by caller
GaugeMode = Literal["livesum", "livemax", "max"]


def in_vocabulary(value: str, vocabulary: frozenset[V]) -> TypeGuard[V]:
    """Whether `value` (a plain str as core/ records it) is one of `vocabulary`, narrowing it to that Literal."""
    return value in vocabulary


class Children(Generic[C]):
    """Bounded label tuple -> cached child, so an observation costs one dict lookup."""

    __slots__ = ("_allowed", "_cache", "_metric")

    def __init__(self, metric: C, allowed: Allowed) -> None:
        self._metric: C = metric
        self._allowed = allowed
        self._cache: dict[tuple[str, ...], C] = {}

    def get(self, key: tuple[str, ...]) -> C:
        """The child for `key`, created (and its fixed-vocabulary labels checked) on first use."""
        child = self._cache.get(key)
        if child is None:
            child = self._create(key)
        return child

    def _create(self, key: tuple[str, ...]) -> C:
        for value, allowed in zip(key, self._allowed, strict=True):
            if allowed is not None and value not in allowed:
                raise ValueError(f"label value {value!r} is not one of {sorted(allowed)}")
        child = self._metric.labels(*key)
        self._cache[key] = child
        return child


def probe_all(probes: dict[str, PoolProbe]) -> Iterator[tuple[str, tuple[int, int]]]:
    """(deployment, (active, idle)) for every probe that answers; a failing probe is skipped."""
    for deployment, probe in list(probes.items()):
        try:
            yield deployment, probe()
        except Exception:  # a broken probe must never break the scrape
            continue


class PoolCollector:
    """Computes `gateway_upstream_connections` on scrape, so nothing runs per request."""

    def __init__(self, probes: dict[str, PoolProbe]) -> None:
        self._probes = probes

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gateway_upstream_connections", POOL_HELP, labels=("deployment", "state")
        )
        for deployment, (active, idle) in probe_all(self._probes):
            family.add_metric((deployment, "active"), active)
            family.add_metric((deployment, "idle"), idle)
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # dynamic series: nothing to check for clashes at registration


class Catalogue:
    """Defines every family on `registry` (None: multiprocess mode, values live in files)."""

    def __init__(self, registry: CollectorRegistry | None, probes: dict[str, PoolProbe]) -> None:
        self._reg = registry
        self._define_traffic()
        self._define_policies()
        self._define_endpoints()
        self._define_infrastructure(probes)

    def _counter(self, name: str, doc: str, labels: tuple[str, ...], allowed: Allowed) -> Children[Counter]:
        return Children(Counter(name, doc, labels, registry=self._reg), allowed)

    def _histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> Children[Histogram]:
        metric = Histogram(name, doc, labels, registry=self._reg, buckets=buckets)
        return Children(metric, (None,) * len(labels))

    def _gauge(self, name: str, doc: str, labels: tuple[str, ...], mode: GaugeMode) -> Gauge:
        # `mode` is how workers' values combine in multiprocess mode ("live": living workers only).
        return Gauge(name, doc, labels, registry=self._reg, multiprocess_mode=mode)

    def _define_traffic(self) -> None:
        self.requests = self._counter(
            "gateway_requests_total",
            "Requests answered, by route, model, tenant, status class and cache outcome.",
            ("route", "model", "tenant", "status_class", "cache"),
            (None, None, None, None, CACHE_OUTCOMES),
        )
        self.duration = self._histogram(
            "gateway_request_duration_seconds", "Time from request received to response finished.",
            ("route", "model"), LATENCY_BUCKETS,
        )  # fmt: skip
        self.upstream = self._histogram(
            "gateway_upstream_duration_seconds", "Time of one upstream call, by deployment.",
            ("deployment",), LATENCY_BUCKETS,
        )  # fmt: skip
        self.overhead = self._histogram(
            "gateway_overhead_seconds",
            "The gateway's own time per request: total minus upstream time and deliberate waits.",
            ("route",), OVERHEAD_BUCKETS,
        )  # fmt: skip
        self.ttfb = self._histogram(
            "gateway_stream_ttfb_seconds", "Time from request received to the first streamed byte sent.",
            ("route", "model"), LATENCY_BUCKETS,
        )  # fmt: skip
        self.tokens = self._counter(
            "gateway_tokens_total", "Tokens in (prompt) and out (completion), by model and tenant.",
            ("model", "tenant", "direction"), (None, None, TOKEN_DIRECTIONS),
        )  # fmt: skip
        self.malformed = self._counter(
            "gateway_malformed_requests_total",
            "Client requests the HTTP parser refused with 400 before any handler ran, by kind.",
            ("kind",), (MALFORMED_KINDS,),
        )  # fmt: skip
        for kind in sorted(MALFORMED_KINDS):
            self.malformed.get((kind,))  # at 0 from the start: an alert on rate() sees the first one
        self.in_flight = self._gauge(
            "gateway_in_flight_requests", "Requests being handled now.", (), "livesum"
        )
        self.info = self._gauge(
            "gateway_info", "Always 1; the version label names the running build.", ("version",), "max"
        )

    def _define_policies(self) -> None:
        self.retries = self._counter(
            "gateway_retries_total", "Upstream retries, by deployment and reason.",
            ("deployment", "reason"), (None, RETRY_REASONS),
        )  # fmt: skip
        self.fallbacks = self._counter(
            "gateway_fallbacks_total", "Requests moved on to a fallback deployment, by model.",
            ("model",), (None,),
        )  # fmt: skip
        self.coldstart_waits = self._counter(
            "gateway_coldstart_waits_total", "Requests that waited for a loading model.", ("model",), (None,)
        )
        self.coldstart_seconds = self._counter(
            "gateway_coldstart_wait_seconds_total", "Seconds requests spent waiting for loading models.",
            ("model",), (None,),
        )  # fmt: skip
        self.models_loading = self._gauge(
            "gateway_models_loading", "Models currently loading.", (), "livemax"
        )
        self.ratelimit = self._counter(
            "gateway_ratelimit_decisions_total", "Rate-limit decisions, by scope and outcome.",
            ("scope", "outcome"), (RATELIMIT_SCOPES, RATELIMIT_OUTCOMES),
        )  # fmt: skip
        self.queue_wait = self._histogram(
            "gateway_outbound_queue_wait_seconds", "Time spent in the outbound shaping queue.",
            ("deployment",), QUEUE_BUCKETS,
        )  # fmt: skip
        queue_depth = self._gauge(
            "gateway_outbound_queue_depth", "Requests waiting in the outbound shaping queue.",
            ("deployment",), "livesum",
        )  # fmt: skip
        self.queue_depth = Children(queue_depth, (None,))
        self.cache_events = self._counter(
            "gateway_cache_events_total", "Response-cache events, by outcome.", ("outcome",), (CACHE_EVENTS,)
        )
        self.cache_bytes = self._counter(
            "gateway_cache_bytes_total", "Response bytes served from or stored into the cache.",
            ("direction",), (CACHE_DIRECTIONS,),
        )  # fmt: skip
        # Start the small fixed-vocabulary series at 0, so the hit ratio and rate() see the
        # first event instead of a series that appears out of nowhere.
        for outcome in sorted(CACHE_EVENTS):
            self.cache_events.get((outcome,))
        for direction in sorted(CACHE_DIRECTIONS):
            self.cache_bytes.get((direction,))
        circuit = self._gauge(
            "gateway_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ("deployment",), "livemax",
        )  # fmt: skip
        self.circuit = Children(circuit, (None,))

    def _define_endpoints(self) -> None:
        state = self._gauge(
            "gateway_endpoint_state", "Managed endpoints: 1 for the state each one is in, 0 for the others.",
            ("endpoint", "state"), "livemax",
        )  # fmt: skip
        self.endpoint_state = Children(state, (None, ENDPOINT_STATES))
        self.endpoint_wakeups = self._counter(
            "gateway_endpoint_wakeups_total", "Wake-ups (and resumes) of managed endpoints started by the gateway.",
            ("endpoint",), (None,),
        )  # fmt: skip
        self.endpoint_ready = self._histogram(
            "gateway_endpoint_time_to_ready_seconds", "Time from a wake-up to the endpoint answering its health route.",
            ("endpoint",), WAKE_BUCKETS,
        )  # fmt: skip
        self.endpoint_fallback = self._counter(
            "gateway_endpoint_fallback_requests_total",
            "Requests another deployment served while their managed endpoint was waking, paused or failed.",
            ("endpoint",), (None,),
        )  # fmt: skip
        self.endpoint_idle = self._counter(
            "gateway_endpoint_idle_actions_total", "Idle managed endpoints paused or scaled to zero by the gateway.",
            ("endpoint", "action"), (None, IDLE_ACTIONS),
        )  # fmt: skip
        self.endpoint_errors = self._counter(
            "gateway_endpoint_control_errors_total", "Failed control-plane calls, by endpoint and reason.",
            ("endpoint", "reason"), (None, CONTROL_ERROR_REASONS),
        )  # fmt: skip

    def _define_infrastructure(self, probes: dict[str, PoolProbe]) -> None:
        self.redis_errors = self._counter(
            "gateway_redis_errors_total", "Failed Redis operations, by operation.", ("op",), (None,)
        )
        self.store_failures = self._counter(
            "gateway_store_failures_total", "Failed Redis operations, by store (main or cache) and cause.",
            ("store", "cause"), (STORES, CAUSES),
        )  # fmt: skip
        self.redis_duration = self._histogram(
            "gateway_redis_duration_seconds", "Redis operation latency, by operation.", ("op",), REDIS_BUCKETS
        )
        self.pools: Children[Gauge] | None = None
        if self._reg is None:
            # Multiprocess mode cannot add up a custom collector's output across workers, so
            # each worker writes its pools into a summed gauge instead (see Metrics.refresh_pools).
            pools = self._gauge("gateway_upstream_connections", POOL_HELP, ("deployment", "state"), "livesum")
            self.pools = Children(pools, (None, POOL_STATES))
        else:
            self._reg.register(PoolCollector(probes))
