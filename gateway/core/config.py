"""Settings: the ONLY place the environment and the YAML file are read.

Precedence, highest first: explicit overrides (CLI flags) > environment (`GATEWAY_*`, nested with
`__`, e.g. `GATEWAY_CACHE__ENABLED=false`) > the YAML file (`--config` / `GATEWAY_CONFIG`) > defaults.
Upstream credentials are never in the file: each upstream names an environment variable
(`token_env`, default `HF_TOKEN`) whose value is read here, once, into a `SecretStr`. The proxy
variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case) are read here too, once,
into every upstream's `proxy_environment` (`core/proxies.py`).

Invariants after `load_settings` returns:
- every deployment names a configured upstream;
- there is at least one upstream and one model route (zero-config: `hf` upstream, `*` route);
- `upstream_url` (if set) has replaced the base URL of every `hf` upstream.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from gateway.core.proxies import ProxyEnvironment
from gateway.core.rates import Rate, check_limit_names
from gateway.core.redis_url import SUPPORTED_MODES, parse_redis_url
from gateway.core.upstream_config import UpstreamConfig

TENANT_LIMITS = frozenset({"requests", "tokens"})
MODEL_LIMITS = frozenset({"requests"})
TENANT_RE = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def check_redis_url(url: str | None) -> str | None:
    """Refuse a Redis URL the store cannot use, saying why (never quoting the URL: it may hold a password)."""
    if url:
        mode = parse_redis_url(url).mode
        if mode not in SUPPORTED_MODES:
            raise ValueError(f"{mode} Redis URLs are not supported (docs/redis.md)")
    return url or None


class DeploymentConfig(BaseModel):
    """One place a model can be served: an upstream and the model's name there."""

    model_config = ConfigDict(extra="forbid")
    upstream: str
    model: str | None = None  # None: the name the client asked for


class ModelCacheConfig(BaseModel):
    """A route's cache settings; unset fields fall back to the task's, then the global ones."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None  # None: the default for the request's task (never caches a sampled answer)
    ttl: float | None = Field(None, gt=0)  # seconds an entry lives; None: the task's, else cache.ttl
    shared: bool = False  # entries shared across tenants (default: each tenant has its own entries)


TextGenerationRoute = Literal["auto", "hf-inference", "chat"]


class ModelConfig(BaseModel):
    """A route: an exact id, a glob pattern (`BAAI/*`) or `*`, with aliases and ordered deployments."""

    model_config = ConfigDict(extra="forbid")
    name: str
    aliases: list[str] = Field(default_factory=list)
    task: str | None = None
    # Where an `hf` upstream sends HF text generation (docs/hf-router.md): `hf-inference` as the
    # client does for models that provider serves; `chat` converted to the router's chat route (for
    # LLMs, served by other providers); `auto`: `chat` when the client named another provider or a
    # policy (`org/name:novita`, `:fastest`), else `hf-inference`.
    text_generation: TextGenerationRoute = "auto"
    deployments: list[DeploymentConfig] = Field(default_factory=lambda: [DeploymentConfig(upstream="hf")])
    cache: ModelCacheConfig = Field(default_factory=ModelCacheConfig)
    limits: dict[str, Rate] = Field(default_factory=dict)  # "requests": across all tenants (docs/ratelimits.md)

    @field_validator("limits")
    @classmethod
    def _limit_names(cls, v: dict[str, Rate]) -> dict[str, Rate]:
        return check_limit_names(v, MODEL_LIMITS)

    @field_validator("deployments")
    @classmethod
    def _non_empty(cls, v: list[DeploymentConfig]) -> list[DeploymentConfig]:
        if not v:
            raise ValueError("a model needs at least one deployment")
        return v


class TenantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limits: dict[str, Rate] = Field(default_factory=dict)  # "requests" / "tokens": per tenant
    model_limits: dict[str, dict[str, Rate]] = Field(default_factory=dict)  # route name -> per (tenant, model)
    max_in_flight: int | None = None

    @field_validator("limits")
    @classmethod
    def _names(cls, v: dict[str, Rate]) -> dict[str, Rate]:
        return check_limit_names(v, TENANT_LIMITS)

    @field_validator("model_limits")
    @classmethod
    def _model_names(cls, v: dict[str, dict[str, Rate]]) -> dict[str, dict[str, Rate]]:
        for limits in v.values():
            check_limit_names(limits, TENANT_LIMITS)
        return v


class KeyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str
    tenant: str
    name: str | None = None

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", v.lower()):
            raise ValueError("sha256 must be 64 hex characters (use `hf-gateway keys create`)")
        return v.lower()

    @field_validator("tenant")
    @classmethod
    def _tenant(cls, v: str) -> str:
        # The tenant is a Redis hash tag and a metric label: no braces, no spaces, bounded.
        if not TENANT_RE.fullmatch(v):
            raise ValueError("tenant must be 1-64 characters of A-Z a-z 0-9 . _ -")
        return v


class RateLimitConfig(BaseModel):
    """Inbound token buckets (docs/ratelimits.md): tenants, (tenant, model), models; requests and tokens."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    on_store_error: Literal["fail_open", "fail_closed"] = "fail_open"  # Redis down: admit (counted) or 503
    # Seconds Redis may stay silent while it owes answers before its connection counts as lost (then
    # `on_store_error` applies, and calls fail fast until Redis answers again). A merely slow answer is
    # waited for, within the request's deadline: it is never admitted unpaid (docs/redis.md).
    store_timeout: float = Field(1.0, gt=0)
    store_retry_after: float = Field(1.0, gt=0)  # Retry-After of the 503 answered under fail_closed
    default: dict[str, Rate] = Field(default_factory=dict)  # limits of tenants without their own (and of anonymous)
    completion_estimate: int = Field(256, ge=0)  # tokens reserved for the answer when no max_tokens is sent
    keys_in_store: bool = False  # also accept keys stored as `{prefix}:v1:key:{sha256}` -> tenant

    @field_validator("default")
    @classmethod
    def _names(cls, v: dict[str, Rate]) -> dict[str, Rate]:
        return check_limit_names(v, TENANT_LIMITS)


class TaskCacheConfig(BaseModel):
    """One task's cache settings (an entry of `cache.tasks`)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    ttl: float | None = Field(None, gt=0)  # None: cache.ttl


class CacheConfig(BaseModel):
    """The response cache and request coalescing (docs/cache.md)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True  # master switch: off = no lookups, no writes, no coalescing, no X-Cache header
    ttl: float = Field(3600.0, gt=0)  # default seconds an entry lives
    max_entry_bytes: int = Field(1024 * 1024, ge=1)  # answers larger than this (uncompressed) are not stored
    compress_over_bytes: int = Field(4096, ge=0)  # entries larger than this are stored zlib-compressed
    coalesce: bool = True  # identical in-flight cacheable requests share one upstream call
    lock_ttl: float = Field(30.0, gt=0)  # leader lock lifetime; the leader renews it, a dead leader's expires
    outcome_ttl: float = Field(10.0, gt=0)  # how long a leader's error stays readable for its followers
    store_cooldown: float = Field(1.0, ge=0)  # after a store error, skip the cache for this many seconds
    # Embedded store only: oldest entries evicted past this, each counted with its key and ~500 B of
    # bookkeeping (dict slots, expiry, LRU node), so the process's memory stays flat.
    memory_max_bytes: int = Field(32 * 1024 * 1024, ge=1)
    # Redis store only: hot entries are also kept in process (policies/cache/local.py) for at most
    # local_ttl seconds, so a repeated request costs no round trip; an entry gone from Redis may be
    # served that much longer by a replica that holds a copy, and while Redis is down a held entry
    # is still a HIT (not a BYPASS). Off (0) by default; 1 s is a good value when that is acceptable.
    local_ttl: float = Field(0.0, ge=0)
    local_max_entries: int = Field(1000, ge=0)
    local_max_bytes: int = Field(16 * 1024 * 1024, ge=0)
    # The cache on its own Redis (best with maxmemory-policy allkeys-lru): it can then never fill the
    # limiter's. None: the cache shares `redis_url` and stops writing once Redis is `redis_max_fill`
    # of its maxmemory (sampled with INFO memory every `redis_memory_check` seconds; docs/redis.md).
    redis_url: str | None = None
    redis_max_fill: float = Field(0.8, gt=0, le=1)
    redis_memory_check: float = Field(5.0, gt=0)
    # Per-task overrides of the built-in defaults (policies/cache/key.py DEFAULT_TASKS), e.g.
    # {"chat": {"enabled": false}, "feature-extraction": {"ttl": 86400}}.
    tasks: dict[str, TaskCacheConfig] = Field(default_factory=dict)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        return check_redis_url(v)


class ResilienceConfig(BaseModel):
    """Cold-start waiting, retries and fallbacks (docs/resilience.md)."""

    model_config = ConfigDict(extra="forbid")
    # Park requests while a model loads (per request: x-wait-for-model: false / options.wait_for_model).
    wait_for_model: bool = True
    max_model_wait: float = Field(600.0, ge=0)  # longest a request parks for a model (the deadline applies too)
    keepalive_interval: float = Field(10.0, gt=0)  # a parked stream commits its 200 and sends a comment this often
    retry_after_cap: float = Field(120.0, gt=0)  # Retry-After never says more (openai gives up above 120 s)
    probe_interval: float = Field(30.0, gt=0)  # longest gap between probes of a loading model
    probe_lease: float = Field(30.0, gt=0)  # one probe holds the right to call a loading model this long at most
    probe_hold: float = Field(1.0, ge=0)  # parked requests wait this long for a probe's answer, then go themselves
    recheck_interval: float = Field(1.0, gt=0)  # parked requests re-read the shared state this often
    idle_after: float = Field(60.0, ge=0)  # unanswered this long, a model may be cold: one request goes first (0: off)
    handoff_wait: float = Field(2.0, ge=0)  # with another deployment left, a longer retry wait hands over instead


class Settings(BaseSettings):
    """Everything the gateway is told."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid", validate_default=True,
        hide_input_in_errors=True,  # errors name the key, never quote a value (a proxy password, a Redis URL's)
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    redis_url: str | None = None
    redis_prefix: str = "gw"
    upstream_url: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    request_timeout: float = Field(300.0, gt=0)  # the default deadline of a request
    max_in_flight: int | None = Field(None, ge=1)
    drain_timeout: float = Field(30.0, ge=0)
    metrics_public: bool = True  # /metrics open even when keys are configured
    upstreams: dict[str, UpstreamConfig] = Field(default_factory=dict)
    models: list[ModelConfig] = Field(default_factory=list)
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    keys: list[KeyConfig] = Field(default_factory=list)
    ratelimit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    resilience: ResilienceConfig = Field(default_factory=ResilienceConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_file = settings_cls.model_config.get("yaml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        return check_redis_url(v)

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        if not self.upstreams:
            self.upstreams = {"hf": UpstreamConfig()}
        if self.upstream_url:
            for up in self.upstreams.values():
                if up.kind == "hf":
                    up.base_url = UpstreamConfig._url(self.upstream_url) or up.base_url
        if not self.models:
            self.models = [ModelConfig(name="*", deployments=[DeploymentConfig(upstream=next(iter(self.upstreams)))])]
        for i, m in enumerate(self.models):
            for j, d in enumerate(m.deployments):
                if d.upstream not in self.upstreams:
                    known = ", ".join(sorted(self.upstreams))
                    raise ValueError(
                        f"models.{i}.deployments.{j}.upstream: unknown upstream {d.upstream!r} (configured: {known})"
                    )
        for k in self.keys:
            if k.tenant not in self.tenants:
                self.tenants[k.tenant] = TenantConfig()
        proxies = ProxyEnvironment.from_environ(os.environ)  # read once, here (README "Behind a corporate proxy")
        for up in self.upstreams.values():
            up._proxy_environment = proxies
            if up.token_env and up.token is None:
                value = os.environ.get(up.token_env)
                if value:
                    object.__setattr__(up, "token", SecretStr(value))
        return self


def missing_credentials(settings: Settings) -> dict[str, list[str]]:
    """Environment variable -> the upstreams whose `token_env` names it while it is unset or empty.

    Such upstreams are called without a credential (the HF router then answers 401 to every call);
    `hf-gateway serve` says so once at start. An upstream with `token_env: null` needs none.
    """
    missing: dict[str, list[str]] = {}
    for name, up in settings.upstreams.items():
        if up.token_env and up.token is None:
            missing.setdefault(up.token_env, []).append(name)
    return missing


def load_settings(config_path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (argument, else `GATEWAY_CONFIG`), then the environment, then `overrides`."""
    path = config_path or os.environ.get("GATEWAY_CONFIG")
    if path and not Path(path).is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=str(path) if path else None)

    clean = {k: v for k, v in overrides.items() if v is not None}
    return _FromFile(**clean)
