"""A throw-away `redis-server` on a free port that a test may kill, restart or put to sleep.

Never the shared server on 6379: nothing here touches it. No persistence, so a restart comes
back empty, as a crashed cache node would. `DEBUG SLEEP` is enabled on this private server only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from .rig import free_port


class PrivateRedis:
    """One redis-server process; `kill()` and `start()` again keep the same port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--enable-debug-command", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.accepting():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("the private redis-server did not start")
            time.sleep(0.005)

    def accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started private redis-server (FAILS in CI when redis-server is missing, skips locally)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("redis-server is required in CI for the Redis fault tests")
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(binary)
    server.start()
    yield server
    server.kill()
