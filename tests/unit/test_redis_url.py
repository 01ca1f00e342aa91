"""Redis URLs are parsed once, when the settings load: every shape the store opens, and a wrong one
refused by check-config (and serve) with a message that names the problem and never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.core.redis_url import parse_redis_url

PASSWORD = "fake-secret-9d2e"


@pytest.mark.parametrize(("url", "mode", "hosts", "db"), [
    ("redis://127.0.0.1:6379/2", "single", [("127.0.0.1", 6379)], 2),
    (f"rediss://gw:{PASSWORD}@cache.internal:6380/0?ssl_ca_certs=/etc/ca.pem", "single", [("cache.internal", 6380)], 0),
    ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", "cluster", [("10.0.0.1", 7000), ("10.0.0.2", 7000)], 0),
    ("redis+sentinel://s1:26379,s2/mymaster/3", "sentinel", [("s1", 26379), ("s2", 26379)], 3),
])
def test_every_shape_parses(url: str, mode: str, hosts: list[tuple[str, int]], db: int) -> None:
    parsed = parse_redis_url(url)
    assert (parsed.mode, list(parsed.hosts), parsed.db) == (mode, hosts, db)
    assert PASSWORD not in repr(parsed) and PASSWORD not in parsed.redacted()


def test_a_unix_socket_and_tls_options() -> None:
    assert parse_redis_url("unix:///run/redis.sock?db=4").path == "/run/redis.sock"
    tls = parse_redis_url("rediss://h?ssl_cert_reqs=none").tls
    assert tls is not None and not tls.verify and not tls.check_hostname


@pytest.mark.parametrize(("url", "words"), [
    ("http://h:6379", "starts with one of"),
    (f"redis://u:{PASSWORD}@h:6379/0?socket_timeout=3", "unknown Redis URL option 'socket_timeout'"),
    ("redis://h?ssl_ca_certs=/ca.pem", "need a rediss:// URL"),
    ("redis://a:1,b:2", "redis+cluster:// or redis+sentinel://"),
    ("redis+sentinel://s1:26379", "names the master"),
    ("redis+cluster://a:7000/3", "only database 0"),
    ("redis://h:port/0", "port must be a number"),
])
def test_check_config_refuses_a_wrong_url_and_says_why(tmp_path: Path, url: str, words: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "redis.yaml"
    cfg.write_text(f"redis_url: '{url}'\ncache:\n  redis_url: '{url}'\n")
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "redis_url" in err and "cache.redis_url" in err and words in err, err
    assert PASSWORD not in err


@pytest.mark.parametrize("url", ["redis+cluster://a:7000,b:7000", "redis+sentinel://s1:26379/mymaster"])
def test_check_config_accepts_cluster_and_sentinel(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "redis.yaml"
    cfg.write_text(f"redis_url: '{url}'\n")
    assert main(["check-config", str(cfg)]) == 0
