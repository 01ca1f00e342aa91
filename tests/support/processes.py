"""Real `hf-gateway` processes for cross-process tests: free ports, spawn, wait until healthy, stop.

Invariants:
- Every process a test starts is registered in one `Processes`, whose exit (context manager or
  the `processes` fixture) terminates each by its own pid, waits, and kills what is left; only
  processes it started are ever signalled.
- The gateway runs as an operator runs it: the `hf-gateway` console script installed beside this
  interpreter, else the same entry point through `python -m gateway`.
- Output goes to one log file per process in the test's directory (never an unread pipe that
  could fill up and stall the child); a process that dies before it is healthy fails the test
  with the tail of its log.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FAKE_HF_TOKEN = "hf_fake_test_token"


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gateway_command(*args: str) -> list[str]:
    """`hf-gateway ARGS...`: the installed console script (beside this interpreter), else `-m gateway`."""
    script = Path(sys.executable).with_name("hf-gateway")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "gateway", *args]


def gateway_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment with a fake upstream token and no stray GATEWAY_CONFIG, plus `extra`."""
    env = {**os.environ, "HF_TOKEN": FAKE_HF_TOKEN, **(extra or {})}
    env.pop("GATEWAY_CONFIG", None)  # a config file from the developer's shell must not leak in
    return env


@dataclass
class Child:
    """One started process and its log (stdout and stderr together)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Processes:
    """The processes of one test; a context manager that always stops them."""

    directory: Path  # logs and config files go here (the test's tmp_path)
    stop_timeout: float = 10.0  # how long each child gets to exit after SIGTERM before it is killed
    children: list[Child] = field(default_factory=list)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(self.stop_timeout)

    def spawn(self, name: str, argv: list[str], *, env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> Child:
        """Start `argv` (env defaults to `gateway_env()`), its output in `<directory>/<name>.log`."""
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, env=dict(env) if env is not None else gateway_env(), cwd=cwd,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def gateway(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> Child:
        """Start `hf-gateway ARGS...` (`serve ...`, `simulate ...`)."""
        return self.spawn(name, gateway_command(*args), env=env)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate every child still running, wait up to `timeout` each, kill the stragglers."""
        for child in self.children:
            if child.popen.poll() is None:
                child.popen.terminate()
        for child in self.children:
            try:
                child.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                child.popen.kill()
                child.popen.wait(5)


def wait_healthy(child: Child, url: str, limit: float = 20.0) -> None:
    """Poll `url` until it answers 200; fail with the child's log if it exits or `limit` passes."""
    deadline = time.monotonic() + limit
    while True:
        if child.popen.poll() is not None:
            raise AssertionError(f"{child.name} exited with {child.popen.returncode} before it was healthy:\n"
                                 f"{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:  # not listening yet (URLError and HTTPError are OSErrors)
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{child.name}: {url} not healthy after {limit}s:\n{child.tail()}")
        time.sleep(0.05)


@dataclass(frozen=True)
class Fleet:
    """A simulator and the gateways in front of it (base URLs)."""

    simulator: str
    gateways: list[str]


def start_simulator(procs: Processes, env: Mapping[str, str] | None = None,
                    config: dict[str, Any] | None = None) -> tuple[Child, str]:
    """`hf-gateway simulate` on a free port (with `config` as its YAML, if given), healthy; (child, base URL)."""
    sim_port = free_port()
    args = ["simulate", "--port", str(sim_port)]
    if config is not None:
        path = procs.directory / "simulator.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        args += ["--config", str(path)]
    sim = procs.gateway("simulator", *args, env=gateway_env(env))
    sim_url = f"http://127.0.0.1:{sim_port}"
    wait_healthy(sim, f"{sim_url}/_sim/stats")  # not /health: the simulator would count that as a request
    return sim, sim_url


def start_fleet(procs: Processes, config_for: Callable[[str], dict[str, Any]], gateways: int,
                env: Mapping[str, str] | None = None, sim_config: dict[str, Any] | None = None) -> Fleet:
    """`hf-gateway simulate` and `gateways` x `hf-gateway serve` on free ports, all healthy.

    `config_for(simulator_url)` is the gateways' configuration, written as YAML beside the logs;
    `env` is added to every process's environment; `sim_config` is the simulator's configuration.
    """
    full_env = gateway_env(env)
    _, sim_url = start_simulator(procs, env, sim_config)
    config = procs.directory / "gateway.yaml"
    config.write_text(yaml.safe_dump(config_for(sim_url)), encoding="utf-8")
    ports = [free_port() for _ in range(gateways)]
    children = [procs.gateway(f"gateway-{i}", "serve", "--config", str(config), "--port", str(port), env=full_env)
                for i, port in enumerate(ports)]
    for child, port in zip(children, ports, strict=True):
        wait_healthy(child, f"http://127.0.0.1:{port}/healthz")
    return Fleet(sim_url, [f"http://127.0.0.1:{p}" for p in ports])
