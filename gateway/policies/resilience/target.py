"""What a call is aimed at: one (upstream, model) pair, the unit of loading state and of circuit breaking.

A deployment with a fixed model (`tgi:org/model`) is one target. A deployment that forwards the
name the client asked for (the `*` route on the HF router) serves many models; each of them is its
own target, so one broken or loading model never blocks the others behind the same upstream.

Handing a request from one deployment to another is a conversation between the fallback, cold-start
and retry stages; it travels in `call.resilience.handoff` (True: another deployment can still take the
request, so do not park and do not wait long here).
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.core.call import Call, Deployment


class Target(NamedTuple):
    """An upstream and the model name sent to it."""

    upstream: str
    model: str

    @property
    def label(self) -> str:
        """`upstream:model`, the form /status and logs show."""
        return f"{self.upstream}:{self.model}"


def deployment_of(call: Call) -> Deployment:
    """The deployment the terminal will call (the fallback stage sets `call.target`)."""
    return call.target or call.route.deployments[0]


def target_of(dep: Deployment, requested: str) -> Target:
    """The target `dep` becomes for a request that asked for `requested`."""
    return Target(dep.upstream.name, dep.target_model(requested))


def can_hand_off(call: Call) -> bool:
    """Whether another deployment can still take this call."""
    return call.resilience.handoff
