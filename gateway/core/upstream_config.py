"""One upstream as configured: its kind, base URL, credential variable, timeouts, pool, retries, budget, proxy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from gateway.core.endpoint_config import HF_ENDPOINTS_API, Duration, IdleConfig, check_endpoint_fields
from gateway.core.proxies import ProxyEnvironment, ProxySetting
from gateway.core.rates import Rate

HF_ROUTER = "https://router.huggingface.co"


UpstreamKind = Literal["hf", "tgi", "tei", "openai", "endpoint"]


RetryOn = int | Literal["connect"]


DEFAULT_RETRY_ON: tuple[RetryOn, ...] = (429, 502, 503, 504, "connect")


class RetryConfig(BaseModel):
    """Exponential backoff with full jitter; Retry-After from the upstream always wins."""

    model_config = ConfigDict(extra="forbid")
    max_attempts: int = Field(3, ge=1, le=20)
    base: float = Field(0.5, gt=0)
    cap: float = Field(8.0, gt=0)
    # What is retried: upstream statuses (429 or 5xx) and "connect" (refused, reset before any answer,
    # or no connection within connect_timeout: the request never got there). A "model is loading"
    # 503 is the cold-start stage's, whatever this says; read timeouts are never retried.
    retry_on: list[RetryOn] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))

    @field_validator("retry_on")
    @classmethod
    def _retryable(cls, v: list[RetryOn]) -> list[RetryOn]:
        for item in v:
            if isinstance(item, int) and not (item == 429 or 500 <= item <= 599):
                raise ValueError(f"retry_on: {item} cannot be retried (statuses: 429 or 500-599, or 'connect')")
        return v


class UpstreamConfig(BaseModel):
    """One backend: where it is, how to authenticate, how long to wait, how hard to push.

    `kind: endpoint` names a dedicated Inference Endpoint instead of a URL; its own fields are
    described in `endpoint_config.py` (docs/endpoints.md).
    """

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # (a proxy URL may hold a password)
    kind: UpstreamKind = "hf"
    base_url: str = HF_ROUTER
    token_env: str | None = "HF_TOKEN"
    token: SecretStr | None = Field(None, exclude=True)  # filled from token_env, never from the file
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(300.0, gt=0)
    pool_size: int = Field(100, ge=1)
    max_response_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    budget: Rate | None = None  # outbound pacing across replicas, e.g. "300/hour" (burst defaults to 1: evenly spaced)
    budget_max_wait: float = Field(30.0, ge=0)  # longest a call queues for the budget; past it: 429 + Retry-After
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown: float = Field(30.0, gt=0)
    # Egress (core/proxies.py): a forward proxy URL, or none/false to ignore HTTPS_PROXY & co; unset: the
    # environment. `ca_file`: the CAs trusted for https (instead of the system's); `verify: false`: none checked.
    proxy: ProxySetting = None
    ca_file: str | None = None
    verify: bool = True
    _proxy_environment: ProxyEnvironment = PrivateAttr(default_factory=ProxyEnvironment)  # set by Settings
    # kind: endpoint only (endpoint_config.py).
    name: str | None = None  # the endpoint's name on HF
    namespace: str | None = None  # its user or organisation
    control_plane_url: str = HF_ENDPOINTS_API
    url: str | None = None  # used until the control plane names one (and while it cannot be reached)
    engine: str | None = None  # the engine serving `url` until the control plane says (tgi, tei, vllm, ...)
    resume: bool = False  # POST .../resume when paused (the token needs write-endpoints)
    wake_estimate: Duration = Field(300.0, gt=0)  # expected scale-up time: Retry-After and parking
    idle: IdleConfig | None = None  # pause or scale to zero after this long without traffic
    poll_interval: Duration = Field(30.0, gt=0)  # control-plane reads while the state is steady
    wake_poll_interval: Duration = Field(5.0, gt=0)  # ... while it is waking (as InferenceEndpoint.wait)
    control_timeout: Duration = Field(10.0, gt=0)  # one control-plane call or health check

    @field_validator("base_url", "control_plane_url", "url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_file():
            raise ValueError(f"no such file: {v}")
        return v

    @property
    def proxy_environment(self) -> ProxyEnvironment:
        """HTTPS_PROXY, HTTP_PROXY, NO_PROXY & co as the settings read them at start (empty when built alone)."""
        return self._proxy_environment

    @model_validator(mode="after")
    def _endpoint_fields(self) -> UpstreamConfig:
        check_endpoint_fields(self.kind, self.model_fields_set, self.name, self.namespace)
        return self

    @field_validator("token", mode="before")
    @classmethod
    def _no_inline_token(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError("put credentials in an environment variable and name it in token_env")
        return v
