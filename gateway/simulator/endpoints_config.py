"""The `control_plane:` section of the simulator config: dedicated endpoints, their namespaces and tokens.

Example (every key optional)::

    control_plane:
      namespaces:
        acme:
          tokens:
            - {token: hf_fake_acme_write}
            - {token: hf_fake_acme_read, read_only: true}
      endpoints:
        acme-chat:                     # the name: unique in the simulator, served at /endpoints/acme-chat
          namespace: acme
          state: scaledToZero          # initial state
          image: tgi                   # huggingface | tgi | tei | vllm | sglang | llamacpp | custom
          task: text-generation
          model: openai-community/gpt2
          scale_up_delay: 30           # seconds in `initializing` before `running`
          scale_to_zero_timeout: 3600  # idle seconds before `scaledToZero` (needs min_replica 0); null: never

Invariants: an endpoint's name is its key, so names are unique (the data plane is `/endpoints/{name}`);
a namespace without configured tokens accepts any bearer token with write rights; every duration is in
seconds of the simulator's clock (the control-plane JSON reports `scaleToZeroTimeout` in minutes, as HF does).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "ENDPOINT_STATES",
    "ControlPlaneSpec",
    "EndpointSpec",
    "EndpointState",
    "Engine",
    "NamespaceSpec",
    "TokenSpec",
]

EndpointState = Literal[
    "pending", "initializing", "updating", "updateFailed", "running", "paused", "failed", "scaledToZero"
]
ENDPOINT_STATES: frozenset[str] = frozenset(get_args(EndpointState))
Engine = Literal["huggingface", "tgi", "tei", "vllm", "sglang", "llamacpp", "custom"]
EndpointType = Literal["public", "protected", "authenticated", "private"]

# The task an engine serves when the config names none.
_ENGINE_TASK: dict[str, str] = {"tei": "feature-extraction"}


class TokenSpec(BaseModel):
    """One bearer token of a namespace; a read-only token may read endpoints and call them, not manage them."""

    model_config = ConfigDict(extra="forbid")

    token: SecretStr
    read_only: bool = False


class NamespaceSpec(BaseModel):
    """A user or organisation owning endpoints."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenSpec] = Field(default_factory=list)


class EndpointSpec(BaseModel):
    """One dedicated Inference Endpoint as the control plane describes it, and its timings."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(default="sim-user", min_length=1)
    state: EndpointState = "running"
    image: Engine = "tgi"
    task: str | None = Field(default=None, description="default: feature-extraction for tei, else text-generation")
    model: str = Field(default="openai-community/gpt2", min_length=1, description="model.repository")
    revision: str = "0000000000000000000000000000000000000000"
    framework: str = "pytorch"
    type: EndpointType = "protected"
    min_replica: int = Field(default=0, ge=0)
    max_replica: int = Field(default=1, ge=1)
    pending_delay: float = Field(default=5.0, ge=0, description="seconds in `pending` after a resume")
    scale_up_delay: float = Field(default=60.0, ge=0, description="seconds in `initializing` (and `updating`)")
    scale_to_zero_timeout: float | None = Field(
        default=3600.0, gt=0, description="idle seconds before `scaledToZero` when min_replica is 0; None: never"
    )
    message: str | None = Field(default=None, description="status.message; default: one per state")

    @model_validator(mode="after")
    def _replicas_ordered(self) -> EndpointSpec:
        if self.min_replica > self.max_replica:
            raise ValueError("min_replica must not exceed max_replica")
        return self

    @property
    def served_task(self) -> str:
        """The task the endpoint serves (`task`, else the engine's usual one)."""
        return self.task or _ENGINE_TASK.get(self.image, "text-generation")


class ControlPlaneSpec(BaseModel):
    """Namespaces with their tokens, and the endpoints the simulated control plane manages."""

    model_config = ConfigDict(extra="forbid")

    namespaces: dict[str, NamespaceSpec] = Field(default_factory=dict)
    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names_are_paths(self) -> ControlPlaneSpec:
        for name in self.endpoints:
            if not name or "/" in name:
                raise ValueError(f"endpoint name {name!r} must be non-empty and contain no '/'")
        return self
