"""HF router and legacy Inference API routes (docs/protocol.md, 'InferenceClient: URL forms', 'HF router routes').

    POST /hf-inference/models/{id}                         task from path, config, body or name
    POST /hf-inference/models/{id}/pipeline/{task}
    POST /hf-inference/models/{id}/v1/chat/completions     OpenAI chat for that model
    POST /models/{id}[/pipeline/{task}|/v1/chat/completions]   legacy, same contracts
    POST /pipeline/{task}/{id}                             legacy multi-task path
    GET  .../{id}/info, .../{id}/health                    what InferenceClient's endpoint helpers call

Model ids contain `/`, so the route captures the whole tail and this module splits it: a
trailing `/v1/chat/completions` first, then the last `/pipeline/{task}`. The model id is the
fault key. Errors use the HF shape `{"error": "..."}`. A task body is JSON or, for the image and
audio tasks, the raw file (`media_inputs.py`); detection sees both (`tasks.detect_task`).
"""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.calls import RECORD, SimReject, body_of, open_call
from gateway.simulator.dialects import Style
from gateway.simulator.native_routes import health_answer, info_answer
from gateway.simulator.openai_routes import chat_for_model
from gateway.simulator.providers import hf_inference_provider
from gateway.simulator.renderers import task_renderer
from gateway.simulator.serve import serve
from gateway.simulator.state import SIM_STATE
from gateway.simulator.tasks import detect_task

_CHAT_SUFFIX = "/v1/chat/completions"
_PIPELINE = "/pipeline/"


def split_tail(tail: str) -> tuple[str, str | None]:
    """`org/name/pipeline/task` -> (`org/name`, `task`); no pipeline -> (tail, None)."""
    head, sep, task = tail.rpartition(_PIPELINE)
    if sep and head and task and "/" not in task:
        return head, task
    return tail, None


async def hf_task(request: web.Request, model: str, path_task: str | None) -> web.StreamResponse:
    """Serve an HF-style task request for `model`."""
    state = request.app[SIM_STATE]
    body, _ = body_of(request)
    spec = state.config.spec(model)
    task = detect_task(path_task, spec.task if spec else None, body, request.headers.get("Accept", ""), model,
                       raw=request[RECORD].body, content_type=request.headers.get("Content-Type", ""))
    call = open_call(request, style=Style.HF, key=model, model=model, task=task or path_task,
                     stream=None if task == "text-generation" else False)
    hf_inference_provider(request, model, Style.HF)
    if task is None:
        raise SimReject.of(Style.HF, 400, f"Task {path_task!r} is not served by the simulator")
    return await serve(call, task_renderer(task, native=False))


async def model_post(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"].rstrip("/")
    if tail.endswith(_CHAT_SUFFIX) and len(tail) > len(_CHAT_SUFFIX):
        return await chat_for_model(request, tail[: -len(_CHAT_SUFFIX)])
    model, path_task = split_tail(tail)
    return await hf_task(request, model, path_task)


async def model_get(request: web.Request) -> web.StreamResponse:
    tail = request.match_info["tail"].rstrip("/")
    model, _, leaf = tail.rpartition("/")
    if model and leaf == "info":
        return info_answer(request, model, model)
    if model and leaf == "health":
        return health_answer(request, model, model)
    raise web.HTTPNotFound()


async def pipeline_post(request: web.Request) -> web.StreamResponse:
    return await hf_task(request, request.match_info["model"].rstrip("/"), request.match_info["task"])


def add_hf_routes(app: web.Application) -> None:
    """Register the router and legacy routes."""
    for prefix in ("/hf-inference/models/", "/models/"):
        app.router.add_post(prefix + "{tail:.+}", model_post)
        app.router.add_get(prefix + "{tail:.+}", model_get)
    app.router.add_post("/pipeline/{task}/{model:.+}", pipeline_post)
