"""Builds one `HttpUpstream` per configured upstream, with the planner of its kind."""

from __future__ import annotations

from gateway.core.call import Upstream
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.upstream.dialects import hf, openai, tei, tgi
from gateway.upstream.http import HttpUpstream
from gateway.upstream.plan import Planner

PLANNERS: dict[str, Planner] = {
    "hf": hf.plan,
    "tgi": tgi.plan,
    "tei": tei.plan,
    "openai": openai.plan,
}


def build_upstreams(settings: Settings, clock: Clock) -> dict[str, Upstream]:
    """name -> Upstream for every configured upstream."""
    return {
        name: HttpUpstream(name, cfg, PLANNERS[cfg.kind], clock, settings.resilience.retry_after_cap)
        for name, cfg in settings.upstreams.items()
    }
