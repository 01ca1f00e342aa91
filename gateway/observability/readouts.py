"""Scrape-time read-outs: live policy state (circuits, loading models, outbound queues) copied into gauges.

Nothing here runs per request. `watch_policies(...)` registers one refresher with `Metrics`; it
runs when `/metrics` is rendered (and, with several workers, every few seconds in each worker,
see `gateway/http/app.py`).

- `gateway_circuit_state{deployment}`: every configured deployment starts closed (0); a circuit is
  kept per target (upstream, model), so the gauge shows the worst circuit behind each deployment
  label. A target whose `upstream:model` is not a configured deployment counts under its
  upstream's name when that is a deployment (a route that forwards the asked-for name), else
  under "other".
- `gateway_models_loading`: the targets this process currently believes are loading.
- `gateway_outbound_queue_depth{deployment}`: calls waiting for an outbound slot, per upstream.
- `gateway_endpoint_state{endpoint, state}`: the state of each managed endpoint as this replica knows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.observability.catalogue import CIRCUIT_VALUES, CircuitState
from gateway.observability.metrics import Metrics
from gateway.policies.endpoints.fleet import EndpointFleet
from gateway.policies.limits.shaping import ShapingStage
from gateway.policies.resilience.breaker import Breakers
from gateway.policies.resilience.loading import LoadingBoard


def watch_policies(
    metrics: Metrics,
    *,
    deployments: Iterable[str],
    paced: Iterable[str],
    breakers: Breakers | None,
    board: LoadingBoard | None,
    shaping: ShapingStage | None,
    endpoints: EndpointFleet | None = None,
) -> None:
    """Register the read-outs of the policy state this app has (`paced`: the upstreams with a budget)."""
    deployments = sorted(deployments)
    # Every paced upstream has a queue, empty until a call waits in it.
    shown = set(paced)
    for upstream in shown:
        metrics.set_outbound_queue_depth(upstream, 0)
    circuits: set[str] = set()

    def read() -> None:
        worst = worst_circuits(metrics, deployments, breakers)
        for label in circuits - worst.keys():
            metrics.set_circuit_state(label, "closed")  # its circuit was forgotten: closed again
        for label, state in worst.items():
            metrics.set_circuit_state(label, state)
        circuits.update(worst)
        if board is not None:
            metrics.set_models_loading(board.seen_loading())
        if shaping is not None:
            depths = dict(shaping.waiting)
            for upstream in shown - depths.keys():
                metrics.set_outbound_queue_depth(upstream, 0)  # drained since the last read
            for upstream, depth in depths.items():
                metrics.set_outbound_queue_depth(upstream, depth)
            shown.update(depths)
        if endpoints is not None:
            for endpoint, endpoint_state in endpoints.states().items():
                metrics.set_endpoint_state(endpoint, endpoint_state)

    metrics.add_refresher(read)


def circuit_label(metrics: Metrics, upstream: str, target_label: str) -> str:
    """The deployment label a circuit of (upstream, model) counts under."""
    label = metrics.deployment_label(target_label)
    return label if label != "other" else metrics.deployment_label(upstream)


def worst_circuits(metrics: Metrics, deployments: Iterable[str], breakers: Breakers | None) -> dict[str, CircuitState]:
    """Deployment label -> the worst state of the circuits behind it (closed when there are none)."""
    worst: dict[str, CircuitState] = {metrics.deployment_label(d): "closed" for d in deployments}
    if breakers is None:
        return worst
    for circuit in breakers.states():
        label = circuit_label(metrics, circuit["upstream"], circuit["deployment"])
        state: CircuitState = circuit["state"]
        if CIRCUIT_VALUES[state] > CIRCUIT_VALUES[worst.get(label, "closed")]:
            worst[label] = state
    return worst
