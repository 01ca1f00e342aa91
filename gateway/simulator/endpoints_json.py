"""The endpoint object of HF's control-plane API (`/v2/endpoint/...`), as the simulator renders it.

The shape follows the objects `huggingface_hub` 2.4.0 parses (`InferenceEndpoint._populate_from_raw`:
`name`, `healthRoute`, `type`, `model.{repository,framework,revision,task}`, `status.{state,url,createdAt,
updatedAt}`) and the recorded answers in its test suite (`provider`, `compute`, `status.{message,
readyReplica,targetReplica,createdBy,...}`). Invariants: `status.url` is present only when the state has a
URL (absent while pending, paused or failed); it is the simulator's own base URL plus `/endpoints/{name}`, so
the data plane is the simulator's dedicated-endpoint routes; timestamps are `%Y-%m-%dT%H:%M:%S.mmmZ`, UTC,
as the client's `parse_datetime` expects; `scaleToZeroTimeout` is in whole minutes, rounded up.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.simulator.endpoints_config import EndpointSpec
from gateway.simulator.endpoints_state import EndpointMachine

HEALTH_ROUTE = "/health"
_SIM_USER_ID = "000000000000000000000000"

# `model.image` is a union keyed by engine; the managed HF image takes no settings.
_IMAGES: dict[str, tuple[str, str, int]] = {
    "tgi": ("tgi", "ghcr.io/huggingface/text-generation-inference:3.3.6", 80),
    "tei": ("tei", "ghcr.io/huggingface/text-embeddings-inference:1.8", 80),
    "vllm": ("vLLM", "vllm/vllm-openai:v0.10.1", 8000),
    "sglang": ("sGLang", "lmsysorg/sglang:v0.5.0", 30000),
    "llamacpp": ("llamacpp", "ghcr.io/ggml-org/llama.cpp:server", 8080),
    "custom": ("custom", "registry.example/hf-gateway-sim-engine:latest", 80),
}


def iso(epoch: float) -> str:
    """`2023-10-26T12:41:53.263Z` for an epoch time."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def image_json(spec: EndpointSpec) -> dict[str, Any]:
    """`model.image` for the configured engine."""
    if spec.image == "huggingface":
        return {"huggingface": {}}
    key, url, port = _IMAGES[spec.image]
    return {key: {"url": url, "healthRoute": HEALTH_ROUTE, "port": port}}


def endpoint_url(base_url: str, name: str) -> str:
    """Where the simulator serves an endpoint's data plane."""
    return f"{base_url.rstrip('/')}/endpoints/{name}"


def endpoint_json(
    machine: EndpointMachine, *, base_url: str, wall: Callable[[float], float], created_at: float
) -> dict[str, Any]:
    """The control plane's object for one endpoint (call `machine.settle(now)` first)."""
    spec = machine.spec
    timeout = spec.scale_to_zero_timeout
    ready, target = machine.replicas()
    user = {"id": _SIM_USER_ID, "name": spec.namespace}
    status: dict[str, Any] = {
        "createdAt": iso(created_at),
        "createdBy": user,
        "updatedAt": iso(max(created_at, wall(machine.since))),
        "updatedBy": user,
        "private": None,
        "state": machine.state,
        "message": machine.status_message,
    }
    if machine.has_url:
        status["url"] = endpoint_url(base_url, machine.name)
    status["readyReplica"] = ready
    status["targetReplica"] = target
    return {
        "name": machine.name,
        "type": spec.type,
        "accountId": None,
        "provider": {"vendor": "aws", "region": "us-east-1"},
        "healthRoute": HEALTH_ROUTE,
        "compute": {
            "accelerator": "gpu",
            "instanceType": "nvidia-l4",
            "instanceSize": "x1",
            "scaling": {
                "minReplica": machine.min_replica,
                "maxReplica": machine.max_replica,
                "scaleToZeroTimeout": None if timeout is None else math.ceil(timeout / 60),
            },
        },
        "model": {
            "repository": spec.model,
            "revision": spec.revision,
            "task": spec.served_task,
            "framework": spec.framework,
            "image": image_json(spec),
        },
        "status": status,
    }
