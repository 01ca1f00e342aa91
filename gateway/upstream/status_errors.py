"""Reading an upstream's non-2xx answer into `UpstreamStatusError` / `ModelLoading`.

Understands HF (`{"error": str, "estimated_time"?}` and the list form), TGI/TEI
(`{"error", "error_type"}`), OpenAI (`{"error": {"message", ...}}`) and TEI's OpenAI route
(`{"message", "type"}`), plus `Retry-After` (seconds or HTTP date) and `retry-after-ms`.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.core.errors import ModelLoading, UpstreamStatusError

RELAYED_ERROR_HEADERS = ("x-inference-provider",)


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the upstream asks us to wait, or None. `now` is wall time for HTTP dates."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _message_of(data: Any) -> tuple[str | None, str | None, float | None]:
    """(message, error_type, estimated_time) from any known error body shape."""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return None, None, None
    err = data.get("error")
    est = data.get("estimated_time")
    est_f = float(est) if isinstance(est, (int, float)) and not isinstance(est, bool) else None
    etype = data.get("error_type") if isinstance(data.get("error_type"), str) else None
    if isinstance(err, str):
        return err, etype, est_f
    if isinstance(err, dict):
        msg = err.get("message")
        typ = err.get("type")
        return (str(msg) if msg is not None else None), (typ if isinstance(typ, str) else etype), est_f
    if isinstance(err, list) and err:
        return "; ".join(str(e) for e in err), etype, est_f
    msg = data.get("message")
    if isinstance(msg, str):
        return msg, data.get("type") if isinstance(data.get("type"), str) else etype, est_f
    return None, etype, est_f


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, *, now: float, upstream: str, retry_after_cap: float
) -> UpstreamStatusError:
    """The gateway error for an upstream's non-2xx answer."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message, etype, est = _message_of(data)
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
    retry_after = parse_retry_after(headers, now)
    if retry_after is not None:
        retry_after = min(retry_after, retry_after_cap) if status in (429, 503) else retry_after
    return UpstreamStatusError(
        message, status=status, upstream_headers=relay, body=body, error_type=etype, retry_after=retry_after
    )
