"""`hf-gateway endpoints` as an operator runs it: the console script against a simulator process playing HF's
control plane, with the token in the environment only."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import Processes, gateway_command, gateway_env, start_simulator

TOKEN_ENV, TOKEN = "GW_CLI_ENDPOINT_TOKEN", "hf_fake_acme_write"
SIM = {"control_plane": {
    "namespaces": {"acme": {"tokens": [{"token": TOKEN}]}},
    "endpoints": {"acme-chat": {"namespace": "acme", "state": "paused", "image": "vllm"},
                  "acme-embed": {"namespace": "acme", "state": "running", "image": "tei"}}}}


def config(directory: Path, control: str) -> Path:
    def ep(name: str, **extra: Any) -> dict[str, Any]:
        return {"kind": "endpoint", "name": name, "namespace": "acme", "token_env": TOKEN_ENV,
                "control_plane_url": control, **extra}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump({"upstreams": {
        "chat": ep("acme-chat", idle={"after": "30m", "action": "pause"}), "embed": ep("acme-embed"),
        "ghost": ep("acme-ghost")}}), encoding="utf-8")
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(gateway_command("endpoints", *args), env=gateway_env({TOKEN_ENV: TOKEN}),
                          capture_output=True, text=True, timeout=30)


def sim_counters(sim_url: str, name: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{sim_url}/_sim/endpoints/{name}") as resp:
        return dict(json.loads(resp.read())["counters"])


def test_list_shows_every_configured_endpoint_with_its_live_state(processes: Processes, tmp_path: Path) -> None:
    _, sim = start_simulator(processes, config=SIM)
    listed = run("list", "--config", str(config(tmp_path, sim)))
    lines = listed.stdout.splitlines()
    assert listed.returncode == 1  # the ghost endpoint cannot be read
    assert lines[0].split()[:3] == ["UPSTREAM", "ENDPOINT", "STATE"]
    chat = next(line for line in lines if line.startswith("chat "))
    assert "acme/acme-chat" in chat and "paused" in chat and "vllm (openai)" in chat and "pause after 1800s" in chat
    embed = next(line for line in lines if line.startswith("embed "))
    assert "running" in embed and f"{sim}/endpoints/acme-embed" in embed
    assert "not_found" in next(line for line in lines if line.startswith("ghost "))
    assert TOKEN not in listed.stdout + listed.stderr


def test_resume_and_pause_act_once_on_the_named_endpoint(processes: Processes, tmp_path: Path) -> None:
    _, sim = start_simulator(processes, config=SIM)
    path = str(config(tmp_path, sim))
    resumed = run("resume", "chat", "--config", path)
    assert resumed.returncode == 0 and resumed.stdout.strip() == "chat (acme/acme-chat): pending"
    again = run("resume", "embed", "--config", path)
    assert again.returncode == 0 and "already running" in again.stdout
    paused = run("--config", path, "pause", "embed")
    assert paused.returncode == 0 and paused.stdout.strip() == "embed (acme/acme-embed): paused"
    assert sim_counters(sim, "acme-chat")["resume_calls"] == 1
    assert sim_counters(sim, "acme-embed")["pause_calls"] == 1
    unknown = run("pause", "nope", "--config", path)
    assert unknown.returncode == 2 and "not a configured endpoint" in unknown.stderr


def test_a_refused_token_is_a_clear_failure(processes: Processes, tmp_path: Path) -> None:
    _, sim = start_simulator(processes, config=SIM)
    result = subprocess.run(gateway_command("endpoints", "pause", "chat", "--config", str(config(tmp_path, sim))),
                            env=gateway_env({TOKEN_ENV: "hf_fake_wrong_token"}), capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 1 and "unauthorized" in result.stderr
    assert "hf_fake_wrong_token" not in result.stdout + result.stderr
