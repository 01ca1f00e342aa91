"""Error bodies as each upstream writes them (docs/protocol.md, 'Error bodies: HF, TGI, TEI, OpenAI').

The simulator plays upstreams, so unlike the gateway it must produce *their* error shapes:

    HF      router / legacy routes      {"error": "msg"}
    TGI     /, /generate*, /endpoints/{name}/v1/*   {"error": "msg", "error_type": "validation"}
    TEI     /embed, /predict, /rerank   {"error": "msg", "error_type": "Validation"}
    OPENAI  bare /v1/*, /hf-inference/models/{id}/v1/chat/completions
            {"error": {"message", "type", "code", "param"}} + `X-Error-Message`

The cold-start 503 is the HF platform's own answer and has the HF shape on every route.
Invariant: error bodies are JSON objects with a Content-Length (never chunked, never a list),
except the deliberate list form of the cold-start fault.
"""

from __future__ import annotations

from enum import Enum

from gateway.simulator.wire import Body, dumps, openai_event, tgi_event


class Style(Enum):
    """Which upstream's error dialect a route speaks."""

    HF = "hf"
    TGI = "tgi"
    TEI = "tei"
    OPENAI = "openai"


_MESSAGES = {
    400: "Bad request (simulated)",
    401: "Authorization header is correct, but the token seems invalid (simulated)",
    404: "Not found (simulated)",
    413: "Payload too large (simulated)",
    422: "Input validation error: `inputs` must be non-empty (simulated)",
    424: "Request failed during generation: CUDA out of memory (simulated)",
    429: "Rate limit reached, please retry later (simulated)",
    500: "Internal server error (simulated)",
    502: "Bad gateway (simulated)",
    503: "Service temporarily unavailable (simulated)",
    504: "Gateway timeout (simulated)",
}
_TGI_TYPES = {400: "validation", 401: "authentication", 422: "validation", 424: "generation", 429: "overloaded"}
_TEI_TYPES = {400: "Empty", 413: "Validation", 422: "Validation", 424: "Backend", 429: "Overloaded", 503: "Unhealthy"}
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}
_OPENAI_CODES = {400: "bad_request", 401: "invalid_api_key", 404: "not_found", 413: "payload_too_large",
                 422: "unprocessable_entity", 429: "rate_limit_exceeded", 503: "service_unavailable"}


def default_message(status: int) -> str:
    """The simulated message for a status."""
    return _MESSAGES.get(status, f"HTTP {status} (simulated)")


def tgi_error_type(status: int) -> str:
    """TGI's `error_type` for a status (server.rs mapping)."""
    return _TGI_TYPES.get(status, "incomplete_generation" if status >= 500 else "validation")


def error_object(
    style: Style, status: int, message: str, error_type: str | None = None, param: str | None = None
) -> dict[str, object]:
    """The JSON error object of `style` (`param` names the offending field; OpenAI shape only)."""
    if style is Style.OPENAI:
        return {
            "error": {
                "message": message,
                "type": error_type or _OPENAI_TYPES.get(status, "server_error"),
                "code": _OPENAI_CODES.get(status, "internal_error" if status >= 500 else "error"),
                "param": param,
            }
        }
    if style is Style.TGI:
        return {"error": message, "error_type": error_type or tgi_error_type(status)}
    if style is Style.TEI:
        return {"error": message, "error_type": error_type or _TEI_TYPES.get(status, "Backend")}
    if error_type is not None:
        return {"error": message, "error_type": error_type}
    return {"error": message}


def error_body(
    style: Style, status: int, message: str | None = None, *, error_type: str | None = None,
    param: str | None = None,
) -> tuple[Body, dict[str, str]]:
    """An error answer and the headers that go with it."""
    text = message or default_message(status)
    headers = {"X-Error-Message": text} if style is Style.OPENAI else {}
    return Body(dumps(error_object(style, status, text, error_type, param)), status=status), headers


def loading_body(model: str, estimated_time: float, *, list_form: bool = False) -> Body:
    """The HF "model is currently loading" 503."""
    obj = {"error": f"Model {model} is currently loading", "estimated_time": estimated_time}
    return Body(dumps([obj] if list_form else obj), status=503)


def stream_error_event(style: Style, message: str = "Request failed during generation (simulated)") -> bytes:
    """The in-band error event a stream of this dialect ends with when it fails."""
    if style is Style.OPENAI:
        return openai_event(error_object(style, 500, message, "server_error"))
    return tgi_event({"error": message, "error_type": "generation"})
