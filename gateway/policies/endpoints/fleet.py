"""`EndpointFleet`: every managed endpoint of this app (one `EndpointWatch` and `Poller` each), and their tasks.

Built once by `create_app` from the `kind: endpoint` upstreams; started and stopped with the app. The
endpoint stage, /status, the metrics read-outs and the CLI reach the endpoints through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from gateway.core.call import Deployment, Upstream
from gateway.core.clock import Clock
from gateway.core.routing import Router
from gateway.policies.endpoints.events import EndpointEvents
from gateway.policies.endpoints.poller import Poller, listen
from gateway.policies.endpoints.shared import EndpointBoard
from gateway.policies.endpoints.watch import EndpointWatch
from gateway.policies.resilience.loading import LoadingBoard
from gateway.policies.resilience.target import Target, target_of
from gateway.store.protocol import Store
from gateway.upstream.egress import Egress
from gateway.upstream.endpoints.control import ControlPlaneClient
from gateway.upstream.endpoints.upstream import EndpointUpstream


class EndpointFleet:
    """The managed endpoints, by upstream name."""

    def __init__(self, watches: Iterable[EndpointWatch], clock: Clock) -> None:
        self.watches = {w.name: w for w in watches}
        self.pollers = {name: Poller(w, clock) for name, w in self.watches.items()}
        self._tasks: list[asyncio.Task[None]] = []

    def __bool__(self) -> bool:
        return bool(self.watches)

    def get(self, upstream: str) -> EndpointWatch | None:
        """The watch of the endpoint behind upstream `upstream`, if it is one."""
        return self.watches.get(upstream)

    async def start(self) -> None:
        """One poll loop per endpoint (and, with a shared store, one notification listener)."""
        loop = asyncio.get_running_loop()
        for name, poller in self.pollers.items():
            self._tasks.append(loop.create_task(poller.run(), name=f"endpoint-poll-{name}"))
            watch = self.watches[name]
            if watch.board.store.kind != "memory":  # in one process a kick is a direct call
                self._tasks.append(loop.create_task(listen(watch), name=f"endpoint-listen-{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for watch in self.watches.values():
            await watch.client.close()

    async def snapshot(self) -> list[dict[str, Any]]:
        """Every endpoint, for /status."""
        return [await w.snapshot() for w in self.watches.values()]

    def states(self) -> dict[str, str]:
        """upstream name -> the endpoint's state as this replica knows it (for the state gauge)."""
        return {name: w.record.state for name, w in self.watches.items()}


def build_fleet(upstreams: dict[str, Upstream], router: Router, store: Store, prefix: str, clock: Clock,
                loading: LoadingBoard, events: EndpointEvents) -> EndpointFleet:
    """A watch for every `kind: endpoint` upstream, with the cold-start targets its routes make."""
    watches = []
    for up in upstreams.values():
        if not isinstance(up, EndpointUpstream):
            continue
        cfg = up.config
        token = cfg.token.get_secret_value().strip() if cfg.token else None
        client = ControlPlaneClient(cfg.control_plane_url, token, timeout=cfg.control_timeout,
                                    egress=Egress.of(cfg))
        targets = {_target(route_dep) for route in router.routes for route_dep in route.deployments
                   if route_dep.upstream is up}
        board = EndpointBoard(store, prefix, up.label)
        watches.append(EndpointWatch(up, client, board, loading, targets, clock, events))
    return EndpointFleet(watches, clock)


def _target(dep: Deployment) -> Target:
    # A deployment on an endpoint targets the same model whatever was asked (Deployment.target_model).
    return target_of(dep, "")
