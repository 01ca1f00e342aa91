"""Builds one upstream per configured upstream: an `HttpUpstream` with the planner of its kind, or, for
`kind: endpoint`, an `EndpointUpstream` whose URL and dialect the control plane will tell."""

from __future__ import annotations

from gateway.core.call import Upstream
from gateway.core.clock import Clock
from gateway.core.config import Settings
from gateway.upstream.dialects import hf, openai, tei, tgi
from gateway.upstream.endpoints.upstream import EndpointUpstream
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
    cap = settings.resilience.retry_after_cap
    out: dict[str, Upstream] = {}
    for name, cfg in settings.upstreams.items():
        if cfg.kind == "endpoint":
            out[name] = EndpointUpstream(name, cfg, clock, cap)
        else:
            out[name] = HttpUpstream(name, cfg, PLANNERS[cfg.kind], clock, cap)
    return out
