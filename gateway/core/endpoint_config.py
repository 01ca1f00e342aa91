"""The settings only a `kind: endpoint` upstream takes: which dedicated Inference Endpoint, and how to manage it.

    my-ep:
      kind: endpoint
      name: my-production-endpoint      # the endpoint's name on HF
      namespace: acme                   # its user or organisation
      token_env: HF_TOKEN               # one token for the control plane and the endpoint's URL
      resume: true                      # resume it when paused (default false: skip it, or 503)
      wake_estimate: 5m                 # how long a wake-up is expected to take (Retry-After, parking)
      idle: {after: 30m, action: pause} # opt-in: pause (or scale_to_zero) after 30 min without traffic

Durations are seconds, or text such as `90s`, `30m`, `1.5h`. The fields are flat on `UpstreamConfig`
(as the issue of the feature wrote them); this module holds their types and the rules that tie them
to the kind, so `config.py` stays about the settings as a whole.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

HF_ENDPOINTS_API = "https://api.endpoints.huggingface.cloud"
# Names go into URL paths and store key tags ({...}): letters, digits and . _ - only.
ENDPOINT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> Any:
    """`30m` -> 1800.0; a number is seconds; anything else is left for the field's own check."""
    if isinstance(value, str):
        m = _DURATION_RE.match(value.lower())
        if not m:
            raise ValueError(f"invalid duration {value!r}: write seconds, or e.g. '90s', '30m', '1.5h'")
        return float(m.group(1)) * _UNITS[m.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


class IdleConfig(BaseModel):
    """What to do with an endpoint nobody called for `after` seconds (through any replica)."""

    model_config = ConfigDict(extra="forbid")
    after: Duration = Field(gt=0)
    action: Literal["pause", "scale_to_zero"]


# Every endpoint-only field of UpstreamConfig: refused on other kinds, so a typo'd kind fails loudly.
ENDPOINT_FIELDS = frozenset({
    "name", "namespace", "control_plane_url", "url", "engine", "resume", "wake_estimate", "idle",
    "poll_interval", "wake_poll_interval", "control_timeout",
})


def check_endpoint_fields(kind: str, fields_set: set[str], name: str | None, namespace: str | None) -> None:
    """Raise ValueError when the endpoint-only fields do not fit `kind`."""
    if kind != "endpoint":
        stray = sorted(fields_set & ENDPOINT_FIELDS)
        if stray:
            raise ValueError(f"{stray[0]!r} is only for `kind: endpoint` upstreams")
        return
    if "base_url" in fields_set:
        raise ValueError("an endpoint's URL is read from the control plane: drop base_url "
                         "(set `url` to name a URL to use until the control plane answers)")
    for field, value in (("name", name), ("namespace", namespace)):
        if not value:
            raise ValueError(f"a `kind: endpoint` upstream needs `{field}` (the endpoint's {field} on HF)")
        if not ENDPOINT_NAME_RE.fullmatch(value):
            raise ValueError(f"{field} {value!r}: use letters, digits, '.', '_' and '-' only")
