"""OpenAI-compatible routes: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

Each is served bare (the router: the body's `model`, minus any `:provider` suffix, is both the
model and the fault key; errors in OpenAI shape) and under `/endpoints/{name}` (a dedicated TGI/TEI
endpoint: `name` is the fault key, the body's model, else `name`, is the model; errors in TGI shape).
Chat is also reached through `/hf-inference/models/{id}/v1/chat/completions` via `chat_for_model`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.simulator.calls import SimCall, SimReject, body_of, open_call, strip_provider
from gateway.simulator.dialects import Style
from gateway.simulator.openai_objects import (
    Envelope,
    chat_object,
    chat_stream,
    completion_object,
    completion_stream,
    embeddings_object,
    request_id,
)
from gateway.simulator.outputs import embedding, text_of
from gateway.simulator.respond import plain
from gateway.simulator.serve import refuse_unauthorized, serve
from gateway.simulator.state import SIM_STATE
from gateway.simulator.task_render import embedding_dim, generation
from gateway.simulator.textgen import word_count
from gateway.simulator.wire import Rendered, json_body

PREFIXES = ("", "/endpoints/{name}")


def _invalid(call: SimCall, message: str) -> SimReject:
    return SimReject.of(call.style, 422 if call.style is Style.TGI else 400, message)


def _envelope(call: SimCall, prefix: str) -> Envelope:
    config = call.state.config
    return Envelope(request_id(prefix, call.raw), call.model, config.created, config.fingerprint)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def content_text(content: Any) -> str:
    """The text of a message's content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def render_chat(call: SimCall) -> Rendered:
    """A chat completion or its stream."""
    body = call.require_json()
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _invalid(call, "`messages` must be a non-empty list of objects")
    prompt = "\n".join(content_text(m.get("content")) for m in messages)
    limit_key = "max_tokens" if body.get("max_tokens") is not None else "max_completion_tokens"
    gen = generation(call, prompt, body, limit_key=limit_key, unlimited_finish="stop")
    env = _envelope(call, "chatcmpl")
    if call.stream:
        return chat_stream(gen, env, include_usage=_include_usage(body), error_style=call.style)
    return json_body(chat_object(gen, env))


def render_completion(call: SimCall) -> Rendered:
    """A text completion (one choice per prompt) or its stream."""
    body = call.require_json()
    prompt = body.get("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt)):
        prompts = [text_of(prompt)]
    elif isinstance(prompt, list) and prompt:
        prompts = [text_of(p) for p in prompt]
    else:
        raise _invalid(call, "`prompt` must be a string or a non-empty list")
    gens = [generation(call, text, body, limit_key="max_tokens", unlimited_finish="stop") for text in prompts]
    env = _envelope(call, "cmpl")
    if call.stream:
        return completion_stream(gens, env, include_usage=_include_usage(body), error_style=call.style)
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
        raise _invalid(call, "`input` must be a string or a non-empty list")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ("float", "base64"):
        raise _invalid(call, "`encoding_format` must be float or base64")
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


async def chat(request: web.Request) -> web.StreamResponse:
    key, model, style = _target(request)
    return await serve(open_call(request, style=style, key=key, model=model, task="chat-completion"), render_chat)


async def chat_for_model(request: web.Request, model: str) -> web.StreamResponse:
    """Chat on an HF router model URL (`/hf-inference/models/{id}/v1/chat/completions`)."""
    call = open_call(request, style=Style.OPENAI, key=model, model=model, task="chat-completion")
    return await serve(call, render_chat)


async def completions(request: web.Request) -> web.StreamResponse:
    key, model, style = _target(request)
    return await serve(open_call(request, style=style, key=key, model=model, task="completion"), render_completion)


async def embeddings(request: web.Request) -> web.StreamResponse:
    key, model, style = _target(request)
    call = open_call(request, style=style, key=key, model=model, task="feature-extraction", stream=False)
    return await serve(call, render_embeddings)


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
        app.router.add_post(prefix + "/v1/embeddings", embeddings)
        app.router.add_get(prefix + "/v1/models", list_models)
