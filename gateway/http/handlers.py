"""Thin HTTP handlers: parse -> Call -> pipeline -> JSON or SSE response.

Each inbound URL form (OpenAI, legacy serverless, router, TGI/TEI-native) maps to one parser
call and then the same pipeline. Responses are written here and nowhere else; errors are raised
and rendered by the middleware.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

import orjson
from aiohttp import HttpVersion11, web

from gateway.core.call import Answer, Call, Op, Reply
from gateway.core.errors import GatewayError, NotFound, PayloadTooLarge
from gateway.core.model_ids import check_body_id
from gateway.core.pipeline import Handler
from gateway.core.routing import Router
from gateway.http.appkeys import CALL
from gateway.http.middleware.render import render_error
from gateway.http.parsing import CallParser, check_model, check_task
from gateway.http.relay import relay_stream

log = logging.getLogger("gateway.handlers")
_CHAT_SUFFIX = "/v1/chat/completions"
_TGI_SUFFIXES = {"/generate": Op.TGI_GENERATE, "/generate_stream": Op.TGI_GENERATE, "/embed": Op.TEI_EMBED,
                 "/predict": Op.TEI_PREDICT, "/rerank": Op.TEI_RERANK}


class _RouteOptions(TypedDict):
    """Keyword arguments every inference route is added with (typed, so `**opts` type-checks)."""

    expect_handler: Callable[[web.Request], Awaitable[web.StreamResponse | None]]


class Gateway:
    """The inference handlers of one app."""

    def __init__(self, parser: CallParser, router: Router, pipeline: Handler) -> None:
        self.parser = parser
        self.router = router
        self.pipeline = pipeline

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        opts: _RouteOptions = {"expect_handler": self.expect}  # Expect: 100-continue checks the body size first
        r.add_post("/v1/chat/completions", self.chat, **opts)
        r.add_post("/v1/completions", self.completions, **opts)
        r.add_post("/v1/embeddings", self.embeddings, **opts)
        r.add_post("/v1/responses", self.responses, **opts)
        r.add_get("/v1/models", self.models, **opts)
        r.add_get("/v1/models/{model_id:.+}", self.model_info, **opts)
        r.add_post("/models/{rest:.+}", self.legacy_model, **opts)
        r.add_post("/pipeline/{task}/{model_id:.+}", self.legacy_pipeline, **opts)
        r.add_post("/hf-inference/models/{rest:.+}", self.router_model, **opts)
        r.add_get("/models/{rest:.+}", self.model_get, **opts)
        r.add_get("/hf-inference/models/{rest:.+}", self.model_get, **opts)

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refuse an oversized body before the client sends it; ignore other values.

        aiohttp's default answers any other Expect value with a plain-text 417 that bypasses the
        middlewares (no dialect, no request id); RFC 9110 lets a server ignore what it does not know.
        """
        if request.version != HttpVersion11 or request.headers.get("Expect", "").lower() != "100-continue":
            return None
        length = request.content_length
        if length is not None and length > self.parser.max_body:
            return render_error(request, PayloadTooLarge(
                f"request body of {length} bytes is over the limit of {self.parser.max_body} bytes"))
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the body
        return None

    # --- OpenAI dialect --------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, await self.parser.openai(request, Op.CHAT))

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, await self.parser.openai(request, Op.COMPLETIONS))

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._run(request, await self.parser.openai(request, Op.EMBEDDINGS))

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """The Responses API, relayed to upstreams that speak it (dialects refuse it with `unsupported_route`)."""
        return await self._run(request, await self.parser.openai(request, Op.RESPONSES))

    async def models(self, request: web.Request) -> web.Response:
        """Configured names and aliases in `data`; `routes` says which patterns (and `*`) serve other ids."""
        return _json({"object": "list", "data": self.router.catalog(), "routes": self.router.patterns()})

    async def model_info(self, request: web.Request) -> web.Response:
        """A model object for any id a request could use (a 404 in OpenAI's shape for the others)."""
        return _json(self.router.model(check_body_id(request.match_info["model_id"])))

    # --- HF dialect ------------------------------------------------------------------------------
    async def legacy_model(self, request: web.Request) -> web.StreamResponse:
        return await self._model_path(request, request.match_info["rest"])

    async def router_model(self, request: web.Request) -> web.StreamResponse:
        return await self._model_path(request, request.match_info["rest"], provider="hf-inference")

    async def legacy_pipeline(self, request: web.Request) -> web.StreamResponse:
        task = check_task(request.match_info["task"])
        model = check_model(request.match_info["model_id"])
        return await self._run(request, await self.parser.hf(request, model, task))

    async def model_get(self, request: web.Request) -> web.Response:
        """`GET {model URL}/info` and `/health`, as InferenceClient's get_endpoint_info/health_check call them."""
        rest = request.match_info["rest"]
        for suffix in ("/info", "/health"):
            if rest.endswith(suffix):
                model = check_model(rest[: -len(suffix)])
                route = self.router.resolve(model)
                if suffix == "/health":
                    return web.Response(status=200)
                return _json({"model_id": model, "model_pipeline_tag": route.task,
                              "deployments": [d.id for d in route.deployments]})
        raise NotFound("only POST is served on a model URL (GET works for /info and /health)")

    async def _model_path(self, request: web.Request, rest: str, provider: str | None = None) -> web.StreamResponse:
        """`{id}`, `{id}/pipeline/{task}`, `{id}/v1/chat/completions`, `{id}/generate[_stream]`, `{id}/embed`..."""
        if rest.endswith(_CHAT_SUFFIX):
            model = check_model(rest[: -len(_CHAT_SUFFIX)])
            call = await self.parser.openai(request, Op.CHAT, bound_model=model)
            call.provider = provider  # InferenceClient's hf-inference chat URL: that provider, not the router's pick
            return await self._run(request, call)
        if "/pipeline/" in rest:
            model, _, task = rest.rpartition("/pipeline/")
            call = await self.parser.hf(request, check_model(model), check_task(task))
            return await self._run(request, call)
        for suffix, op in _TGI_SUFFIXES.items():
            if rest.endswith(suffix) and check_model_prefix(rest[: -len(suffix)]):
                path_task = "stream" if suffix == "/generate_stream" else None
                call = await self.parser.hf(request, check_model(rest[: -len(suffix)]), path_task, op)
                return await self._run(request, call)
        return await self._run(request, await self.parser.hf(request, check_model(rest), None))

    # --- common ----------------------------------------------------------------------------------
    async def _run(self, request: web.Request, call: Call) -> web.StreamResponse:
        request[CALL] = call
        answer: Answer = await self.pipeline(call)
        if isinstance(answer, Reply):
            headers = {**answer.headers, **call.reply_headers, "X-Request-Id": call.request_id}
            # Content-Type as a header: an upstream's own (`audio/flac`, `text/plain; charset=...`) goes as it came.
            return web.Response(status=answer.status, body=answer.body,
                                headers={**headers, "Content-Type": answer.content_type})
        return await relay_stream(request, call, answer)


def check_model_prefix(text: str) -> bool:
    """Whether `text` is a model id, so `{id}/generate` is the TGI-native route of that model."""
    try:
        check_model(text)
    except GatewayError:
        return False
    return True


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")

