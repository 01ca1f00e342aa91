"""Config: YAML + environment precedence, validation errors naming the offending key, secrets from env only."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.cli.main import format_validation_error, main
from gateway.core.config import load_settings
from gateway.core.rates import Rate


def test_env_overrides_yaml_and_upstream_url_replaces_hf_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("port: 9001\nupstreams:\n  hf: {kind: hf}\n  tei: {kind: tei, base_url: 'http://tei.test'}\n")
    monkeypatch.setenv("GATEWAY_PORT", "9002")
    monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token")
    s = load_settings(cfg, upstream_url="http://127.0.0.1:9000/")
    assert s.port == 9002
    assert s.upstreams["hf"].base_url == "http://127.0.0.1:9000"
    assert s.upstreams["tei"].base_url == "http://tei.test"
    assert s.upstreams["hf"].token is not None and s.upstreams["hf"].token.get_secret_value() == "hf_fake_test_token"
    assert "hf_fake_test_token" not in repr(s)


def test_unknown_upstream_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("models:\n  - name: a/b\n    deployments: [{upstream: nope}]\n")
    with pytest.raises(ValidationError) as exc:
        load_settings(cfg)
    assert "models.0.deployments.0.upstream" in format_validation_error(exc.value)


@pytest.mark.parametrize(
    "yaml_text, key",
    [
        ("port: -1\n", "port"),
        ("upstreams:\n  x: {kind: grpc}\n", "upstreams.x.kind"),
        ("upstreams:\n  x: {base_url: 'ftp://a'}\n", "upstreams.x.base_url"),
        ("upstreams:\n  x: {token: 'hf_inline'}\n", "upstreams.x.token"),
        ("bogus_option: 1\n", "bogus_option"),
        ("models:\n  - name: a\n    deployments: []\n", "models.0.deployments"),
    ],
)
def test_check_config_names_the_offending_key(tmp_path: Path, yaml_text: str, key: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    assert main(["check-config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert key in err
    assert "hf_inline" not in err


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[3] / "config" / "gateway.example.yaml"
    assert main(["check-config", str(example)]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("text, count, period", [("600/minute", 600, 60), ("10/s", 10, 1), ("300/hour", 300, 3600),
                                                 ("5/10s", 5, 10)])
def test_rates(text: str, count: float, period: float) -> None:
    r = Rate.model_validate(text)
    assert (r.count, r.period, r.capacity) == (count, period, count)


def test_bad_rate_is_explained() -> None:
    with pytest.raises(ValidationError, match="write it like"):
        Rate.model_validate("lots/minute")


def test_retry_on_takes_429_5xx_and_connect_only() -> None:
    from gateway.core.upstream_config import RetryConfig

    assert RetryConfig().retry_on == [429, 502, 503, 504, "connect"]
    assert RetryConfig(retry_on=[500, "connect"]).retry_on == [500, "connect"]
    for bad in ([404], [200], ["timeout"]):
        with pytest.raises(ValueError, match="retry_on"):
            RetryConfig(retry_on=bad)
