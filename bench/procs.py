"""Child processes of a bench run: pinned to cores, each in its own process group, all stopped in `close()`.

Invariants: every process the bench starts is registered in one `Procs`; `close()` (run from a
`finally` or the context manager) sends SIGTERM to each process group, waits briefly, then SIGKILLs
what is left, so no server, upstream or load generator outlives the run. Only the ids we started
are ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SERVER_CPUS = "0"  # the system under test owns core 0
CLIENT_CPUS = "1"  # load generator, upstream and Redis share core 1


class BenchError(RuntimeError):
    """A bench step could not run (a server did not start, a tool failed)."""


def free_port() -> int:
    """A currently free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    """`argv` under `taskset -c cpus` when taskset exists and the cores do."""
    if cpus is None or shutil.which("taskset") is None:
        return argv
    wanted = {int(c) for c in cpus.replace("-", ",").split(",") if c}
    if not wanted <= os.sched_getaffinity(0):
        return argv
    return ["taskset", "-c", cpus, *argv]


def rss_kib(pid: int) -> int:
    """VmRSS of `pid` in KiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its direct children (the workers), 0 when gone."""
    total = 0.0
    for p in [pid, *children_of(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (the forked workers of `serve --workers N`)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


@dataclass
class Procs:
    """Registry of the run's processes; a context manager that always stops them."""

    run_dir: Path
    procs: list[Proc] = field(default_factory=list)

    def __enter__(self) -> Procs:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def spawn(self, name: str, argv: list[str], cpus: str | None, env: dict[str, str] | None = None,
              stdin: int | None = subprocess.DEVNULL, stdout: int | IO[bytes] | None = None) -> Proc:
        log = self.run_dir / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                pinned(argv, cpus), stdin=stdin, stdout=stdout if stdout is not None else fh, stderr=fh,
                env={**os.environ, **(env or {})}, start_new_session=True, preexec_fn=_die_with_runner,
            )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def start_server(self, name: str, argv: list[str], cpus: str | None, port: int,
                     env: dict[str, str] | None = None, timeout: float = 20.0) -> Proc:
        """Spawn a server and wait until `port` accepts connections."""
        proc = self.spawn(name, argv, cpus, env)
        wait_port(proc, port, timeout)
        return proc

    def stop(self, proc: Proc, timeout: float = 5.0) -> None:
        """Stop one process group: SIGTERM, then SIGKILL after `timeout`."""
        if proc.popen.poll() is None:
            _signal_group(proc.popen, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.popen, signal.SIGKILL)
                proc.popen.wait(5)
        # A forked worker can outlive its parent for a moment; the group signal reaches it too.
        _signal_group(proc.popen, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {proc.name} ({proc.pid}): {exc}", file=sys.stderr)


def _die_with_runner() -> None:
    """In the child, before exec: SIGTERM when the runner dies, even by SIGKILL (a test's timeout), so a
    killed run leaves nothing behind (Linux PR_SET_PDEATHSIG; kept across exec; elsewhere, nothing)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(popen.pid, sig)  # start_new_session made pid the group id
    except (ProcessLookupError, PermissionError):
        pass


def wait_port(proc: Proc, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise BenchError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"{proc.name} did not listen on port {port} within {timeout:.0f}s:\n{proc.tail()}")
