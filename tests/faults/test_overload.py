"""Overload: beyond the in-flight caps (global and per tenant) the gateway answers 503 with
`Retry-After` at once, sends nothing upstream for the refused requests, keeps answering health
checks, and gives every slot back when requests finish.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from gateway.core.clock import FakeClock
from gateway.core.config import Settings
from gateway.http.middleware.auth import hash_key
from tests.support.rig import Rig, Tally, chat, eventually, fault_settings, rig

KEY_A, KEY_B = "gw-test-key-tenant-a", "gw-test-key-tenant-b"

_chat = functools.partial(chat, max_tokens=10)  # a drip stream of 10 events lasts 1 s

# idle_after 0: no cold-start probe holding the first concurrent requests of a new model back.
NO_PROBE = {"idle_after": 0}
# Held requests wait on the simulator's FakeClock (`HELD`'s 3 s pass only when the test advances it);
# the gateway's own deadlines, in real time, are far beyond what the checks take meanwhile.
HELD = "oai/chat-slow-ttfb-3s"
PATIENT = {"upstream_read_timeout": 60.0, "request_timeout": 60.0}


def _capped(sim_url: str) -> Settings:
    return fault_settings(sim_url, max_in_flight=4, resilience=NO_PROBE, **PATIENT)


def _tenants(sim_url: str) -> Settings:
    return fault_settings(
        sim_url, **PATIENT,
        keys=[{"sha256": hash_key(KEY_A), "tenant": "a"}, {"sha256": hash_key(KEY_B), "tenant": "b"}],
        tenants={"a": {"max_in_flight": 2}},
        resilience=NO_PROBE,
    )


def _check_overloaded(answer: Any, dialect: str) -> None:
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "1"
    data = answer.json()
    if dialect == "openai":
        assert data["error"]["code"] == "overloaded"
    else:
        assert "limit" in data["error"]


async def _hold(r: Rig, n: int, model: str, headers: dict[str, str] | None = None) -> list[asyncio.Task[Any]]:
    """`n` slow requests, in flight at the simulator when this returns."""
    before = r.sim.in_flight
    tasks = [asyncio.create_task(r.send("POST", "/v1/chat/completions", json=_chat(model), headers=headers,
                                        expect={200})) for _ in range(n)]
    assert await eventually(lambda: r.sim.in_flight == before + n)
    return tasks


async def test_global_cap_refuses_at_once_and_recovers(tally: Tally) -> None:
    sim_clk = FakeClock()
    async with rig(tally, _capped, sim_clock=sim_clk) as r:
        held = await _hold(r, 4, HELD)
        sent_upstream = r.sim.count()
        refused = await asyncio.gather(
            *(r.send("POST", "/v1/chat/completions", json=_chat("oai/other"), expect={503}) for _ in range(6)),
            r.send("POST", "/models/org/gen", json={"inputs": "hi"}, expect={503}),
        )
        for answer in refused[:-1]:
            _check_overloaded(answer, "openai")
        _check_overloaded(refused[-1], "hf")
        assert r.sim.in_flight == 4  # refused while the four were still running: no queueing
        assert r.sim.count() == sent_upstream  # nothing refused went upstream
        health = await r.send("GET", "/healthz", expect={200})
        assert health.status == 200
        assert r.sim.in_flight == 4 and not any(t.done() for t in held)  # still held: the checks ran inside the window
        sim_clk.advance(3)
        for answer in await asyncio.gather(*held):
            assert answer.status == 200
        again = await r.send("POST", "/v1/chat/completions", json=_chat("oai/after"), expect={200})
        assert again.status == 200
        await r.settled()


async def test_a_stream_holds_its_slot_until_its_last_event(tally: Tally) -> None:
    async with rig(tally, lambda url: fault_settings(url, max_in_flight=1)) as r:
        stream = asyncio.create_task(r.send("POST", "/v1/chat/completions", json=_chat("oai/chat-drip-100ms", True),
                                            expect={200}))
        assert await eventually(lambda: r.sim.in_flight == 1)
        busy = await r.send("POST", "/v1/chat/completions", json=_chat("oai/x"), expect={503})
        _check_overloaded(busy, "openai")
        assert (await stream).events[-1] == b"data: [DONE]"
        assert (await r.send("POST", "/v1/chat/completions", json=_chat("oai/x"), expect={200})).status == 200
        await r.settled()


async def test_tenant_cap_refuses_only_that_tenant(tally: Tally) -> None:
    sim_clk = FakeClock()
    async with rig(tally, _tenants, sim_clock=sim_clk) as r:
        a = {"Authorization": f"Bearer {KEY_A}"}
        b = {"Authorization": f"Bearer {KEY_B}"}
        held = await _hold(r, 2, HELD, a)
        refused = await r.send("POST", "/v1/chat/completions", json=_chat("oai/x"), headers=a, expect={503})
        _check_overloaded(refused, "openai")
        assert "'a'" in refused.json()["error"]["message"]
        others = await asyncio.gather(*(r.send("POST", "/v1/chat/completions", json=_chat("oai/x"), headers=b,
                                               expect={200}) for _ in range(5)))
        assert all(o.status == 200 for o in others)  # tenant b has no cap of its own
        assert not any(t.done() for t in held)  # tenant a's two were held all along
        sim_clk.advance(3)
        await asyncio.gather(*held)
        assert (await r.send("POST", "/v1/chat/completions", json=_chat("oai/x"), headers=a,
                             expect={200})).status == 200
        await r.settled()


async def test_refused_and_failed_requests_give_their_slots_back(tally: Tally) -> None:
    """Errors, client errors and abandoned requests all release their slot: the cap never leaks shut."""
    async with rig(tally, lambda url: fault_settings(url, max_in_flight=2)) as r:
        for _ in range(5):
            # 503: the circuit is open
            await r.send("POST", "/v1/chat/completions", json=_chat("oai/chat-reset-before"), expect={502, 503})
            await r.send("POST", "/v1/chat/completions", data=b"{not json", expect={400})
            await r.send("POST", "/v1/nothing-here", json={}, expect={404})
        results = await asyncio.gather(
            *(r.send("POST", "/v1/chat/completions", json=_chat("oai/ok"), expect={200}) for _ in range(2))
        )
        assert [a.status for a in results] == [200, 200]
        await r.settled()
