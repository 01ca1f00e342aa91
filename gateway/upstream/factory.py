"""Builds one `HttpUpstream` per configured upstream, with the planner of its kind."""

from __future__ import annotations

from ..clock import Clock
from ..config import Settings
from . import hf_serverless, openai_compat, tei, tgi
from .base import Planner, Upstream
from .http import HttpUpstream

PLANNERS: dict[str, Planner] = {
    "hf": hf_serverless.plan,
    "tgi": tgi.plan,
    "tei": tei.plan,
    "openai": openai_compat.plan,
}


def build_upstreams(settings: Settings, clock: Clock) -> dict[str, Upstream]:
    """name -> Upstream for every configured upstream."""
    return {
        name: HttpUpstream(name, cfg, PLANNERS[cfg.kind], clock, settings.resilience.retry_after_cap)
        for name, cfg in settings.upstreams.items()
    }
