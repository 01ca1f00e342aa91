"""`GET /status`: what the resilience policies know right now, as JSON.

    {"status": "ok" | "degraded",
     "store": "memory" | "redis",
     "redis":       {"main" | "cache": {"state": "ok" | "failing" | "down",
                                        "problems": [{"cause", "detail", "seconds_ago"}]}},
     "deployments": [{"id", "upstream", "kind", "model", "routes", "circuit", "failures", "retry_in"}],
     "circuits":    [{"deployment", "upstream", "model", "state", "failures", "retry_in"}],
     "loading":     [{"deployment", "upstream", "model", "estimated_time_left", "loading_for",
                      "next_probe_in", "stale"}],
     "endpoints":   [{"upstream", "endpoint", "state", "ready", "url", "engine", "dialect", "task",
                      "message", "since", "for_seconds", "checked_at", "wake_ups", "last_time_to_ready",
                      "resume", "wake_estimate", "idle", "in_flight", "control_plane": {"ok", "error", "since"}}]}

`deployments` lists every configured deployment; one that forwards the client's model name (the
`*` route) has one circuit per model, listed under `circuits` (every circuit that has failures or
is not closed). `redis` shows each Redis store's breaker and the failure causes seen in the last
seconds (store/health.py), by name (NOPERM, OOM, MOVED...). Circuits are this process's own (each
replica learns on its own); `loading` is shared through the store, for the models this replica has
seen loading. `endpoints` lists each managed dedicated endpoint as the fleet's shared record has it
(wake-ups are the fleet's). Nothing here is secret: no credential; the only URLs are the endpoints'
own (HF protects them with a token). The status is "degraded" while a model loads, a circuit is not
closed, a Redis store is failing, an endpoint is failed, or an endpoint's control plane cannot be read.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.http.appkeys import BREAKERS, ENDPOINTS, LOADING, READINESS, ROUTER, STORE
from gateway.policies.resilience.breaker import CLOSED
from gateway.policies.resilience.target import Target


async def status(request: web.Request) -> web.Response:
    """The resilience read-out."""
    app = request.app
    breakers = app[BREAKERS]
    circuits = breakers.states()
    loading = await app[LOADING].snapshot()
    deployments: dict[str, dict[str, Any]] = {}
    for route in app[ROUTER].routes:
        for dep in route.deployments:
            entry = deployments.get(dep.id)
            if entry is None:
                entry = deployments[dep.id] = {
                    "id": dep.id, "upstream": dep.upstream.name, "kind": dep.upstream.kind, "model": dep.model,
                    "routes": [], "circuit": CLOSED, "failures": 0, "retry_in": 0.0,
                }
                if dep.model is not None:
                    target = Target(dep.upstream.name, dep.model)
                    entry["circuit"] = breakers.state(target)
                    entry["retry_in"] = round(breakers.retry_in(target), 3)
                    entry["failures"] = next((c["failures"] for c in circuits if c["deployment"] == target.label), 0)
                else:
                    entry["circuit"] = "per_model"
            entry["routes"].append(route.label)
    endpoints = await app[ENDPOINTS].snapshot()
    redis = app[READINESS].stores()
    degraded = (bool(loading) or any(c["state"] != CLOSED for c in circuits)
                or any(s["state"] != "ok" for s in redis.values())
                or any(e["state"] in ("failed", "updateFailed") or not e["control_plane"]["ok"] for e in endpoints))
    body = {
        "status": "degraded" if degraded else "ok",
        "store": app[STORE].kind,
        "redis": redis,
        "deployments": list(deployments.values()),
        "circuits": circuits,
        "loading": loading,
        "endpoints": endpoints,
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def add_status_route(app: web.Application) -> None:
    app.router.add_get("/status", status)
