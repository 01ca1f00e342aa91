"""Simulator configuration: `SimConfig` and its YAML file; the only place the simulator reads a file.

Example ``sim.yaml`` (every key optional)::

    token: hf_fake_test_token      # checked by the `auth` fault
    embedding_dim: 8
    max_new_tokens: 5
    models:                        # keys are model ids or endpoint names (/endpoints/{name}/...)
      acme/my-embedder: {task: feature-extraction, dim: 16}
      acme/flaky: {faults: "cold-20s+429x3-ra2"}
      my-tgi:
        faults:
          - {kind: status, status: 503, times: 2}
          - drip-50ms
    control_plane:                 # dedicated endpoints and their lifecycle (`endpoints_config`)
      endpoints:
        acme-chat: {namespace: acme, state: scaledToZero, image: tgi, scale_up_delay: 30}

Invariants: a model listed with `faults` (even an empty list) uses exactly that script and its
name is not scanned for fault tokens; every fault is validated when the config is built; a control-plane
endpoint whose name is not in `models` gets a `models` entry with its task (when the simulator knows it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.simulator.endpoints_config import ControlPlaneSpec
from gateway.simulator.fault_spec import FaultSpec, parse_fault_list

__all__ = ["TASKS", "FaultSpec", "ModelSpec", "SimConfig", "Task", "load_sim_config"]

Task = Literal[
    "text-generation",
    "feature-extraction",
    "sentence-similarity",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
    "text-to-image",
    "fill-mask",
    "summarization",
    "translation",
    "question-answering",
    "table-question-answering",
    "tabular-classification",
    "tabular-regression",
    "text-to-speech",
    "text-to-audio",
    "image-classification",
    "image-segmentation",
    "image-to-image",
    "image-to-text",
    "object-detection",
    "zero-shot-image-classification",
    "visual-question-answering",
    "document-question-answering",
    "audio-classification",
    "automatic-speech-recognition",
    "audio-to-audio",
]
TASKS: frozenset[str] = frozenset(get_args(Task))


class ModelSpec(BaseModel):
    """What the simulator knows about one model id or endpoint name."""

    model_config = ConfigDict(extra="forbid")

    task: Task | None = None
    faults: list[FaultSpec] | None = Field(
        default=None, description="None: scan the name for fault tokens; a list replaces that"
    )
    labels: list[str] | None = Field(
        default=None, description="labels of a classifier (text, image, audio or tabular classification)"
    )
    dim: int | None = Field(default=None, ge=1, le=65536, description="embedding dimension")
    providers: list[str] | None = Field(
        default=None,
        description="the Inference Providers serving it on the router, fastest first (providers.py); "
        "without `hf-inference`, the hf-inference routes refuse it as the router does an LLM",
    )

    @field_validator("faults", mode="before")
    @classmethod
    def _parse_faults(cls, value: Any) -> Any:
        if value is None:
            return None
        return parse_fault_list(value)


class SimConfig(BaseModel):
    """Everything that shapes the simulator's answers."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelSpec] = Field(default_factory=dict)
    token: SecretStr | None = Field(default=None, description="bearer token the `auth` fault requires")
    embedding_dim: int = Field(default=8, ge=1, le=65536)
    max_new_tokens: int = Field(default=5, ge=1, description="tokens generated when the request sets none")
    max_tokens_cap: int = Field(default=4096, ge=1, description="upper bound on generated tokens")
    created: int = Field(default=1_700_000_000, description="`created` of OpenAI objects (fixed: determinism)")
    fingerprint: str = "hf-gateway-sim"
    fast: bool = Field(default=False, description="benchmark mode: cached bodies, no request records")
    record_limit: int = Field(default=10_000, ge=0, description="request records kept for inspection")
    control_plane: ControlPlaneSpec = Field(default_factory=ControlPlaneSpec)

    @model_validator(mode="after")
    def _endpoint_tasks(self) -> SimConfig:
        # The data plane picks a native route's task from `models[name]`; a control-plane endpoint says it.
        for name, endpoint in self.control_plane.endpoints.items():
            if name not in self.models and endpoint.served_task in TASKS:
                self.models[name] = ModelSpec(task=endpoint.served_task)  # type: ignore[arg-type]
        return self

    def spec(self, name: str) -> ModelSpec | None:
        """The configured entry for a model id or endpoint name, if any."""
        return self.models.get(name)


def load_sim_config(path: str | Path | None) -> SimConfig:
    """Read a YAML file into a `SimConfig` (the defaults when `path` is None or the file is empty)."""
    if path is None:
        return SimConfig()
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if data is None:
        return SimConfig()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the simulator config must be a mapping")
    return SimConfig.model_validate(data)
