"""The compose stack, the Dockerfile and the Prometheus configs fit the repository they ship with.

No Docker engine runs here, so this checks what a reader of the files can check: every mounted
or copied file exists, the services point at each other by the right names and ports, the
commands exist in the CLI, and the tools that can validate offline (`docker compose config`,
`promtool check config`) agree where they are installed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.core.config import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS_CONFIGS = [REPO / "config" / "prometheus.yml", REPO / "config" / "prometheus.local.yml"]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def default_of(value: str) -> str:
    """`${VAR-default}` / `${VAR:-default}` -> default, as compose resolves it with VAR unset."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


def test_the_stack_has_its_services_and_the_simulator_only_under_demo() -> None:
    svc = services()
    assert set(svc) == {"gateway", "redis", "prometheus", "grafana", "simulator"}
    assert svc["simulator"]["profiles"] == ["demo"]
    assert all("profiles" not in s for name, s in svc.items() if name != "simulator")
    assert svc["simulator"]["command"] == ["hf-gateway", "simulate", "--port", "9000", "--host", "0.0.0.0"]


def test_every_bind_mount_exists_in_the_repository() -> None:
    mounts = [(name, v) for name, s in services().items() for v in s.get("volumes", [])]
    assert mounts, "the stack mounts its configs"
    for name, volume in mounts:
        source, target = volume.split(":")[:2]
        assert source.startswith("./"), f"{name}: {volume} is not a repository file"
        path = REPO / source
        assert path.exists(), f"{name} mounts {source}, which does not exist"
        if target.endswith((".yml", ".yaml", ".json")):
            assert path.is_file(), f"{name}: {source} should be a file"


def test_services_point_at_each_other_by_name_and_port() -> None:
    svc = services()
    env = {k: default_of(str(v)) for k, v in svc["gateway"]["environment"].items()}
    assert env["GATEWAY_REDIS_URL"] == "redis://redis:6379/0"
    assert env["GATEWAY_UPSTREAM_URL"] == "http://simulator:9000"  # the simulator's --port
    assert "8080:8080" in svc["gateway"]["ports"]
    scrape = yaml.safe_load(PROMETHEUS_CONFIGS[0].read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["gateway:8080"] and scrape["metrics_path"] == "/metrics"
    local = yaml.safe_load(PROMETHEUS_CONFIGS[1].read_text())["scrape_configs"][0]
    assert local["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    datasource = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "./config/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in svc["prometheus"]["volumes"]


def test_grafana_provisions_the_mounted_dashboards_for_anonymous_viewers() -> None:
    grafana = services()["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/dashboards.yml").read_text())["providers"][0]
    dashboards_in_container = provider["options"]["path"]
    assert mounts["./grafana/dashboards"] == dashboards_in_container
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert str(home.parent) == dashboards_in_container
    assert (REPO / "grafana" / "dashboards" / home.name).is_file()


def test_compose_environment_is_understood_by_the_gateway_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: default_of(str(v)) for k, v in services()["gateway"]["environment"].items()}
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(None)
    assert settings.redis_url == env["GATEWAY_REDIS_URL"]
    assert settings.upstream_url == env["GATEWAY_UPSTREAM_URL"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) or path.split("/")[0] == p for p in patterns)


def test_the_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    ignore = [p for p in ignore if p and not p.startswith("#")]
    copies = [shlex.split(line)[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [src for srcs in copies for src in srcs]
    assert {"pyproject.toml", "gateway"} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which does not exist"
        assert not dockerignored(src, ignore), f".dockerignore hides {src} from the build"
    assert "FROM python:3.11-slim" in dockerfile and "RUN pip install ." in dockerfile
    assert 'CMD ["hf-gateway", "serve", "--host", "0.0.0.0"]' in dockerfile


@pytest.mark.parametrize(
    "command",
    [["serve", "--host", "0.0.0.0"], ["simulate", "--port", "9000", "--host", "0.0.0.0"]],
    ids=["serve", "simulate"],
)
def test_the_commands_the_images_run_exist_in_the_cli(command: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", command[0], "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for flag in (arg for arg in command[1:] if arg.startswith("--")):
        assert flag in done.stdout, f"hf-gateway {command[0]} has no {flag}"


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker CLI with the compose plugin here (the parse tests above stand in)")
    for args in ([], ["--profile", "demo"]):
        done = subprocess.run([docker, "compose", "-f", str(COMPOSE), *args, "config", "-q"], capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_promtool_accepts_the_prometheus_config(path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (.ci/run installs Debian's prometheus package)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    done = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
