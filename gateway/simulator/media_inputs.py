"""Reading the file a binary-task request carries: the raw body, or base64 in JSON `inputs`.

huggingface_hub 2.4.0 (`HFInferenceBinaryInputTask`) sends the file as the raw body when it has
no parameters (with no `Content-Type` for bytes, or the file's type for a path or a PIL image),
and otherwise as `{"inputs": "<base64>", "parameters": {...}}`, plus root-level extras such as
VQA's `question` and `image`. Both forms are accepted on every binary task. Anything else is a
400 in the route's dialect, never a crash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from gateway.simulator.calls import SimCall, SimReject
from gateway.simulator.dialects import Style
from gateway.simulator.media import Kind, decode_base64, sniff


@dataclass(frozen=True)
class MediaInput:
    """The decoded file and its parameters (none for a raw body)."""

    data: bytes
    params: dict[str, Any] = field(default_factory=dict)


def file_digest(data: bytes) -> str:
    """The SHA-256 of a file, the seed of every answer about it."""
    return hashlib.sha256(data).hexdigest()


def invalid(call: SimCall, message: str) -> SimReject:
    """A validation rejection in the call's dialect (422 for TGI/TEI, 400 for HF)."""
    return SimReject.of(call.style, 422 if call.style in (Style.TGI, Style.TEI) else 400, message)


def decode_file(call: SimCall, value: Any, what: str) -> bytes:
    """A base64 string (or `data:` URL) as bytes, or a rejection naming `what`."""
    data = decode_base64(value) if isinstance(value, str) else None
    if not data:
        raise invalid(call, f"{what} must be a base64-encoded file")
    return data


def media_input(call: SimCall) -> MediaInput:
    """The file of a binary-task request, in either form, with its parameters."""
    if call.body is None:
        if not call.raw:
            raise invalid(call, "The request body is empty: send the file, or JSON with base64 `inputs`")
        return MediaInput(call.raw)
    body = call.require_json()
    return MediaInput(decode_file(call, body.get("inputs"), "`inputs`"), call.params())


def require_kind(call: SimCall, data: bytes, kind: Kind) -> None:
    """Reject a file that is not an image (or not audio) as the model's loader would."""
    found = sniff(data)
    if found is None or found.kind != kind:
        raise invalid(call, f"Could not read the input as {'an image' if kind == 'image' else 'audio'}: "
                            "unrecognised file format")
