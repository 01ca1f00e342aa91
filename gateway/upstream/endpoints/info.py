"""What the control plane says about one endpoint (`GET /v2/endpoint/{namespace}/{name}`), parsed strictly.

The fields read are those `huggingface_hub` 2.4.0 reads (`InferenceEndpoint._populate_from_raw`):
`status.state`, `status.url` (absent while pending, paused or failed; kept while scaled to zero),
`status.message`, `model.repository`, `model.task`, `model.image` (a one-key union naming the engine:
`huggingface`, `tgi`, `tei`, `vLLM`, `sGLang`, `llamacpp`, `hfServe`, `custom`) and the top-level
`healthRoute`. Anything that is not that shape is garbage (`ValueError`): the caller keeps what it knew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The states of `huggingface_hub`'s InferenceEndpointStatus.
STATES = ("pending", "initializing", "updating", "updateFailed", "running", "paused", "failed", "scaledToZero")
SERVING = frozenset({"running", "updating"})  # a replica answers (the old one while updating)
WAKING = frozenset({"pending", "initializing"})  # will serve without anyone acting
BROKEN = frozenset({"failed", "updateFailed"})  # HF: a failed endpoint needs to be recreated or updated


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One control-plane reading."""

    state: str
    url: str | None
    engine: str  # the key of model.image, lower-cased ("tgi", "vllm", "huggingface", ...)
    repository: str
    task: str | None
    health_route: str
    message: str | None = None


def parse_endpoint(data: Any) -> EndpointInfo:
    """The reading in `data` (parsed JSON); ValueError when it is not an endpoint object."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    status, model = data.get("status"), data.get("model")
    if not isinstance(status, dict) or not isinstance(model, dict):
        raise ValueError("the answer has no status or model object")
    state = status.get("state")
    if state not in STATES:
        raise ValueError(f"unknown endpoint state {str(state)[:40]!r}")
    url = status.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise ValueError("status.url is not an http(s) URL")
    image = model.get("image")
    engine = next(iter(image)).lower() if isinstance(image, dict) and len(image) == 1 else "huggingface"
    repository = model.get("repository")
    task = model.get("task")
    health = data.get("healthRoute")
    message = status.get("message")
    return EndpointInfo(
        state=state,
        url=url.rstrip("/") if url else None,
        engine=engine,
        repository=repository if isinstance(repository, str) else "",
        task=task if isinstance(task, str) else None,
        health_route=health if isinstance(health, str) and health.startswith("/") else "/health",
        message=message if isinstance(message, str) else None,
    )
