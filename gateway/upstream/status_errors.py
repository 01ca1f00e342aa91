"""Reading an upstream's non-2xx answer into `UpstreamStatusError` / `ModelLoading`.

Understands HF (`{"error": str, "estimated_time"?}` and the list form), TGI/TEI
(`{"error", "error_type"}`), OpenAI (`{"error": {"message", ...}}`) and TEI's OpenAI route
(`{"message", "type"}`), plus `Retry-After` and `retry-after-ms`.

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
        kind = err.get("type") if isinstance(err.get("type"), str) else etype
        return (str(msg) if msg is not None else None), kind, est_f
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
    retry_after = parse_retry_after(headers, now, retry_after_cap)
    return UpstreamStatusError(
        message, status=status, upstream_headers=relay, body=body, error_type=etype, retry_after=retry_after
    )
