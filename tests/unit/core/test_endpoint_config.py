"""`kind: endpoint` upstreams: the fields they need, the fields only they take, durations, and the target they make."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.cli.main import format_validation_error
from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.core.endpoint_config import HF_ENDPOINTS_API, parse_duration
from gateway.core.routing import Router
from gateway.core.upstream_config import UpstreamConfig
from gateway.upstream.endpoints.upstream import EndpointUpstream
from gateway.upstream.factory import build_upstreams


def test_an_endpoint_upstream_from_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        "upstreams:\n"
        "  my-ep: {kind: endpoint, name: my-production-endpoint, namespace: acme, token_env: EP_TOKEN,\n"
        "          resume: true, wake_estimate: 4m, idle: {after: 30m, action: scale_to_zero}}\n"
        "  hf: {kind: hf}\n"
        "models:\n  - {name: chat, deployments: [{upstream: my-ep}, {upstream: hf, model: org/model}]}\n")
    monkeypatch.setenv("EP_TOKEN", "hf_fake_endpoint_token")
    s = load_settings(cfg)
    ep = s.upstreams["my-ep"]
    assert (ep.name, ep.namespace, ep.control_plane_url) == ("my-production-endpoint", "acme", HF_ENDPOINTS_API)
    assert ep.resume and ep.wake_estimate == 240.0 and ep.idle is not None
    assert (ep.idle.after, ep.idle.action) == (1800.0, "scale_to_zero")
    assert ep.token is not None and ep.token.get_secret_value() == "hf_fake_endpoint_token"
    ups = build_upstreams(s, FakeClock())
    assert isinstance(ups["my-ep"], EndpointUpstream)
    route = Router(s.models, ups).resolve("chat")
    assert route.deployments[0].target_model("anything") == "my-ep"  # one target per endpoint


@pytest.mark.parametrize("upstream, key, words", [
    ({"kind": "endpoint", "namespace": "acme"}, "upstreams.x", "needs `name`"),
    ({"kind": "endpoint", "name": "a"}, "upstreams.x", "needs `namespace`"),
    ({"kind": "endpoint", "name": "a{b}", "namespace": "acme"}, "upstreams.x", "letters, digits"),
    ({"kind": "endpoint", "name": "a", "namespace": "acme", "base_url": "http://x.test"}, "upstreams.x",
     "drop base_url"),
    ({"kind": "tgi", "base_url": "http://x.test", "resume": True}, "upstreams.x", "only for `kind: endpoint`"),
    ({"kind": "endpoint", "name": "a", "namespace": "b", "idle": {"after": "soon", "action": "pause"}},
     "upstreams.x.idle.after", "invalid duration"),
    ({"kind": "endpoint", "name": "a", "namespace": "b", "idle": {"after": 60, "action": "delete"}},
     "upstreams.x.idle.action", ""),
    ({"kind": "endpoint", "name": "a", "namespace": "b", "control_plane_url": "api.test"},
     "upstreams.x.control_plane_url", "http(s) URL"),
])
def test_bad_endpoint_settings_are_named(upstream: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        load_settings(None, upstreams={"x": upstream})
    text = format_validation_error(exc.value)
    assert key in text and words in text


@pytest.mark.parametrize("text, seconds", [("90s", 90.0), ("30m", 1800.0), ("1.5h", 5400.0), ("2d", 172800.0),
                                           ("250ms", 0.25), ("45", 45.0), (12, 12)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_other_kinds_are_unchanged() -> None:
    assert UpstreamConfig(kind="tgi", base_url="http://x.test").name is None
