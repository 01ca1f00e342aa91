"""From an aiohttp request to a typed `Call`: body limits, JSON, field checks, flags, model id checks.

Everything a client can get wrong is caught here and raised as a `ClientError`, so the stages
behind only ever see well-formed calls.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import orjson
from aiohttp import web

from gateway.core import tasks
from gateway.core.call import Call, Dialect, Flags, Op, Route
from gateway.core.clock import Clock
from gateway.core.errors import BadRequest, PayloadTooLarge, RequestTimeout
from gateway.core.model_ids import check_body_id, check_path_id
from gateway.core.routing import Router
from gateway.http.appkeys import API_KEY_ID, REQUEST_ID, STARTED, TENANT
from gateway.observability.logs import redact

_TASK_RE = re.compile(r"^[a-z][a-z0-9\-]{1,63}$")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._\-:]{1,128}$")
# JSON deeper than this is refused: orjson cannot re-serialise past 255 levels (cache keys, model
# rewrites) and recursive walkers would hit Python's recursion limit; real requests nest ~20 levels.
MAX_JSON_DEPTH = 128
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
FORWARDED = ("x-hf-bill-to",)
_OPENAI_TASKS = {Op.CHAT: "chat", Op.COMPLETIONS: "completions", Op.EMBEDDINGS: "embeddings",
                 Op.RESPONSES: "responses"}


def request_id(request: web.Request) -> str:
    """The client's X-Request-Id when it is sane (anything secret-looking in it masked), else a new one."""
    rid = request.headers.get("X-Request-Id")
    if rid and _REQUEST_ID_RE.match(rid):
        return redact(rid)  # it is logged: masked here once, so the access line need not look at it again
    return os.urandom(16).hex()  # 128 random bits, like uuid4, without building a UUID


def check_model(name: Any, where: str = "model") -> str:
    """A model id taken from a URL path (strict: `core/model_ids.py`), or BadRequest."""
    return check_path_id(name, where)


def check_task(task: str) -> str:
    if not _TASK_RE.match(task):
        raise BadRequest(f"{task[:40]!r} is not a valid task name")
    return task


async def read_body(request: web.Request, limit: int, seconds: float | None = None) -> bytes:
    """The whole body, refusing early (from Content-Length) when it is over `limit`; RequestTimeout when
    it has not all arrived within `seconds` (a body dripped byte by byte would hold a task for ever)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"request body of {length} bytes is over the limit of {limit} bytes")
    try:
        if seconds is None:
            raw = await request.read()
        else:
            async with asyncio.timeout(seconds):
                raw = await request.read()
    except TimeoutError:
        # What is left of the body cannot be told from the next request: the connection closes.
        raise RequestTimeout("the request body did not arrive within the request's deadline",
                             headers={"Connection": "close"}) from None
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes") from exc
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
    return raw


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {_short(exc)}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth_over(data, MAX_JSON_DEPTH):
        raise BadRequest(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """Whether `data` nests containers more than `limit` deep (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    return False


def _short(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:120]


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    return None


def parse_flags(request: web.Request, body: dict[str, Any] | None) -> Flags:
    """Legacy `options` and `x-wait-for-model` / `x-use-cache` / Cache-Control / X-Gateway-Timeout."""
    flags = Flags()
    opts = body.get("options") if body else None
    if isinstance(opts, dict):
        flags.wait_for_model = _flag(opts.get("wait_for_model"))
        flags.use_cache = _flag(opts.get("use_cache"))
    h = request.headers
    if "x-wait-for-model" in h:
        flags.wait_for_model = _flag(h["x-wait-for-model"])
    if "x-use-cache" in h:
        flags.use_cache = _flag(h["x-use-cache"])
    cc = h.get("Cache-Control", "").lower()
    if cc:
        flags.no_cache = "no-cache" in cc
        flags.no_store = "no-store" in cc
    t = h.get("X-Gateway-Timeout")
    if t:
        try:
            flags.timeout = float(t)
        except ValueError as exc:
            raise BadRequest("X-Gateway-Timeout must be a number of seconds") from exc
        if not 0 < flags.timeout <= 86400:
            raise BadRequest("X-Gateway-Timeout must be between 0 and 86400 seconds")
    return flags


class CallParser:
    """Builds Calls; one instance per app (holds the router, clock and limits)."""

    def __init__(self, router: Router, clock: Clock, max_body: int, default_timeout: float) -> None:
        self.router = router
        self.clock = clock
        self.max_body = max_body
        self.default_timeout = default_timeout

    async def openai(self, request: web.Request, op: Op, bound_model: str | None = None) -> Call:
        """`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses` (optionally with a
        URL-bound model)."""
        raw = await read_body(request, self.max_body, self._body_wait(request))
        body = parse_json_object(raw)
        _require_openai_fields(op, body)
        model = bound_model or check_body_id(body.get("model"))  # any backend's id: it stays in the body
        stream = body.get("stream") is True
        if op is Op.EMBEDDINGS and stream:
            raise BadRequest("embeddings cannot be streamed")
        task = _OPENAI_TASKS[op]
        return self._call(request, Dialect.OPENAI, op, op.value, model, body, raw, stream, task)

    async def hf(self, request: web.Request, model: str, path_task: str | None, op: Op = Op.HF_TASK) -> Call:
        """HF-style task calls: `/models/{id}`, `/pipeline/{task}/{id}`, `/hf-inference/...`, TGI/TEI-native."""
        raw = await read_body(request, self.max_body, self._body_wait(request))
        ctype = request.headers.get("Content-Type", "")
        body: dict[str, Any] | None
        if not raw or ctype.startswith("application/json") or (not ctype and raw[:1] in (b"{", b"[")):
            body = parse_json_object(raw)
            if op is not Op.TEI_RERANK and "inputs" not in body and "table" not in body:
                raise BadRequest("the request body needs an `inputs` field (or `table`, for a tabular task)")
        else:
            body = None  # raw bytes (image/audio tasks): forwarded as they came
        route = self.router.resolve(model)
        accept = request.headers.get("Accept")
        agent = request.headers.get("User-Agent")
        task = path_task or route.task or tasks.detect_task(body, accept, agent) or _only_task(route, body)
        stream = bool(body and body.get("stream") is True) or (op is Op.TGI_GENERATE and path_task == "stream")
        call = self._call(request, Dialect.HF, op, op.value, model, body, raw, stream, task, route=route)
        call.content_type = ctype or None
        call.accept = accept
        if path_task and path_task != "stream":
            call.path_task = path_task
        return call

    def _body_wait(self, request: web.Request) -> float | None:
        """How long reading the body may wait: None when it has all arrived already (a small body comes
        in the same packets as the head: reading it cannot wait, so no timer is armed), else `_body_seconds`."""
        return None if request.content.is_eof() else self._body_seconds(request)

    def _body_seconds(self, request: web.Request) -> float:
        """What is left of the request's deadline (`request_timeout`, or a shorter valid `X-Gateway-Timeout`)
        for reading its body; an invalid header is refused later, by `parse_flags`."""
        timeout = self.default_timeout
        try:
            asked = float(request.headers.get("X-Gateway-Timeout", "nan"))
        except ValueError:
            asked = float("nan")
        if 0 < asked < timeout:
            timeout = asked
        now = self.clock.monotonic()
        started: float = request.get(STARTED, now)
        return max(0.0, timeout - (now - started))

    def _call(self, request: web.Request, dialect: Dialect, op: Op, label: str, model: str,
              body: dict[str, Any] | None, raw: bytes, stream: bool, task: str | None, route: Any = None) -> Call:
        now = self.clock.monotonic()
        flags = parse_flags(request, body)
        timeout = min(flags.timeout or self.default_timeout, self.default_timeout)
        fwd = {k: request.headers[k] for k in FORWARDED if k in request.headers}
        return Call(
            request_id=request[REQUEST_ID], dialect=dialect, op=op, route_label=label, model=model,
            route=route or self.router.resolve(model), body=body, raw=raw, stream=stream, task=task,
            forward_headers=fwd, flags=flags, tenant=request.get(TENANT), api_key_id=request.get(API_KEY_ID),
            started=request.get(STARTED, now), deadline=now + timeout,
        )


def _only_task(route: Route, body: dict[str, Any] | None) -> str | None:
    """The task a body must be when the route's upstreams can serve nothing else: an `openai` upstream
    answers an HF `{"inputs": text}` body only as embeddings (its /embeddings, in the HF shape)."""
    if all(d.upstream.kind == "openai" for d in route.deployments) and tasks.plain_text_inputs(body):
        return tasks.FEATURE_EXTRACTION
    return None


def _require_openai_fields(op: Op, body: dict[str, Any]) -> None:
    if op is Op.CHAT:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise BadRequest("`messages` must be a non-empty list")
        if not all(isinstance(m, dict) for m in msgs):
            raise BadRequest("each item of `messages` must be an object")
    elif op is Op.COMPLETIONS:
        if not isinstance(body.get("prompt"), (str, list)):
            raise BadRequest("`prompt` must be a string or a list")
    elif op is Op.EMBEDDINGS:
        if not isinstance(body.get("input"), (str, list)) or body.get("input") in ("", []):
            raise BadRequest("`input` must be a non-empty string or list")
        fmt = body.get("encoding_format")
        if fmt not in (None, "float", "base64"):
            raise BadRequest("`encoding_format` must be 'float' or 'base64'")
    elif op is Op.RESPONSES:
        _require_responses_fields(body)
    for key in ("max_tokens", "n"):
        if key in body and body[key] is not None and (not isinstance(body[key], int) or isinstance(body[key], bool)):
            raise BadRequest(f"`{key}` must be an integer")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest("`stream` must be a boolean")


def _require_responses_fields(body: dict[str, Any]) -> None:
    """The Responses API fields the gateway itself reads (token estimate, stream form), type-checked."""
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        raise BadRequest("`input` must be a string or a list of input items")
    if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
        raise BadRequest("each item of `input` must be an object")
    if body.get("instructions") is not None and not isinstance(body["instructions"], str):
        raise BadRequest("`instructions` must be a string")
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise BadRequest("`max_output_tokens` must be a positive integer")
    if body.get("background") is True:
        # A background response is fetched later with GET /v1/responses/{id}, which no model routes.
        raise BadRequest("`background: true` is not served through this gateway (the response could not be "
                         "fetched later); send the request without `background`, streamed if it is long")
