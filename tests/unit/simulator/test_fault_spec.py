"""The fault naming convention, `FaultSpec` validation and the simulator's YAML config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.simulator.config import FaultSpec, SimConfig, load_sim_config
from gateway.simulator.fault_spec import DEFAULT_HUGE_BODY, parse_fault_list, parse_fault_names


def _dump(name: str) -> list[dict[str, object]]:
    return [f.model_dump(exclude_defaults=True) for f in parse_fault_names(name)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sim/gpt2-cold-20s", [{"kind": "cold", "seconds": 20.0}]),
        ("cold-1.5m", [{"kind": "cold", "seconds": 90.0}]),
        ("cold-250ms-list", [{"kind": "cold", "seconds": 0.25, "list_form": True}]),
        ("m/429x3-ra2", [{"kind": "status", "status": 429, "times": 3, "retry_after": 2.0}]),
        ("m/429x3-ra300ms", [{"kind": "status", "status": 429, "times": 3, "retry_after_ms": 300}]),
        ("x_500x2", [{"kind": "status", "status": 500, "times": 2}]),
        ("x+503xall", [{"kind": "status", "status": 503}]),
        ("tgi-error-424-x2", [{"kind": "tgi-error", "status": 424, "times": 2}]),
        ("reset-before", [{"kind": "reset-before"}]),
        ("a/reset-after-headers-x1", [{"kind": "reset-after-headers", "times": 1}]),
        ("slow-ttfb-500ms", [{"kind": "slow-ttfb", "seconds": 0.5}]),
        ("drip-2s-x4", [{"kind": "drip", "seconds": 2.0, "times": 4}]),
        ("midstream-k3", [{"kind": "midstream", "after_events": 3}]),
        ("cut-k0", [{"kind": "cut", "after_events": 0}]),
        ("truncated-json", [{"kind": "truncated-json"}]),
        ("wrong-content-type", [{"kind": "wrong-content-type"}]),
        ("garbage", [{"kind": "garbage"}]),
        ("endless-stream", [{"kind": "endless-stream"}]),
        ("huge-body", [{"kind": "huge-body", "size": DEFAULT_HUGE_BODY}]),
        ("huge-body-16kb", [{"kind": "huge-body", "size": 16 * 1024}]),
        ("auth", [{"kind": "auth"}]),
        ("limit-10ps", [{"kind": "limit", "limit": 10}]),
        ("limit-5pm", [{"kind": "limit", "limit": 5, "window": 60.0}]),
    ],
)
def test_each_token_parses_to_its_spec(name: str, expected: list[dict[str, object]]) -> None:
    assert _dump(name) == expected


def test_tokens_combine_in_order_of_appearance() -> None:
    kinds = [f.kind for f in parse_fault_names("sim/tgi-auth+cold-5s+503x2+drip-10ms:novita")]
    assert kinds == ["auth", "cold", "status", "drip"]


@pytest.mark.parametrize(
    "name",
    [
        "meta-llama/Llama-3.1-8B-Instruct",
        "dslim/bert-base-NER",
        "author/garbageman",  # tokens must end at a separator
        "coldstart-20s",  # and start at one
        "BAAI/bge-small-en-v1.5",
        "my429x3",
    ],
)
def test_real_looking_names_carry_no_faults(name: str) -> None:
    assert parse_fault_names(name) == []


def test_matching_is_case_insensitive() -> None:
    assert _dump("Org/Model-COLD-20S") == [{"kind": "cold", "seconds": 20.0}]


def test_specs_validate_their_required_fields() -> None:
    with pytest.raises(ValidationError):
        FaultSpec(kind="cold")
    with pytest.raises(ValidationError):
        FaultSpec(kind="status")
    with pytest.raises(ValidationError):
        FaultSpec(kind="status", status=200)
    with pytest.raises(ValidationError):
        FaultSpec.model_validate({"kind": "drip", "seconds": 1, "bogus": 1})
    assert FaultSpec(kind="tgi-error").status == 422


def test_fault_lists_accept_tokens_dicts_and_specs() -> None:
    faults = parse_fault_list(["cold-2s+500x1", {"kind": "drip", "seconds": 0.1}, FaultSpec(kind="garbage")])
    assert [f.kind for f in faults] == ["cold", "status", "drip", "garbage"]
    with pytest.raises(ValueError, match="no fault token"):
        parse_fault_list(["nothing-here"])


def test_yaml_config_loads_models_tasks_and_fault_scripts(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text(
        "token: hf_fake_test_token\n"
        "embedding_dim: 4\n"
        "models:\n"
        "  acme/embedder: {task: feature-extraction, dim: 16}\n"
        "  acme/flaky: {faults: 'cold-20s+429x3-ra2'}\n"
        "  my-tgi:\n"
        "    faults:\n"
        "      - {kind: status, status: 503, times: 2}\n"
        "      - drip-50ms\n"
        "  quiet-cold-20s: {faults: []}\n",
        encoding="utf-8",
    )
    config = load_sim_config(path)
    assert config.token is not None and config.token.get_secret_value() == "hf_fake_test_token"
    assert "hf_fake_test_token" not in repr(config)
    assert config.embedding_dim == 4
    assert config.models["acme/embedder"].task == "feature-extraction"
    assert [f.kind for f in config.models["acme/flaky"].faults or []] == ["cold", "status"]
    assert [f.kind for f in config.models["my-tgi"].faults or []] == ["status", "drip"]
    assert config.models["quiet-cold-20s"].faults == []


def test_config_rejects_unknown_keys_and_tasks(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        SimConfig.model_validate({"models": {"m": {"task": "speech-to-dance"}}})
    with pytest.raises(ValidationError):
        SimConfig.model_validate({"modles": {}})
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_sim_config(empty) == SimConfig()
    assert load_sim_config(None) == SimConfig()
