"""Playing today's HF router: which Inference Provider serves a request (docs/simulator.md, 'Providers').

A model whose config lists `providers` is served by those only, in that order: the router's
`/v1/*` routes pick one by the model's `:provider` or `:policy` suffix, and the hf-inference
routes (`/hf-inference/models/{id}`, and the legacy `/models/{id}` and `/pipeline/...` that lead
there) refuse it unless `hf-inference` is listed, as the router does for an LLM today. A model
without `providers` is served everywhere, by hf-inference, as before.

The provider that served is sent back in `x-inference-provider` (the router's header) and kept on
the request's record.
"""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.calls import RECORD, SimReject
from gateway.simulator.dialects import Style
from gateway.simulator.state import SIM_STATE

HF_INFERENCE = "hf-inference"
_FIRST = ("fastest", "preferred")  # the simulator's order lists the fastest provider first
_CHEAPEST = "cheapest"  # ... and the cheapest last
HEADER = "x-inference-provider"


def suffix_of(model: str | None) -> str | None:
    """`org/name:novita` -> `novita`; no suffix -> None."""
    if not model or ":" not in model:
        return None
    return model.rsplit(":", 1)[1] or None


def router_provider(request: web.Request, model: str, suffix: str | None, style: Style) -> str:
    """The provider that serves a `/v1` request for `model`, or a 400 when the one named does not serve it."""
    spec = request.app[SIM_STATE].config.spec(model)
    listed = spec.providers if spec is not None else None
    if not listed:
        chosen = suffix if suffix and suffix not in (*_FIRST, _CHEAPEST) else HF_INFERENCE
    elif suffix is None or suffix in _FIRST:
        chosen = listed[0]
    elif suffix == _CHEAPEST:
        chosen = listed[-1]
    elif suffix in listed:
        chosen = suffix
    else:
        raise SimReject.of(style, 400, f"Model {model} is not supported by provider {suffix}", param="model")
    request[RECORD].provider = chosen
    return chosen


def hf_inference_provider(request: web.Request, model: str, style: Style) -> str:
    """`hf-inference` when it serves `model`, else the 404 the router answers for a model it does not deploy."""
    spec = request.app[SIM_STATE].config.spec(model)
    if spec is not None and spec.providers and HF_INFERENCE not in spec.providers:
        raise SimReject.of(style, 404, f"Model {model} is not served by provider {HF_INFERENCE} "
                                       f"(served by: {', '.join(spec.providers)})")
    request[RECORD].provider = HF_INFERENCE
    return HF_INFERENCE


async def _provider_header(request: web.Request, response: web.StreamResponse) -> None:
    record = request.get(RECORD)
    if record is not None and record.provider is not None and response.status < 400:
        response.headers[HEADER] = record.provider


def add_provider_header(app: web.Application) -> None:
    """Send `x-inference-provider` on every answer a provider served."""
    app.on_response_prepare.append(_provider_header)
