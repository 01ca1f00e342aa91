"""Reading an upstream's non-2xx answer into `UpstreamStatusError` / `ModelLoading`.

Understands HF (`{"error": str, "estimated_time"?}` and the list form), TGI/TEI
(`{"error", "error_type"}`), OpenAI (`{"error": {"message", ...}}`) and TEI's OpenAI route
(`{"message", "type"}`), plus `Retry-After` and `retry-after-ms`.

Whatever else the upstream's error object holds (OpenAI's `type`, `code`, `param`, a content
filter's `innererror`, TGI's `error_type`) is kept in `upstream_fields` and relayed to the client
unchanged (docs/errors.md): clients branch on those codes. The same reading serves an in-band error
that arrives as a stream's first event (`stream_error`), which becomes an HTTP error with a status
chosen from what the event says.

`Retry-After` is read as RFC 9110 §10.2.3 defines it: delay-seconds (digits only) or an HTTP-date
(IMF-fixdate, or the obsolete RFC 850 and asctime forms, all in GMT); anything else (`inf`,
`1e3`, `-5`, `3.5`) is ignored. OpenAI's `retry-after-ms` is a decimal number of milliseconds.
Every value is bounded (`retry_after_cap`; never more than a day), so no clock ever sees an
infinite, negative or 300-digit wait, and no such value is relayed.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.core.errors import ModelLoading, UpstreamStatusError

RELAYED_ERROR_HEADERS = ("x-inference-provider",)
MAX_RETRY_AFTER = 86400.0  # seconds: the most any upstream hint is believed
_DIGITS = re.compile(r"[0-9]+")
_MILLIS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


def parse_retry_after(headers: Mapping[str, str], now: float, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds the upstream asks us to wait, in [0, cap], or None. `now` is wall time for HTTP dates."""
    cap = min(cap, MAX_RETRY_AFTER)
    ms = headers.get("retry-after-ms", "").strip()
    if _MILLIS.fullmatch(ms):
        return min(float(ms) / 1000.0, cap)
    ra = headers.get("retry-after", "").strip()
    if not ra:
        return None
    if _DIGITS.fullmatch(ra):
        return cap if len(ra) > 9 else min(float(ra), cap)  # (a longer number is years: the cap)
    if ra[:1].isdigit() or len(ra) > 40:
        return None  # "1e3", "3.5", "12abc": a number RFC 9110 does not allow, so no hint at all
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)  # HTTP dates are GMT ("-0000" parses naive)
    return min(max(0.0, when.timestamp() - now), cap)


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an upstream's error body says: its message, TGI's `error_type`, HF's `estimated_time`, and
    every other field of its error object (`fields`), kept as they came."""

    message: str | None = None
    error_type: str | None = None
    estimated_time: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)


def read_error_body(data: Any) -> ErrorBody:
    """The parts of any known error body shape (see the module docstring)."""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return ErrorBody()
    err = data.get("error")
    est = data.get("estimated_time")
    est_f = float(est) if isinstance(est, (int, float)) and not isinstance(est, bool) else None
    etype = data.get("error_type") if isinstance(data.get("error_type"), str) else None
    if isinstance(err, dict):  # OpenAI: {"error": {"message", "type", "code", "param", ...}}
        msg = err.get("message")
        fields = {k: v for k, v in err.items() if k != "message"}
        return ErrorBody(str(msg) if msg is not None else None, etype, est_f, fields)
    rest = {k: v for k, v in data.items() if k != "error"}
    if isinstance(err, str):  # HF / TGI / TEI: {"error": "...", "error_type"?, "estimated_time"?}
        return ErrorBody(err, etype, est_f, rest)
    if isinstance(err, list) and err:
        return ErrorBody("; ".join(str(e) for e in err), etype, est_f, rest)
    msg = data.get("message")
    if isinstance(msg, str):  # bare OpenAI-style object (TEI's /v1 route, older vLLM: {"object": "error", ...})
        # (a Responses stream's error event has this shape too: its `type: "error"` and place in the stream go)
        fields = {k: v for k, v in data.items()
                  if k not in ("message", "object", "sequence_number") and (k, v) != ("type", "error")}
        return ErrorBody(msg, etype, est_f, fields)
    return ErrorBody(None, etype, est_f, {})


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float, upstream: str, retry_after_cap: float
) -> UpstreamStatusError:
    """The gateway error for an upstream's non-2xx answer."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    parts = read_error_body(data)
    message, est = parts.message, parts.estimated_time
    if message is None:
        text = body[:300].decode("utf-8", "replace").strip()
        message = text if text and not text.lstrip().startswith("<") else f"upstream {upstream} answered {status}"
    relay = {k: v for k, v in headers.items() if k in RELAYED_ERROR_HEADERS}
    if status == 503 and (est is not None or "loading" in message.lower()):
        return ModelLoading(
            message,
            estimated_time=est if est is not None else 20.0,
            upstream_headers=relay,
            body=body,
            retry_after_cap=retry_after_cap,
        )
    retry_after = parse_retry_after(headers, now, retry_after_cap)
    return UpstreamStatusError(message, status=status, upstream_headers=relay, body=body,
                               error_type=parts.error_type, retry_after=retry_after, upstream_fields=parts.fields)


# The status an in-band error event stands for, when it arrives as a stream's first event.
_TGI_ERROR_STATUS = {"validation": 422, "overloaded": 429, "generation": 424, "template": 422, "tool_error": 422}
_OPENAI_STATUS = {
    "invalid_request_error": 400, "context_length_exceeded": 400, "BadRequestError": 400,
    "not_found_error": 404, "model_not_found": 404, "NotFoundError": 404,
    "rate_limit_error": 429, "rate_limit_exceeded": 429, "insufficient_quota": 429,
}


def _in_band_status(parts: ErrorBody) -> int:
    """An HTTP status for an in-band error: the one it names, else what its type or code implies, else 502.
    Never 401-403: those would tell the client its own key is wrong, when the gateway's was refused."""
    for key in ("status", "code"):
        value = parts.fields.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            return 502 if value in (401, 402, 403) else value
    if parts.error_type in _TGI_ERROR_STATUS:
        return _TGI_ERROR_STATUS[parts.error_type]
    for key in ("code", "type"):
        value = parts.fields.get(key)
        if isinstance(value, str) and value in _OPENAI_STATUS:
            return _OPENAI_STATUS[value]
    return 502


def stream_error(event: dict[str, Any]) -> UpstreamStatusError:
    """The gateway error for a stream whose first event is an in-band error (`{"error": ...}`)."""
    parts = read_error_body(event)
    message = parts.message or "the upstream's stream failed before its first token"
    return UpstreamStatusError(message, status=_in_band_status(parts), error_type=parts.error_type,
                               upstream_fields=parts.fields)
