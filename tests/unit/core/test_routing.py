"""Routing: exact ids, aliases, glob patterns, the `*` default, provider suffixes, unknown models."""

from __future__ import annotations

import pytest

from gateway.core.config import load_settings
from gateway.core.errors import UnknownModel
from gateway.core.routing import Router
from gateway.upstream.fake import FakeUpstream


def _router(models: list[dict], upstreams: tuple[str, ...] = ("hf", "tgi")) -> Router:
    settings = load_settings(None, upstreams={u: {"kind": "hf" if u == "hf" else "tgi", "base_url": f"http://{u}.test"}
                                              for u in upstreams}, models=models)
    return Router(settings.models, {u: FakeUpstream(u, kind=settings.upstreams[u].kind) for u in upstreams})


def test_exact_alias_pattern_default_in_that_order() -> None:
    r = _router([
        {"name": "meta-llama/Llama-3.1-8B-Instruct", "aliases": ["chat-default"],
         "deployments": [{"upstream": "tgi"}, {"upstream": "hf"}]},
        {"name": "BAAI/*", "deployments": [{"upstream": "hf"}]},
        {"name": "*", "deployments": [{"upstream": "hf"}]},
    ])
    exact = r.resolve("meta-llama/Llama-3.1-8B-Instruct")
    assert [d.id for d in exact.deployments] == ["tgi", "hf"]
    assert r.resolve("chat-default") is exact
    assert r.resolve("BAAI/bge-small-en-v1.5").label == "BAAI/*"
    assert r.resolve("gpt2").label == "other"


def test_provider_suffix_matches_the_bare_name_and_is_kept_for_hf() -> None:
    r = _router([{"name": "meta-llama/Llama-3.1-8B-Instruct", "deployments": [{"upstream": "hf"}]}])
    route = r.resolve("meta-llama/Llama-3.1-8B-Instruct:novita")
    assert route.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert route.deployments[0].target_model("meta-llama/Llama-3.1-8B-Instruct:novita").endswith(":novita")


def test_deployment_model_overrides_the_requested_name() -> None:
    r = _router([{"name": "chat", "deployments": [{"upstream": "tgi", "model": "tgi"},
                                                  {"upstream": "hf", "model": "org/real"}]}])
    route = r.resolve("chat")
    assert [d.target_model("chat") for d in route.deployments] == ["tgi", "org/real"]


def test_unknown_model_without_default_says_how_to_configure() -> None:
    r = _router([{"name": "org/only", "deployments": [{"upstream": "hf"}]}])
    with pytest.raises(UnknownModel) as exc:
        r.resolve("org/other")
    assert exc.value.status == 404
    assert "models:" in exc.value.message


def test_catalog_lists_models_and_aliases_not_patterns() -> None:
    r = _router([
        {"name": "org/a", "aliases": ["a"], "deployments": [{"upstream": "hf"}]},
        {"name": "org/*", "deployments": [{"upstream": "hf"}]},
        {"name": "*", "deployments": [{"upstream": "hf"}]},
    ])
    assert [m["id"] for m in r.catalog()] == ["org/a", "a"]
    assert set(r.labels()) == {"org/a", "a", "org/*"}


def test_zero_config_routes_everything_to_the_hf_router() -> None:
    settings = load_settings(None)
    r = Router(settings.models, {"hf": FakeUpstream("hf")})
    assert r.resolve("anything/at-all").deployments[0].upstream.name == "hf"
    assert settings.upstreams["hf"].base_url == "https://router.huggingface.co"
