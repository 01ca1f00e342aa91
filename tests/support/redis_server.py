"""Redis for tests: the shared server on 6379 and private throw-away `redis-server`s.

When nothing answers on 6379 (a fresh machine), the first test that needs the shared server starts
one private `redis-server` for the whole session (`stand_in`) and every such test uses it; the
session's end stops it (`stop_stand_in`, from the root conftest). `TEST_REDIS_URL`, when set, names
the server to use and is never replaced.

Invariants:
- The CI rule lives here once: a test that needs Redis (or the `redis-server` binary) and cannot
  have it is skipped locally and FAILS when CI=true (`unavailable`).
- A `PrivateRedis` never touches the shared server: it runs its own process on a free port, without
  persistence (a restart comes back empty, as a crashed cache node would), with `DEBUG` enabled on
  that private server only (Redis >= 7) so a test may put it to sleep.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
import redis.asyncio as aioredis

from tests.support.processes import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Stop the test for a missing dependency: a failure in CI, a skip locally."""
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


async def reachable(url: str) -> bool:
    """True when a Redis answers PING at `url` within half a second."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(await client.ping())
    except Exception:  # any failure to answer means "not usable here"
        return False
    finally:
        await client.aclose()


async def shared_redis_url() -> str:
    """The shared Redis URL once it answers, else a private stand-in; otherwise skip (locally) or fail (CI)."""
    if _STAND_IN.server is not None:
        return _STAND_IN.server.url
    if await reachable(REDIS_URL):
        return REDIS_URL
    if "TEST_REDIS_URL" in os.environ:
        unavailable(f"Redis is not reachable at {REDIS_URL} (TEST_REDIS_URL)")
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable(f"Redis is not reachable at {REDIS_URL} and redis-server is not installed to start one")
    server = PrivateRedis(binary)
    server.start()
    _STAND_IN.server = server
    return server.url


class _StandIn:
    """The private server that stands in for 6379 during this test session, once one was needed."""

    server: PrivateRedis | None = None


_STAND_IN = _StandIn()


def stop_stand_in() -> None:
    """Stop the session's stand-in server, if one was started (only that process)."""
    if _STAND_IN.server is not None:
        _STAND_IN.server.kill()
        _STAND_IN.server = None


@dataclass(frozen=True)
class TlsFiles:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost (obviously fake, made per test)."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA and a server certificate signed by it in `directory` (openssl; skips when missing)."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "server.pem", directory / "server.key", directory / "server.csr"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="utf-8")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fake test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "2",
        "-extfile", str(ext), "-out", str(cert))
    return TlsFiles(ca, cert, key)


class PrivateRedis:
    """One redis-server process; `kill()` then `start()` again keeps the same port.

    `tls`: it listens over TLS only (no plain port) and `url` is a rediss:// URL trusting its CA.
    `extra`: more redis-server arguments (e.g. `--maxmemory 8mb`).
    """

    def __init__(self, binary: str, *, tls: TlsFiles | None = None, extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.port = free_port()
        self.tls = tls
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                      "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                      "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(
            [self.binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--enable-debug-command", "yes", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.accepting():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError("the private redis-server did not start")
            time.sleep(0.01)

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


@contextmanager
def running_private_redis(*, tls: TlsFiles | None = None, extra: Sequence[str] = ()) -> Iterator[PrivateRedis]:
    """A started PrivateRedis, killed on exit (the `private_redis` fixture's body)."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    server = PrivateRedis(binary, tls=tls, extra=extra)
    try:
        server.start()
        yield server
    finally:
        server.kill()
