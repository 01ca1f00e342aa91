"""Model ids: which ones may travel in a request body, and which may become part of an upstream URL path.

Two rules, because the risk differs:
- a **path id** ends up in an upstream URL (`{base}/hf-inference/models/{id}`, a client's
  `/models/{id}` route): it must look like `org/name` or `name`, with an optional `:provider`,
  no `..`, no scheme, no `%`, `?`, `#`, `\\`, whitespace or control characters, so no id can
  reach another path or host;
- a **body id** only travels inside a JSON body (OpenAI-compatible upstreams, the HF router's
  `/v1/chat/completions`): any visible ASCII string up to `MAX_BODY_ID` characters, so ids of other
  backends pass (`accounts/fireworks/models/llama-v3p1-8b-instruct`,
  `nomic-ai/nomic-embed-text-v1.5/GGUF`, `llama3.1:8b-instruct-q4_K_M`).

The dialect that builds an upstream URL from an id checks it as a path id itself
(`upstream/dialects/hf.py`), so a body id that is routed to such an upstream is refused there with
a 400, before anything is sent.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.core.errors import BadRequest

_PATH_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._\-+@]*(/[A-Za-z0-9_][A-Za-z0-9._\-+@]*)?(:[A-Za-z0-9._\-]+)?$")
MAX_PATH_ID = 200
MAX_BODY_ID = 256


def is_path_id(name: str) -> bool:
    """Whether `name` may be placed in an upstream URL path."""
    return len(name) <= MAX_PATH_ID and ".." not in name and _PATH_ID.match(name) is not None


def check_path_id(name: Any, where: str = "model") -> str:
    """A model id that may become part of a URL path, or BadRequest."""
    if not isinstance(name, str) or not name:
        raise BadRequest(f"`{where}` must be a non-empty string")
    if not is_path_id(name):
        raise BadRequest(f"`{where}` {name[:80]!r} is not a valid model id (expected 'org/name' or 'name[:provider]')")
    return name


def check_body_id(name: Any, where: str = "model") -> str:
    """A model id that only travels in a body: visible ASCII, bounded; or BadRequest."""
    if not isinstance(name, str) or not name:
        raise BadRequest(f"`{where}` must be a non-empty string")
    if len(name) > MAX_BODY_ID or not all("!" <= ch <= "~" for ch in name):
        raise BadRequest(f"`{where}` {name[:80]!r} is not a valid model id "
                         f"(visible ASCII characters, no spaces, at most {MAX_BODY_ID})")
    return name


# HF router ids may end in `:<provider>` or `:<policy>` (docs/hf-router.md, 'How the client picks a provider').
HF_INFERENCE = "hf-inference"
POLICIES = frozenset({"fastest", "cheapest", "preferred"})


def split_provider(model: str) -> tuple[str, str | None]:
    """`org/name:novita` -> (`org/name`, `novita`); an id without a suffix -> (id, None)."""
    name, sep, suffix = model.partition(":")
    return (name, suffix) if sep and suffix else (name, None)


def other_provider(suffix: str | None) -> bool:
    """Whether a suffix asks for something other than hf-inference: another provider, or a router policy."""
    return suffix is not None and suffix != HF_INFERENCE
