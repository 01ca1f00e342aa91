"""Which buckets a call must pay into, and the `x-ratelimit-*` headers that describe them.

Bucket keys (all `{prefix}:v1:...`, hash tag in braces):

    rl:{tenant}:req               requests per tenant
    rl:{tenant}:req:{model}       requests per (tenant, model)     model = the configured route name
    rl:{tenant}:tok               tokens per tenant
    rl:{tenant}:tok:{model}       tokens per (tenant, model)
    rlm:{route}:req               requests per model, across tenants

Everything tagged with the tenant is decided in ONE script call (one Cluster slot). The per-model
bucket is shared by all tenants, so it cannot share their slot: it gets a second call, made only
when the tenant's call admitted the request, and a denial there refunds the tenant's buckets
(docs/ratelimits.md, "Cluster slots").

Tenant limits come from `tenants.<name>.limits`, else `ratelimit.default` (requests of a gateway
without keys run as tenant "anonymous"). Token costs are clamped to a bucket's capacity, so a
single large request can always pass a full bucket (and its settlement then leaves a debt).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway.core.call import Call
from gateway.core.config import Settings
from gateway.core.rates import Rate
from gateway.policies.limits.buckets import Bucket
from gateway.store.protocol import key

ANONYMOUS = "anonymous"
Kind = Literal["requests", "tokens"]


@dataclass(frozen=True, slots=True)
class Limit:
    """One bucket a call pays into, with its metric scope and what it counts."""

    scope: str  # tenant | tenant_model | model | tokens_tenant | tokens_tenant_model
    kind: Kind
    bucket: Bucket
    rate: Rate

    @property
    def capacity_text(self) -> str:
        """The bucket's capacity as `x-ratelimit-limit-*` writes it (`60`, `2.5`)."""
        return f"{self.bucket.capacity:g}"


@dataclass(slots=True)
class LimitPlan:
    """The buckets of one call: the tenant-tagged group, then the per-model group."""

    tenant: str
    estimate: int  # tokens reserved (0 when no token limit applies)
    tenant_group: list[Limit] = field(default_factory=list)
    model_group: list[Limit] = field(default_factory=list)

    @property
    def limits(self) -> list[Limit]:
        return self.tenant_group + self.model_group


class LimitPlanner:
    """Turns the configuration into each call's buckets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.redis_prefix
        # Limits are the same objects for every request of a tenant and model (costs of token
        # limits vary, hence part of the memo key): built once. Bounded: cleared when full.
        self._made: dict[tuple[str, Rate, str, str, float], Limit] = {}

    def plan(self, call: Call, estimate: Callable[[Call], int]) -> LimitPlan | None:
        """The call's buckets, or None when no limit applies to it (`estimate` runs only for token limits)."""
        tenant = call.tenant or ANONYMOUS
        tcfg = self.settings.tenants.get(call.tenant) if call.tenant else None
        own = tcfg.limits if tcfg is not None and tcfg.limits else self.settings.ratelimit.default
        model_key, per_model = self._tenant_model_limits(call, tcfg)
        tokens = estimate(call) if "tokens" in own or "tokens" in per_model else 0
        plan = LimitPlan(tenant, tokens)
        add = plan.tenant_group.append
        if "requests" in own:
            add(self._made_limit("tenant", "requests", own["requests"], tenant, "", 1))
        if "requests" in per_model:
            add(self._made_limit("tenant_model", "requests", per_model["requests"], tenant, model_key, 1))
        if "tokens" in own:
            add(self._made_limit("tokens_tenant", "tokens", own["tokens"], tenant, "", tokens))
        if "tokens" in per_model:
            add(self._made_limit("tokens_tenant_model", "tokens", per_model["tokens"], tenant, model_key, tokens))
        across = call.route.config.limits.get("requests")
        if across is not None:
            plan.model_group.append(self._made_limit("model", "requests", across, call.route.name, "", 1))
        return plan if plan.limits else None

    def _made_limit(self, scope: str, kind: Kind, rate: Rate, tag: str, model_key: str, cost: float) -> Limit:
        memo = (scope, rate, tag, model_key, cost)
        made = self._made.get(memo)
        if made is None:
            if len(self._made) >= 4096:
                self._made.clear()
            if scope == "model":
                bucket_key = key(self.prefix, "rlm", tag, "req")
            else:
                part = "req" if kind == "requests" else "tok"
                bucket_key = key(self.prefix, "rl", tag, part, model_key) if model_key else key(
                    self.prefix, "rl", tag, part)
            made = self._made[memo] = self._limit(scope, kind, rate, bucket_key, cost)
        return made

    @staticmethod
    def _tenant_model_limits(call: Call, tcfg: object) -> tuple[str, dict[str, Rate]]:
        limits = getattr(tcfg, "model_limits", None) or {}
        for name in (call.route.name, call.model, *call.route.aliases):
            if name in limits:
                return name, limits[name]
        return "", {}

    @staticmethod
    def _limit(scope: str, kind: Kind, rate: Rate, bucket_key: str, cost: float) -> Limit:
        cap = rate.capacity
        return Limit(scope, kind, Bucket(bucket_key, rate.per_second, cap, min(float(cost), cap)), rate)


def denied_scopes(limits: list[Limit], remaining: tuple[float, ...]) -> list[str]:
    """The scopes whose bucket could not pay (from a denied decision's remaining tokens)."""
    return [lim.scope for lim, left in zip(limits, remaining, strict=True) if left < lim.bucket.cost]


def rate_headers(pairs: list[tuple[Limit, float]]) -> dict[str, str]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the tightest bucket of each kind
    (fewest tokens left; on a tie, the smaller bucket)."""
    tightest: dict[str, tuple[Limit, float]] = {}
    for lim, left in pairs:
        held = tightest.get(lim.kind)
        if held is None or left < held[1] or (left == held[1] and lim.bucket.capacity < held[0].bucket.capacity):
            tightest[lim.kind] = (lim, left)
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        if kind not in tightest:
            continue
        lim, left = tightest[kind]
        b = lim.bucket
        headers[f"x-ratelimit-limit-{kind}"] = lim.capacity_text
        headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(left)))
        headers[f"x-ratelimit-reset-{kind}"] = format_duration(max(0.0, (b.capacity - left) / b.rate))
    return headers


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: `20ms`, `1.5s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours >= 1:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes >= 1:
        return f"{int(minutes)}m{text}"
    return text
