"""OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`,
`/v1/embeddings`, `/v1/models`.

Each is served bare (the router: the body's `model`, minus any `:provider` suffix, is both the
model and the fault key; errors in OpenAI shape) and under `/endpoints/{name}` (a dedicated TGI/TEI
endpoint: `name` is the fault key, the body's model, else `name`, is the model; errors in TGI shape).
Chat is also reached through `/hf-inference/models/{id}/v1/chat/completions` via `chat_for_model`.
"""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.calls import (
    SimCall,
    body_of,
    open_call,
    strip_provider,
)
from gateway.simulator.chat_render import include_usage, render_chat
from gateway.simulator.dialects import Style
from gateway.simulator.openai_objects import (
    completion_object,
    completion_stream,
    embeddings_object,
    envelope,
)
from gateway.simulator.openai_params import invalid
from gateway.simulator.outputs import embedding, text_of
from gateway.simulator.providers import hf_inference_provider, router_provider, suffix_of
from gateway.simulator.respond import plain
from gateway.simulator.responses_render import render_responses
from gateway.simulator.serve import refuse_unauthorized, serve
from gateway.simulator.state import SIM_STATE
from gateway.simulator.task_render import embedding_dim, generation
from gateway.simulator.textgen import word_count
from gateway.simulator.wire import Rendered, json_body

PREFIXES = ("", "/endpoints/{name}")


def render_completion(call: SimCall) -> Rendered:
    """A text completion (one choice per prompt) or its stream."""
    body = call.require_json()
    prompt = body.get("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt)):
        prompts = [text_of(prompt)]
    elif isinstance(prompt, list) and prompt:
        prompts = [text_of(p) for p in prompt]
    else:
        raise invalid(call, "`prompt` must be a string or a non-empty list", "prompt")
    gens = [generation(call, text, body, limit_key="max_tokens", unlimited_finish="stop") for text in prompts]
    env = envelope(call, "cmpl")
    if call.stream:
        return completion_stream(gens, env, include_usage=include_usage(body), error_style=call.style)
    return json_body(completion_object(gens, env, echo=body.get("echo") is True))


def render_embeddings(call: SimCall) -> Rendered:
    """An OpenAI embeddings list (always unit vectors; float or base64 float32)."""
    body = call.require_json()
    value = body.get("input")
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, int) for v in value)):
        texts = [text_of(value)]
    elif isinstance(value, list) and value and all(isinstance(v, (str, list)) for v in value):
        texts = [text_of(v) for v in value]
    else:
        raise invalid(call, "`input` must be a string or a non-empty list", "input")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise invalid(call, "`encoding_format` must be float or base64", "encoding_format")
    dim = embedding_dim(call, body.get("dimensions"))
    vectors = [embedding(call.model, t, dim, normalize=True) for t in texts]
    return json_body(embeddings_object(vectors, call.model, sum(word_count(t) for t in texts), fmt))


def _target(request: web.Request) -> tuple[str, str, Style]:
    """Fault key, model and error style of a `/v1` request."""
    body, _ = body_of(request)
    named = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else None
    name = request.match_info.get("name")
    if name is not None:
        return name, strip_provider(named) if named else name, Style.TGI
    model = strip_provider(named) if named else "default"
    return model, model, Style.OPENAI


def _opened(request: web.Request, task: str, stream: bool | None = None) -> SimCall:
    """The call of a `/v1` request; on the router's own routes (not an endpoint's), its provider chosen."""
    key, model, style = _target(request)
    call = open_call(request, style=style, key=key, model=model, task=task, stream=stream)
    if request.match_info.get("name") is None:
        named = call.body.get("model") if isinstance(call.body, dict) else None
        router_provider(request, model, suffix_of(named if isinstance(named, str) else None), style)
    return call


async def chat(request: web.Request) -> web.StreamResponse:
    return await serve(_opened(request, "chat-completion"), render_chat)


async def chat_for_model(request: web.Request, model: str) -> web.StreamResponse:
    """Chat on an HF router model URL (`/hf-inference/models/{id}/v1/chat/completions`)."""
    call = open_call(request, style=Style.OPENAI, key=model, model=model, task="chat-completion")
    hf_inference_provider(request, model, Style.OPENAI)
    return await serve(call, render_chat)


async def completions(request: web.Request) -> web.StreamResponse:
    return await serve(_opened(request, "completion"), render_completion)


async def responses(request: web.Request) -> web.StreamResponse:
    return await serve(_opened(request, "responses"), render_responses)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await serve(_opened(request, "feature-extraction", stream=False), render_embeddings)


async def list_models(request: web.Request) -> web.StreamResponse:
    state = request.app[SIM_STATE]
    name = request.match_info.get("name")
    refuse_unauthorized(request, name or "default", Style.TGI if name else Style.OPENAI)
    names = [name] if name else (sorted(state.config.models) or ["default"])
    data = [{"id": n, "object": "model", "created": state.config.created, "owned_by": "hf-gateway-simulator"}
            for n in names]
    return plain(json_body({"object": "list", "data": data}))


def add_openai_routes(app: web.Application) -> None:
    """Register the `/v1` routes, bare and under `/endpoints/{name}`."""
    for prefix in PREFIXES:
        app.router.add_post(prefix + "/v1/chat/completions", chat)
        app.router.add_post(prefix + "/v1/completions", completions)
        app.router.add_post(prefix + "/v1/responses", responses)
        app.router.add_post(prefix + "/v1/embeddings", embeddings)
        app.router.add_get(prefix + "/v1/models", list_models)
