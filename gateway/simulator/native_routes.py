"""TGI- and TEI-native routes, bare and under `/endpoints/{name}` (a dedicated endpoint's base URL).

    POST /                  task-dispatched like TGI/TEI `POST /`: text-generation -> compat_generate
                            (a LIST, or SSE when the root has "stream": true); a `{query, texts}`
                            body -> rerank; other tasks -> the HF task shape, except that
                            text-classification answers flat for a single input (TEI /predict)
    POST /generate          {"generated_text", "details"?} (a bare object)
    POST /generate_stream   SSE `data:{...}` with no space, no [DONE]
    POST /embed             always 2-D;  POST /predict  flat for one input, nested for a batch
    POST /rerank            [{index, score, text?}] sorted by score
    GET  /info, /health     TGI info JSON; 200 empty, or 503 while a cold window is open

`name` is the fault key and the model (bare routes use `default`). Errors: TGI shape on
generation routes, TEI shape on embedding/classification routes.
"""

from __future__ import annotations

from aiohttp import web

from gateway.simulator import outputs
from gateway.simulator.calls import RECORD, SimCall, SimReject, body_of, open_call
from gateway.simulator.dialects import Style, error_body
from gateway.simulator.renderers import task_renderer
from gateway.simulator.respond import plain
from gateway.simulator.serve import refuse_unauthorized, serve
from gateway.simulator.state import SIM_STATE
from gateway.simulator.task_render import (
    classify,
    generation,
    render_embed,
    text_input,
    text_list,
)
from gateway.simulator.tasks import detect_task, pipeline_tag
from gateway.simulator.textgen import tgi_object, tgi_stream
from gateway.simulator.wire import Rendered, json_body

_TEI_TASKS = frozenset({"feature-extraction", "text-classification", "sentence-similarity", "text-ranking"})


def endpoint_name(request: web.Request) -> str:
    """The endpoint a native route belongs to (`default` for bare routes)."""
    return request.match_info.get("name", "default")


def _native_call(request: web.Request, task: str, *, stream: bool | None = None) -> SimCall:
    name = endpoint_name(request)
    style = Style.TEI if task in _TEI_TASKS else Style.TGI
    return open_call(request, style=style, key=name, model=name, task=task, stream=stream)


def render_generate(call: SimCall) -> Rendered:
    """TGI `/generate`: one bare object."""
    params = call.params()
    return json_body(tgi_object(generation(call, text_input(call), params), params))


def render_generate_stream(call: SimCall) -> Rendered:
    """TGI `/generate_stream`: SSE, whatever the body says about `stream`."""
    params = call.params()
    return tgi_stream(generation(call, text_input(call), params), params)


def render_rerank(call: SimCall) -> Rendered:
    """TEI `/rerank`."""
    body = call.require_json()
    query, texts = body.get("query"), body.get("texts")
    if not isinstance(query, str) or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise SimReject.of(call.style, 422, "`query` must be a string and `texts` a list of strings")
    return json_body(outputs.rerank(call.model, query, texts, return_text=body.get("return_text") is True))


def render_predict(call: SimCall) -> Rendered:
    """TEI `/predict`: flat for one input, nested for a batch."""
    text_list(call, call.inputs())  # validates the shape before classifying
    return classify(call, flat_single=True)


async def root(request: web.Request) -> web.StreamResponse:
    body, _ = body_of(request)
    if isinstance(body, dict) and "query" in body and "texts" in body:
        return await serve(_native_call(request, "text-ranking", stream=False), render_rerank)
    name = endpoint_name(request)
    spec = request.app[SIM_STATE].config.spec(name)
    task = detect_task(None, spec.task if spec else None, body, request.headers.get("Accept", ""), name,
                       raw=request[RECORD].body, content_type=request.headers.get("Content-Type", ""))
    assert task is not None  # only a path task can be unknown
    call = _native_call(request, task, stream=None if task == "text-generation" else False)
    return await serve(call, task_renderer(task, native=True))


async def generate(request: web.Request) -> web.StreamResponse:
    return await serve(_native_call(request, "text-generation", stream=False), render_generate)


async def generate_stream(request: web.Request) -> web.StreamResponse:
    return await serve(_native_call(request, "text-generation", stream=True), render_generate_stream)


async def embed(request: web.Request) -> web.StreamResponse:
    return await serve(_native_call(request, "feature-extraction", stream=False), render_embed)


async def predict(request: web.Request) -> web.StreamResponse:
    return await serve(_native_call(request, "text-classification", stream=False), render_predict)


async def rerank(request: web.Request) -> web.StreamResponse:
    return await serve(_native_call(request, "text-ranking", stream=False), render_rerank)


def tgi_info(model_id: str, task: str) -> dict[str, object]:
    """TGI's `GET /info` document."""
    return {
        "model_id": model_id, "model_sha": None, "model_pipeline_tag": task,
        "max_concurrent_requests": 128, "max_best_of": 2, "max_stop_sequences": 4,
        "max_input_tokens": 4095, "max_total_tokens": 4096, "validation_workers": 2,
        "max_client_batch_size": 4, "router": "text-generation-router", "version": "3.3.6-sim",
        "sha": None, "docker_label": "hf-gateway-simulator",
    }


def info_answer(request: web.Request, key: str, model: str) -> web.StreamResponse:
    """`GET .../info` for a key (auth applies)."""
    state = request.app[SIM_STATE]
    refuse_unauthorized(request, key, Style.TGI)
    spec = state.config.spec(key)
    state.stats.identify(request[RECORD], model, None)
    task = (spec.task if spec and spec.task else None) or pipeline_tag(model)
    return plain(json_body(tgi_info(model, task)))


def health_answer(request: web.Request, key: str, model: str) -> web.StreamResponse:
    """`GET .../health`: 200 empty, 503 TGI-style while loading (auth applies)."""
    state = request.app[SIM_STATE]
    refuse_unauthorized(request, key, Style.TGI)
    state.stats.identify(request[RECORD], model, None)
    if state.faults.loading(key):
        body, headers = error_body(Style.TGI, 503, "unhealthy", error_type="healthcheck")
        return plain(body, headers)
    return web.Response(status=200)


async def info(request: web.Request) -> web.StreamResponse:
    name = endpoint_name(request)
    return info_answer(request, name, name)


async def health(request: web.Request) -> web.StreamResponse:
    name = endpoint_name(request)
    return health_answer(request, name, name)


def add_native_routes(app: web.Application) -> None:
    """Register the TGI/TEI routes, bare and under `/endpoints/{name}`."""
    app.router.add_post("/", root)
    app.router.add_post("/endpoints/{name}", root)
    for prefix in ("", "/endpoints/{name}"):
        if prefix:
            app.router.add_post(prefix + "/", root)
        app.router.add_post(prefix + "/generate", generate)
        app.router.add_post(prefix + "/generate_stream", generate_stream)
        app.router.add_post(prefix + "/embed", embed)
        app.router.add_post(prefix + "/predict", predict)
        app.router.add_post(prefix + "/rerank", rerank)
        app.router.add_get(prefix + "/info", info)
        app.router.add_get(prefix + "/health", health)
