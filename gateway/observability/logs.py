"""Structured logs: JSON lines (default) or readable text, request ids, and secret redaction.

Invariants:
- Every line passes `RedactingFilter` on the way out, so anything that looks like a bearer
  token, an `hf_...` token, an `sk-...` key or a `key=value` secret is masked in the message,
  in extra fields (recursively) and in tracebacks; fields named like secrets are masked whole.
- The request id comes from an `extra={"request_id": ...}` field or, failing that, from the
  `REQUEST_ID` context variable the observe middleware sets for each request, so log lines
  written deep inside a policy still carry it.
- One access line per request (`access_log`) on the `gateway.access` logger, always with the
  same fields (missing ones are null) so log queries never have to guess the shape.
- Nothing happens at import: `configure_logging` is called once by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import sys
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

import orjson

LogFormat = Literal["json", "text"]

REQUEST_ID: ContextVar[str | None] = ContextVar("gateway_request_id", default=None)
ACCESS_LOGGER = "gateway.access"
ACCESS_FIELDS = (
    "request_id", "method", "path", "route", "tenant", "model", "deployment",
    "status", "cache", "retries", "waited_s", "upstream_s", "total_s",
)  # fmt: skip
MASK = "[REDACTED]"

# Ordered: the specific token shapes first, then generic `name=value` secrets.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{MASK}"),
    # Real HF tokens are hf_ + 34 characters; 12+ keeps module names like hf_serverless readable.
    (re.compile(r"\bhf_[A-Za-z0-9_-]{12,}"), f"hf_{MASK}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), f"sk-{MASK}"),
    (
        re.compile(
            r"(?i)\b((?:x-)?api[_-]?key|access[_-]?token|token|secret|password|authorization)"
            r"([\"']?\s*[:=]\s*[\"']?)(?!\[REDACTED\])([^\s\"'&,;]+)"
        ),
        rf"\1\2{MASK}",
    ),
)
_SECRET_KEY = re.compile(
    r"(?i)^(x-)?(authorization|proxy-authorization|cookie|set-cookie|api[_-]?key|token|.*[_-]token"
    r"|.*secret.*|.*password.*)$"
)
# Attributes every LogRecord has; anything else on a record is an `extra` field.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName",
}  # fmt: skip


# Every secret pattern above contains one of these: a text without any needs no substitution.
# One search instead of four substitutions keeps the access line cheap (most fields are plain).
_MAYBE_SECRET = re.compile(r"(?i)bearer|basic|hf_|sk-|api|token|secret|password|authorization")


def redact(text: str) -> str:
    """`text` with every secret-looking substring masked."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: object) -> object:
    """A field value with secrets masked; a field named like a secret is masked whole."""
    if _SECRET_KEY.match(key) and value is not None:
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value("", v) for v in value]
    return value


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The `extra=` fields of a record, in insertion order."""
    known = record.__dict__.get("_fields")
    if known is not None:  # an access line carries its own (already redacted) fields
        return known  # type: ignore[no-any-return]
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class RedactingFilter(logging.Filter):
    """Masks secrets in the message and extra fields, and fills in the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # an access line: `access_log` masked its free text already
            if getattr(record, "request_id", None) is None:
                setattr(record, "request_id", REQUEST_ID.get())  # noqa: B010 - not a declared attribute
                record.__dict__.get("_fields", {})["request_id"] = record.request_id  # type: ignore[attr-defined]
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not make logging raise
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact(message), None
        for key, value in extra_fields(record).items():
            setattr(record, key, redact_value(key, value))
        if getattr(record, "request_id", None) is None:
            setattr(record, "request_id", REQUEST_ID.get())  # noqa: B010 - not a declared attribute
        return True


_second: list[object] = [-1, ""]  # (whole second, its "YYYY-MM-DDTHH:MM:SS" text): one strftime per second


def _timestamp(record: logging.LogRecord) -> str:
    """`2026-11-24T23:13:17.123Z` (UTC, milliseconds), the date part formatted once per second."""
    created = record.created
    whole = int(created)
    if whole != _second[0]:
        _second[:] = [whole, datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")]
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        fields = extra_fields(record)
        if record.__dict__.get("_fields") is fields:  # an access line: its keys never clash with the five above
            line.update(fields)  # (request_id is the same value on both)
        else:
            for key, value in fields.items():
                line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`ts LEVEL logger [request id] message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in extra_fields(record).items() if k != "request_id"}
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name]
        request_id = getattr(record, "request_id", None)
        if request_id:
            parts.append(f"[{request_id}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={_text_value(v)}" for k, v in fields.items())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
        return text


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return f'"{text}"' if (" " in text or not text) else text


class _GatewayHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` installs (a second call replaces it).

    With `hold` > 0, INFO and DEBUG lines written on a running event loop are held and written
    together at most `hold` seconds later (or once 64 KiB are held): one write and one flush for
    many access lines instead of one each. A WARNING or worse line, a line from a thread without a
    loop, `flush()` and `close()` write everything held at once, in order.
    """

    def __init__(self, stream: TextIO, hold: float = 0.0) -> None:
        super().__init__(stream)
        self.hold = hold
        self._held: list[str] = []
        self._held_chars = 0
        self._timer: asyncio.TimerHandle | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.hold <= 0 or record.levelno >= logging.WARNING:
            self._write_held()
            super().emit(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_held()
            super().emit(record)
            return
        try:
            text = self.format(record)
        except Exception:  # logging's own contract: report, never raise
            self.handleError(record)
            return
        self._held.append(text)
        self._held_chars += len(text)
        if self._held_chars >= _HOLD_CHARS:
            self._write_held()
        elif self._timer is None:
            self._timer = loop.call_later(self.hold, self._on_timer)

    def _on_timer(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._timer = None
            self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        text = "\n".join(self._held) + "\n"
        self._held.clear()
        self._held_chars = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed or full stream must not fail a request
            pass

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._write_held()
        super().flush()


_HOLD_CHARS = 64 * 1024


def configure_logging(fmt: LogFormat = "json", level: str = "INFO", stream: TextIO | None = None,
                      hold: float = 0.0) -> logging.Handler:
    """Send every log line through redaction to `stream` (stderr) as JSON lines or text.

    `hold`: seconds an INFO line may wait to be written together with others (see `_GatewayHandler`).
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        old.flush()
        root.removeHandler(old)
    handler = _GatewayHandler(stream if stream is not None else sys.stderr, hold)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    # No line prints a thread or process name: LogRecord need not look them up for every line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


# Access-line fields that are free text from the client; every other one is a number, a flag, a
# validated id or a label the gateway chose, and cannot carry a secret.
# (The request id is free text too, but `parsing.request_id` masks a client's id where it accepts it.)
_FREE_TEXT_FIELDS = ("path", "model", "tenant", "deployment")


# redact() of the access line's free text, memoised (a pure function): the same few paths and
# model names come back all the time; bounded, so a flood of distinct paths only costs the regexes.
_redacted_text = functools.lru_cache(maxsize=4096)(redact)


_RESERVED = _STANDARD_ATTRS | {"ts", "level", "logger"}  # extra keys that would clash with a line's own
_access_logger = logging.getLogger(ACCESS_LOGGER)


def access_log(record: Mapping[str, object]) -> None:
    """The one access line of a request: ACCESS_FIELDS always present, extra keys kept.

    Hot path (one per request): only the free-text fields go through `redact`, the record is marked
    so `RedactingFilter` does not scan it again, and no caller lookup is made (`findCaller` walks
    the stack; an access line's origin is always this function). The LogRecord is made directly
    (not through `makeRecord`, which checks every extra key again).
    """
    logger = _access_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    get = record.get
    fields: dict[str, object] = {name: get(name) for name in ACCESS_FIELDS}
    for key in [k for k in record if k not in fields]:
        value = record[key]
        plain = value is None or isinstance(value, (bool, int, float))
        fields[f"{key}_" if key in _RESERVED else key] = value if plain else redact_value(key, value)
    for key in _FREE_TEXT_FIELDS:
        value = fields[key]
        if isinstance(value, str):
            fields[key] = _redacted_text(value)
    method, path, status = fields["method"], fields["path"], fields["status"]
    message = f"{'-' if method is None else method} {'-' if path is None else path} {'-' if status is None else status}"
    logger.handle(_access_line(message, fields))


def _access_line(message: str, fields: dict[str, object]) -> logging.LogRecord:
    """A LogRecord as `LogRecord(...)` would make it, from a template: what an access line's record
    holds is the same every time but the message, the time and the fields (the constructor would
    split the source path and look at threads and processes on every line)."""
    now = time.time()
    line = logging.LogRecord.__new__(logging.LogRecord)
    attrs = line.__dict__
    attrs.update(_ACCESS_TEMPLATE)
    attrs.update(fields)
    attrs["msg"] = message
    attrs["created"] = now
    attrs["msecs"] = (now - int(now)) * 1000
    attrs["relativeCreated"] = (now - _STARTED) * 1000
    attrs["_redacted"] = True  # (attributes with "_" are never printed)
    attrs["_fields"] = fields  # the formatters take them as they are instead of sifting the record's attributes
    return line


_ACCESS_TEMPLATE = dict(logging.LogRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "", None, None).__dict__)
_ACCESS_TEMPLATE.update(thread=None, threadName=None, process=None, processName=None)
_STARTED = _ACCESS_TEMPLATE["created"] - _ACCESS_TEMPLATE["relativeCreated"] / 1000
