"""The control plane's held requests and reset, and the token rules, on a FakeClock that only moves when told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.core.clock import FakeClock
from gateway.simulator.config import SimConfig, load_sim_config
from gateway.simulator.endpoints_auth import TokenBook
from gateway.simulator.endpoints_config import ControlPlaneSpec, EndpointSpec
from gateway.simulator.endpoints_plane import ControlPlane
from gateway.simulator.endpoints_state import Admit

WRITE, READ, OTHER = "hf_fake_write_token", "hf_fake_read_token", "hf_fake_other_token"


def plane(clock: FakeClock, **spec: object) -> ControlPlane:
    endpoint = {"namespace": "acme", "state": "scaledToZero", "scale_up_delay": 30.0, **spec}
    return ControlPlane(ControlPlaneSpec.model_validate({"endpoints": {"ep": endpoint}}), clock)


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until `predicate()` holds (bounded, no clock involved)."""
    for _ in range(100):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_a_held_request_is_released_the_instant_the_scale_up_ends() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None and m.admit(clock.monotonic()) is Admit.STARTING
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    held = asyncio.ensure_future(cp.hold(m, 60, gone))
    await until(lambda: clock.sleepers == 1)
    clock.advance(29)
    await until(lambda: clock.sleepers == 1)
    assert not held.done()
    clock.advance(1)
    assert await held is True and m.state == "running"


async def test_a_held_request_gives_up_at_its_timeout() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None
    m.admit(clock.monotonic())
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    held = asyncio.ensure_future(cp.hold(m, 10, gone))
    await until(lambda: clock.sleepers == 1)
    clock.advance(10)
    assert await held is False and m.state == "initializing"


async def test_a_control_action_wakes_held_requests_at_once() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None
    m.admit(clock.monotonic())
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    first = asyncio.ensure_future(cp.hold(m, 60, gone))
    second = asyncio.ensure_future(cp.hold(m, 60, gone))
    await until(lambda: clock.sleepers == 2)
    m.force("running", clock.monotonic())
    cp.changed()
    assert await first is True and await second is True
    await until(lambda: clock.sleepers == 0)  # the abandoned sleeps were cancelled


async def test_pausing_during_a_hold_ends_it_unserved() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None
    m.admit(clock.monotonic())
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    held = asyncio.ensure_future(cp.hold(m, 60, gone))
    await until(lambda: clock.sleepers == 1)
    m.pause(clock.monotonic())
    cp.changed()
    assert await held is False


async def test_a_client_leaving_ends_the_hold() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None
    m.admit(clock.monotonic())
    gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    held = asyncio.ensure_future(cp.hold(m, 60, gone))
    await until(lambda: clock.sleepers == 1)
    gone.set_result(None)
    assert await held is False


def test_reset_restores_configured_states_and_zero_counters() -> None:
    clock = FakeClock()
    cp = plane(clock)
    m = cp.get("ep")
    assert m is not None
    m.admit(clock.monotonic())
    cp.reset()
    fresh = cp.get("ep")
    assert fresh is not None and fresh.state == "scaledToZero" and fresh.counters.wake_ups == 0
    assert cp.snapshot()["ep"]["counters"]["wake_ups"] == 0


def book() -> TokenBook:
    return TokenBook(ControlPlaneSpec.model_validate({
        "namespaces": {
            "acme": {"tokens": [{"token": WRITE}, {"token": READ, "read_only": True}]},
            "other": {"tokens": [{"token": OTHER}]},
        },
    }))


@pytest.mark.parametrize(("header", "write", "status"), [
    (None, False, 401),
    ("Basic abc", False, 401),
    ("Bearer ", False, 401),
    ("Bearer hf_fake_unknown", False, 401),
    (f"Bearer {OTHER}", False, 403),
    (f"Bearer {READ}", True, 403),
    (f"Bearer {READ}", False, None),
    (f"bearer {WRITE}", True, None),
])
def test_control_plane_token_rules(header: str | None, write: bool, status: int | None) -> None:
    denial = book().control("acme", header, write=write)
    assert (denial.status if denial else None) == status


def test_a_namespace_without_tokens_takes_any_bearer_token() -> None:
    assert book().control("free", "Bearer anything", write=True) is None
    assert book().control("free", None, write=False) is not None


@pytest.mark.parametrize(("kind", "header", "status"), [
    ("public", None, None),
    ("authenticated", None, 401),
    ("authenticated", f"Bearer {OTHER}", None),
    ("protected", f"Bearer {READ}", None),
    ("protected", f"Bearer {OTHER}", 403),
    ("private", "Bearer hf_fake_unknown", 401),
])
def test_data_plane_token_rules(kind: str, header: str | None, status: int | None) -> None:
    spec = EndpointSpec.model_validate({"namespace": "acme", "type": kind})
    denial = book().data(spec, header)
    assert (denial.status if denial else None) == status


def test_config_gives_an_endpoint_its_task_and_validates_names_and_replicas() -> None:
    config = SimConfig.model_validate({"control_plane": {"endpoints": {
        "emb": {"image": "tei"}, "chat": {"image": "vllm"}, "odd": {"task": "text-ranking"},
    }}})
    assert config.models["emb"].task == "feature-extraction"
    assert config.models["chat"].task == "text-generation"
    assert "odd" not in config.models  # a task the simulator does not render keeps the old detection
    with pytest.raises(ValidationError):
        ControlPlaneSpec.model_validate({"endpoints": {"a/b": {}}})
    with pytest.raises(ValidationError):
        EndpointSpec.model_validate({"min_replica": 2, "max_replica": 1})
    with pytest.raises(ValidationError):
        EndpointSpec.model_validate({"state": "sleeping"})


def test_the_yaml_section_loads_with_secret_tokens(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "control_plane:\n"
        "  namespaces: {acme: {tokens: [{token: hf_fake_yaml_token, read_only: true}]}}\n"
        "  endpoints:\n"
        "    acme-chat: {namespace: acme, state: scaledToZero, image: vllm, scale_to_zero_timeout: null}\n",
        encoding="utf-8",
    )
    config = load_sim_config(path)
    endpoint = config.control_plane.endpoints["acme-chat"]
    assert endpoint.state == "scaledToZero" and endpoint.scale_to_zero_timeout is None
    assert "hf_fake_yaml_token" not in repr(config.control_plane)  # tokens are SecretStr
    assert TokenBook(config.control_plane).control("acme", "Bearer hf_fake_yaml_token", write=True) is not None
