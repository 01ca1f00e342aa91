"""Fallback and circuit breaking through the whole gateway: a dedicated TGI endpoint in front of serverless."""

from __future__ import annotations

from typing import Any

from gateway.simulator.fault_spec import FaultSpec
from tests.support.loop_stack import Stack, stack

GEN = {"inputs": "Hello", "parameters": {"max_new_tokens": 3}}
MODEL = "acme/chat"


def _setup(endpoint: str, **primary: Any) -> dict[str, Any]:
    return {
        "upstreams": {
            "dedicated": {"kind": "tgi", "base_url": "{sim}/endpoints/" + endpoint, **primary},
            "serverless": {"kind": "hf", "base_url": "{sim}"},
        },
        "models": [{"name": MODEL, "task": "text-generation",
                    "deployments": [{"upstream": "dedicated", "model": endpoint}, {"upstream": "serverless"}]}],
    }


def _by_route(s: Stack) -> tuple[int, int]:
    """(calls to the dedicated endpoint, calls to serverless)."""
    dedicated = sum(1 for r in s.sim.requests if r.path.startswith("/endpoints/"))
    serverless = sum(1 for r in s.sim.requests if r.path.startswith("/hf-inference/"))
    return dedicated, serverless


async def test_a_dedicated_endpoint_scaled_to_zero_hands_over_to_serverless_while_it_warms() -> None:
    async with stack(**_setup("tgi-cold-120s"), resilience={"probe_interval": 30}) as s:
        for _ in range(3):
            resp = await s.client.post(f"/models/{MODEL}", json=GEN)
            assert resp.status == 200
        assert _by_route(s) == (1, 3)  # one call found it cold; later ones skip it without a call
        status = await (await s.client.get("/status")).json()
        assert [x["deployment"] for x in status["loading"]] == ["dedicated:tgi-cold-120s"]
        await s.clock.sleep(125)
        resp = await s.client.post(f"/models/{MODEL}", json=GEN)
        assert resp.status == 200
        dedicated, serverless = _by_route(s)
        assert serverless == 3 and dedicated == 2  # warm again: the primary serves
        assert (await (await s.client.get("/status")).json())["loading"] == []


async def test_the_primarys_circuit_opens_after_n_failures_and_closes_after_it_recovers() -> None:
    primary = {"retry": {"max_attempts": 1}, "breaker_failures": 3, "breaker_cooldown": 20}
    async with stack(**_setup("tgi-main", **primary)) as s:
        s.sim.set_faults("tgi-main", [FaultSpec(kind="status", status=502)])
        for _ in range(6):
            assert (await s.client.post(f"/models/{MODEL}", json=GEN)).status == 200
        assert _by_route(s) == (3, 6)  # three failures opened it; the next three never tried it
        status = await (await s.client.get("/status")).json()
        [dep] = [d for d in status["deployments"] if d["id"] == "dedicated:tgi-main"]
        assert dep["circuit"] == "open" and dep["failures"] == 3 and dep["retry_in"] > 0

        s.sim.set_faults("tgi-main", [])  # it recovers
        await s.clock.sleep(21)
        assert (await s.client.post(f"/models/{MODEL}", json=GEN)).status == 200
        assert _by_route(s) == (4, 6)  # the half-open trial went to the primary and closed it
        status = await (await s.client.get("/status")).json()
        assert next(d for d in status["deployments"] if d["id"] == "dedicated:tgi-main")["circuit"] == "closed"
        assert status["circuits"] == []


async def test_a_validation_error_from_the_primary_is_the_answer() -> None:
    async with stack(**_setup("tgi-error-422")) as s:
        resp = await s.client.post(f"/models/{MODEL}", json=GEN)
        assert resp.status == 422
        assert (await resp.json())["error_type"] == "validation"
        assert _by_route(s) == (1, 0)
