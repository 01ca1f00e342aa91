"""What `hf-gateway serve` says at start, as an operator runs it."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.processes import Processes, free_port, gateway_env, wait_healthy

SET_VALUE = "sk-fake-set-token-value"


def test_an_unset_credential_variable_is_named_once_at_start(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"upstreams": {
        "hf": {"kind": "hf"},
        "hf-eu": {"kind": "hf", "base_url": "https://eu.example.invalid"},
        "oai": {"kind": "openai", "base_url": "https://oai.example.invalid/v1", "token_env": "START_TEST_OAI_TOKEN"},
        "local": {"kind": "tgi", "base_url": "http://127.0.0.1:9", "token_env": None},
    }}), encoding="utf-8")
    env = gateway_env({"START_TEST_OAI_TOKEN": SET_VALUE})
    env.pop("HF_TOKEN")
    port = free_port()
    with Processes(tmp_path) as procs:
        child = procs.gateway("gateway", "serve", "--config", str(config), "--port", str(port), "--workers", "2",
                              env=env)
        wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
        procs.stop()
        log = child.log.read_text()
    warnings = [line for line in log.splitlines() if "is not set" in line]
    assert len(warnings) == 1, log  # once, from the supervisor, not once per worker
    assert "HF_TOKEN" in warnings[0] and "hf, hf-eu" in warnings[0]
    assert "START_TEST_OAI_TOKEN" not in log and SET_VALUE not in log
