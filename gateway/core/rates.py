"""A rate as configured (`"100/minute"`, `"5/s"`, `{"requests": ..., "tokens": ...}`), in per-second figures."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")


class Rate(BaseModel):
    """A token-bucket rate: `count` per `period` seconds, bursting up to `burst` (default `count`)."""

    model_config = ConfigDict(frozen=True)
    count: float
    period: float
    burst: float | None = None

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else self.count

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_rate(v)
        if isinstance(v, dict) and isinstance(v.get("rate"), str):
            out = parse_rate(v["rate"])
            if v.get("burst") is not None:
                out["burst"] = v["burst"]
            return out
        return v

    def __str__(self) -> str:
        return f"{self.count:g}/{self.period:g}s"


def check_limit_names(limits: dict[str, Rate], allowed: frozenset[str]) -> dict[str, Rate]:
    """Refuse limit names the rate limiter would silently ignore."""
    unknown = sorted(set(limits) - allowed)
    if unknown:
        raise ValueError(f"unknown limit {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return limits


def parse_rate(text: str) -> dict[str, float]:
    """`600/minute`, `10/s`, `300/hour`, `5/10s` -> {count, period}."""
    m = _RATE_RE.match(text.lower())
    if not m or m.group(3) not in _PERIODS:
        raise ValueError(f"invalid rate {text!r}: write it like '600/minute', '10/s' or '5/10s'")
    count = float(m.group(1))
    if count <= 0:
        raise ValueError(f"invalid rate {text!r}: the count must be positive")
    mult = float(m.group(2)) if m.group(2) else 1.0
    return {"count": count, "period": mult * _PERIODS[m.group(3)]}
