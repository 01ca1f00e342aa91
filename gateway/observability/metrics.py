"""Prometheus metrics: one `Metrics` object per app, owning its own `CollectorRegistry`.

`Metrics` bounds labels and records events; the families themselves (names, labels, buckets)
are defined in `gateway.observability.catalogue`. Invariants:
- Never the global default registry: two apps in one process (tests) never share a figure.
- Every label is bounded. Models, tenants and deployments outside the configured sets become
  "other"; enum-like labels (cache outcome, retry reason, ...) are checked once, when their
  child is first created, so a typo fails loudly in tests instead of minting a new series.
- The hot path does one dict lookup per observation: children (`.labels(...)`) are cached in
  dicts keyed by the *bounded* label tuple, so a flood of made-up model names cannot grow them.
- Nothing runs per request for connection-pool figures: they are computed on scrape.
- Multi-worker (`multiprocess_dir`): prometheus-client's multiprocess mode writes every
  worker's values to mmapped files in that directory and `render()` adds them up. The library
  chooses its value class when it is first imported, so either `PROMETHEUS_MULTIPROC_DIR` is in
  the environment before `prometheus_client` is imported, or the supervisor calls
  `enable_multiprocess()` before forking; `Metrics` refuses to start in multiprocess mode
  otherwise rather than silently report one worker's share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from gateway.observability.catalogue import (
    CIRCUIT_VALUES,
    ENDPOINT_STATES,
    IDLE_ACTIONS,
    CacheBytesDirection,
    CacheEvent,
    CacheOutcome,
    Catalogue,
    CircuitState,
    IdleAction,
    MalformedKind,
    PoolProbe,
    RateLimitOutcome,
    RateLimitScope,
    RetryReason,
    probe_all,
)
from gateway.upstream.endpoints.control import REASONS as CONTROL_ERROR_REASONS

__all__ = [
    "CacheBytesDirection", "CacheEvent", "CacheOutcome", "CircuitState", "Metrics", "PoolProbe",
    "RateLimitOutcome", "RateLimitScope", "RetryReason", "enable_multiprocess", "mark_worker_dead",
    "reset_multiprocess_dir", "status_class",
]  # fmt: skip

OTHER = "other"  # any model / tenant / deployment that is not configured
NONE = "none"  # no model or deployment involved (e.g. a cache hit has no deployment)
ANONYMOUS = "anonymous"  # request without a tenant
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """200 -> "2xx"; anything outside 100..599 counts as "5xx" (the gateway failed to answer)."""
    index = status // 100 - 1
    return _STATUS_CLASSES[index] if 0 <= index < 5 else "5xx"


def package_version() -> str:
    """The installed hf-gateway version, or "unknown" when running from a bare source tree."""
    try:
        return metadata.version("hf-gateway")
    except metadata.PackageNotFoundError:
        return "unknown"


def enable_multiprocess(path: str) -> None:
    """Supervisor, before forking workers: empty `path` and switch this process to shared values.

    Sets PROMETHEUS_MULTIPROC_DIR and, when prometheus_client was already imported without it,
    switches the library's (process-wide, import-time) value class to the file-backed one, so
    forked workers write to `path`. Workers then build `Metrics(multiprocess_dir=path)`.
    """
    reset_multiprocess_dir(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    if values.ValueClass is values.MutexValue:
        # prometheus_client ships py.typed but leaves its multiprocess helpers unannotated.
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def reset_multiprocess_dir(path: str) -> None:
    """Create `path` empty; the supervisor calls this before forking workers (stale files add up)."""
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir(parents=True, exist_ok=True)


def mark_worker_dead(pid: int, path: str) -> None:
    """Drop a dead worker's live gauges (in-flight, queue depth, ...) from the sums."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client


class Metrics:
    """Records the gateway's events into one app's registry: one small typed method per event."""

    def __init__(
        self,
        models: Iterable[str] = (),
        tenants: Iterable[str] = (),
        deployments: Iterable[str] = (),
        multiprocess_dir: str | None = None,
        version: str | None = None,
        endpoints: Iterable[str] = (),
    ) -> None:
        self._models = frozenset(models)
        self._tenants = frozenset(tenants)
        self._deployments = frozenset(deployments)
        self._endpoints = frozenset(endpoints)
        self._probes: dict[str, PoolProbe] = {}
        self._refreshers: list[Callable[[], None]] = []
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        target: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            _check_multiprocess(multiprocess_dir)
            # Families must not be registered with the registry that reads the files, or this
            # worker's values would be exported twice.
            MultiProcessCollector(self.registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]  # unannotated upstream
            target = None
        self._c = Catalogue(target, self._probes)
        self._c.info.labels(version or package_version()).set(1)
        for endpoint in sorted(self._endpoints):  # every configured endpoint's series exist from the start
            self.set_endpoint_state(endpoint, "unknown")
            self._c.endpoint_wakeups.get((endpoint,))
            self._c.endpoint_ready.get((endpoint,))
            self._c.endpoint_fallback.get((endpoint,))
            for action in sorted(IDLE_ACTIONS):
                self._c.endpoint_idle.get((endpoint, action))
            for reason in sorted(CONTROL_ERROR_REASONS):
                self._c.endpoint_errors.get((endpoint, reason))

    @property
    def multiprocess(self) -> bool:
        """True when figures are shared with other worker processes through files."""
        return self.multiprocess_dir is not None

    # -- label bounding -------------------------------------------------------------------

    def model_label(self, name: str | None) -> str:
        """A configured model (or alias) keeps its name; anything else is "other"."""
        if name is None:
            return NONE
        return name if name in self._models else OTHER

    def tenant_label(self, name: str | None) -> str:
        """A configured tenant keeps its name; unknown is "other", none is "anonymous"."""
        if name is None:
            return ANONYMOUS
        return name if name in self._tenants else OTHER

    def endpoint_label(self, name: str) -> str:
        """A configured `kind: endpoint` upstream keeps its name; anything else is "other"."""
        return name if name in self._endpoints else OTHER

    def deployment_label(self, name: str | None) -> str:
        """A configured deployment keeps its name; anything else is "other"."""
        if name is None:
            return NONE
        return name if name in self._deployments else OTHER

    # -- events -----------------------------------------------------------------------------

    def request_done(
        self,
        route: str,
        model: str | None,
        tenant: str | None,
        status: int,
        cache: CacheOutcome,
        seconds: float,
        upstream_seconds: float = 0.0,
        waited_seconds: float = 0.0,
    ) -> None:
        """One finished request; overhead = seconds - upstream_seconds - waited_seconds (>= 0).

        `route` must be a static route name (never the raw path); `waited_seconds` is time the
        gateway deliberately waited (cold start, backoff, outbound queue), not its own cost.
        """
        model_l = self.model_label(model)
        self._c.requests.get((route, model_l, self.tenant_label(tenant), status_class(status), cache)).inc()
        self._c.duration.get((route, model_l)).observe(seconds)
        self._c.overhead.get((route,)).observe(max(0.0, seconds - upstream_seconds - waited_seconds))

    def malformed_request(self, kind: MalformedKind) -> None:
        """The HTTP parser refused a client request of `kind` with 400 (no handler ran)."""
        self._c.malformed.get((kind,)).inc()

    def stream_first_byte(self, route: str, model: str | None, seconds: float) -> None:
        """The first byte of a streamed response went to the client `seconds` after arrival."""
        self._c.ttfb.get((route, self.model_label(model))).observe(seconds)

    def upstream_done(self, deployment: str, seconds: float) -> None:
        """One upstream call (any outcome) took `seconds`."""
        self._c.upstream.get((self.deployment_label(deployment),)).observe(seconds)

    def tokens(self, model: str | None, tenant: str | None, tokens_in: int, tokens_out: int) -> None:
        """Token usage of one request (prompt tokens in, completion tokens out)."""
        model_l, tenant_l = self.model_label(model), self.tenant_label(tenant)
        if tokens_in > 0:
            self._c.tokens.get((model_l, tenant_l, "in")).inc(tokens_in)
        if tokens_out > 0:
            self._c.tokens.get((model_l, tenant_l, "out")).inc(tokens_out)

    def retry(self, deployment: str, reason: RetryReason) -> None:
        """An upstream attempt is being retried because of `reason`."""
        self._c.retries.get((self.deployment_label(deployment), reason)).inc()

    def fallback(self, model: str | None) -> None:
        """A request for `model` moved on to its next deployment."""
        self._c.fallbacks.get((self.model_label(model),)).inc()

    def coldstart_wait(self, model: str | None, seconds: float) -> None:
        """A request finished waiting `seconds` for `model` to load."""
        key = (self.model_label(model),)
        self._c.coldstart_waits.get(key).inc()
        self._c.coldstart_seconds.get(key).inc(max(0.0, seconds))

    def set_models_loading(self, count: int) -> None:
        """How many models this process currently sees loading."""
        self._c.models_loading.set(count)

    def add_models_loading(self, delta: int) -> None:
        """A model started (+1) or finished (-1) loading."""
        self._c.models_loading.inc(delta)

    def ratelimit_decision(self, scope: RateLimitScope, outcome: RateLimitOutcome) -> None:
        """One rate-limit check in `scope` ended with `outcome`."""
        self._c.ratelimit.get((scope, outcome)).inc()

    def outbound_queue_wait(self, deployment: str, seconds: float) -> None:
        """A request left the outbound shaping queue after `seconds`."""
        self._c.queue_wait.get((self.deployment_label(deployment),)).observe(seconds)

    def add_outbound_queue_depth(self, deployment: str, delta: int) -> None:
        """A request entered (+1) or left (-1) the outbound queue of `deployment`."""
        self._c.queue_depth.get((self.deployment_label(deployment),)).inc(delta)

    def set_outbound_queue_depth(self, deployment: str, depth: int) -> None:
        """How many requests wait in the outbound queue of `deployment` now (a scrape-time read-out)."""
        self._c.queue_depth.get((self.deployment_label(deployment),)).set(depth)

    def cache_event(self, outcome: CacheEvent) -> None:
        """A cache lookup or store ended with `outcome`."""
        self._c.cache_events.get((outcome,)).inc()

    def cache_bytes(self, direction: CacheBytesDirection, nbytes: int) -> None:
        """`nbytes` response bytes were served from (or stored into) the cache."""
        self._c.cache_bytes.get((direction,)).inc(nbytes)

    def set_circuit_state(self, deployment: str, state: CircuitState) -> None:
        """The breaker of `deployment` moved to `state`."""
        self._c.circuit.get((self.deployment_label(deployment),)).set(CIRCUIT_VALUES[state])

    def set_endpoint_state(self, endpoint: str, state: str) -> None:
        """The managed endpoint is in `state` (1) and in no other (0)."""
        label = self.endpoint_label(endpoint)
        for known in sorted(ENDPOINT_STATES):
            self._c.endpoint_state.get((label, known)).set(1 if known == state else 0)

    def endpoint_wakeup(self, endpoint: str) -> None:
        """This replica started a wake-up (or a resume) of a managed endpoint."""
        self._c.endpoint_wakeups.get((self.endpoint_label(endpoint),)).inc()

    def endpoint_ready(self, endpoint: str, seconds: float) -> None:
        """A managed endpoint's wake-up ended after `seconds`."""
        self._c.endpoint_ready.get((self.endpoint_label(endpoint),)).observe(max(0.0, seconds))

    def endpoint_fallback_served(self, endpoint: str) -> None:
        """Another deployment answered a request its managed endpoint could not take."""
        self._c.endpoint_fallback.get((self.endpoint_label(endpoint),)).inc()

    def endpoint_idle_action(self, endpoint: str, action: str) -> None:
        """An idle managed endpoint was paused or scaled to zero by this replica."""
        act: IdleAction = "pause" if action == "pause" else "scale_to_zero"
        self._c.endpoint_idle.get((self.endpoint_label(endpoint), act)).inc()

    def endpoint_control_error(self, endpoint: str, reason: str) -> None:
        """A control-plane call for a managed endpoint failed with `reason`."""
        self._c.endpoint_errors.get((self.endpoint_label(endpoint), reason)).inc()

    def add_in_flight(self, delta: int) -> None:
        """A request started (+1) or finished (-1)."""
        self._c.in_flight.inc(delta)

    def redis_error(self, op: str) -> None:
        """A Redis operation failed before it could be timed (e.g. reported by a policy)."""
        self._c.redis_errors.get((op,)).inc()

    def store_failure(self, store: str, cause: str) -> None:
        """A Redis operation of `store` ("main" or "cache") failed with `cause` (store/causes.py)."""
        self._c.store_failures.get((store, cause)).inc()

    def store_failure_recorder(self, store: str) -> Callable[[str], None]:
        """`store_failure` for one store, for its TimedStore."""
        return lambda cause: self.store_failure(store, cause)

    def redis_op(self, op: str, seconds: float, ok: bool = True) -> None:
        """One Redis operation (a static name such as "ratelimit") took `seconds`; count failures."""
        self.redis_recorder(op)(seconds, ok)

    def redis_recorder(self, op: str) -> Callable[[float, bool], None]:
        """`redis_op` for one op, its children resolved once (the store records every command)."""
        duration = self._c.redis_duration.get((op,))
        errors = self._c.redis_errors.get((op,))  # created at 0 with the op's first use: rate() sees the first error

        def record(seconds: float, ok: bool = True) -> None:
            duration.observe(seconds)
            if not ok:
                errors.inc()

        return record

    def register_pool_probe(self, deployment: str, fn: PoolProbe) -> None:
        """`fn() -> (active, idle)` is asked on every scrape, never per request."""
        self._probes[self.deployment_label(deployment)] = fn

    def add_refresher(self, fn: Callable[[], None]) -> None:
        """`fn()` copies some live state (breaker states, models loading) into gauges; run by refresh()."""
        self._refreshers.append(fn)

    def refresh(self) -> None:
        """Bring scrape-time gauges up to date: registered refreshers, then (multiprocess) pools.

        `render()` calls it for the worker answering the scrape; in multiprocess mode every
        worker also calls it every few seconds, so the other workers' shares stay current.
        """
        for fn in self._refreshers:
            try:
                fn()
            except Exception:  # a broken read-out must never break the scrape
                continue
        self.refresh_pools()

    def refresh_pools(self) -> None:
        """Multiprocess mode: write this worker's pool figures (render() does it for its worker)."""
        pools = self._c.pools
        if pools is None:
            return
        for deployment, (active, idle) in probe_all(self._probes):
            pools.get((deployment, "active")).set(active)
            pools.get((deployment, "idle")).set(idle)

    def render(self) -> tuple[bytes, str]:
        """The text exposition for `GET /metrics`: (body, content type)."""
        self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4


def _check_multiprocess(path: str) -> None:
    """Fail at startup, not with silently partial figures, when multiprocess mode is not active."""
    if values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR in the environment before "
            "prometheus_client is first imported, or enable_multiprocess() before forking workers"
        )
    env_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not env_dir or os.path.realpath(env_dir) != os.path.realpath(path):
        raise RuntimeError(f"PROMETHEUS_MULTIPROC_DIR={env_dir!r} differs from multiprocess_dir={path!r}")
    if not os.path.isdir(path):
        raise RuntimeError(f"multiprocess metrics directory {path!r} does not exist")

