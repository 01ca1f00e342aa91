"""A coalescing leader's failure, stored for its followers, and rebuilt as a fresh error for each of them."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import GatewayError
from gateway.policies.cache.entry import Envelope, pack


def encode_error(err: GatewayError, token: str, compress_over: int) -> bytes:
    """A leader's error, for its followers (class, message, JSON-safe attributes, upstream body)."""
    attrs: dict[str, Any] = {"status": err.status}
    body = getattr(err, "body", None)
    has_body = isinstance(body, bytes)
    for name, value in vars(err).items():
        if name == "body":
            continue
        try:
            orjson.dumps(value)
        except TypeError:
            continue
        attrs[name] = value
    cls = type(err)
    meta = {"k": "error", "tok": token, "cls": f"{cls.__module__}.{cls.__qualname__}", "msg": err.message,
            "a": attrs, "b": has_body}
    return pack(meta, body if isinstance(body, bytes) else b"", compress_over)


def rebuild_error(env: Envelope) -> GatewayError:
    """A fresh error of the recorded class (a GatewayError subclass; GatewayError when unknown)."""
    meta, body = env.meta, env.body
    cls = _error_classes().get(str(meta.get("cls")), GatewayError)
    err = cls.__new__(cls)
    Exception.__init__(err, str(meta.get("msg", "")))
    err.message = str(meta.get("msg", ""))
    err.headers = {}
    err.retry_after = None
    attrs = meta.get("a")
    if isinstance(attrs, dict):
        err.__dict__.update(attrs)
    if meta.get("b"):
        err.__dict__["body"] = body
    return err


def _error_classes() -> dict[str, type[GatewayError]]:
    found: dict[str, type[GatewayError]] = {}
    todo: list[type[GatewayError]] = [GatewayError]
    while todo:
        cls = todo.pop()
        found[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return found
