"""Security from the outside: who gets in, what never leaks, what never crosses over.

- With keys configured, every route but `/healthz`, `/readyz` (and `/metrics` when public) needs
  a valid key; the routes are read from the app's router, so a route added later is covered too.
- Upstream credentials never appear in answers, logs (DEBUG, JSON and text) or /metrics after a
  mixed workload full of errors; the client's key never reaches an upstream (only the upstream's
  own credential does), and is never logged either.
- The cache and request coalescing never hand one tenant's answer to another (unless a route is
  configured `cache.shared`).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.core.config import Settings
from gateway.http.middleware.auth import hash_key
from gateway.observability.logs import configure_logging
from gateway.simulator.config import SimConfig
from tests.support.rig import Answer, Rig, Tally, fault_settings, rig, tally_fixtures

# Recognisable fake secrets. HF_SECRET has the shape log redaction knows; the others do not, so
# finding them anywhere means a real leak, not a redaction gap.
HF_SECRET = "hf_SecretFakeUpstreamTokenXq7Lm2Pz9"
OAI_SECRET = "opaque-upstream-credential-Zq8x1W"
KEY_A = "gwk-tenant-a-CLIENTKEY-Vb3n"
KEY_B = "gwk-tenant-b-CLIENTKEY-Rt6y"
SECRETS = {
    "upstream hf token": ("SecretFakeUpstreamToken", HF_SECRET),
    "upstream openai token": ("credential-Zq8x1W", OAI_SECRET),
    "client key a": ("CLIENTKEY-Vb3n", KEY_A),
    "client key b": ("CLIENTKEY-Rt6y", KEY_B),
}
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


security_tally, tally = tally_fixtures("security", "module")


def _settings(sim_url: str, **over: Any) -> Settings:
    return fault_settings(
        sim_url,
        upstreams={
            "hf": {"kind": "hf", "token_env": "SEC_TEST_HF_TOKEN", "read_timeout": 2.0},
            "oai": {"kind": "openai", "base_url": f"{sim_url}/v1", "token_env": "SEC_TEST_OAI_TOKEN",
                    "read_timeout": 2.0},
            "bare": {"kind": "openai", "base_url": f"{sim_url}/v1", "token_env": "SEC_TEST_UNSET_TOKEN"},
        },
        models=[
            {"name": "oai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "bare/*", "deployments": [{"upstream": "bare"}]},
            {"name": "shared/*", "deployments": [{"upstream": "oai"}], "cache": {"shared": True}},
            {"name": "*", "deployments": [{"upstream": "hf"}]},
        ],
        keys=[{"sha256": hash_key(KEY_A), "tenant": "a", "name": "key-a"},
              {"sha256": hash_key(KEY_B), "tenant": "b", "name": "key-b"}],
        **over,
    )


@pytest.fixture
async def gw(tally: Tally, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("SEC_TEST_HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("SEC_TEST_OAI_TOKEN", OAI_SECRET)
    monkeypatch.delenv("SEC_TEST_UNSET_TOKEN", raising=False)
    async with rig(tally, _settings, sim_config=SimConfig(token=SecretStr(HF_SECRET))) as r:
        yield r
        await r.settled()


# --- who gets in ---------------------------------------------------------------------------------

def _concrete(canonical: str) -> str:
    return (canonical.replace("{rest}", "org/gen").replace("{model_id}", "org/gen")
            .replace("{task}", "text-generation"))


def _routes(r: Rig) -> list[tuple[str, str]]:
    out = []
    for resource in r.gw_app.router.resources():
        for route in resource:
            if route.method != "HEAD":
                out.append((route.method, _concrete(resource.canonical)))
    return out


async def test_every_route_but_health_and_metrics_needs_a_key(gw: Rig) -> None:
    routes = _routes(gw)
    assert len(routes) >= 12
    open_paths = {"/healthz", "/readyz", "/metrics"}
    for method, path in [*routes, ("GET", "/no/such/path"), ("POST", "/v1/nothing")]:
        body = {"model": "oai/chat", "messages": [{"role": "user", "content": "x"}], "inputs": "x"}
        json = body if method == "POST" else None
        if path in open_paths:
            answer = await gw.send(method, path, expect={200})
            continue
        for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"Authorization": f"Basic {KEY_A}"},
                        {"Authorization": f"Bearer {KEY_A}x"}, {"x-api-key": "nope"}, {"api-key": KEY_A[:-1]},
                        {"Authorization": "Bearer " + "k" * 6000}):  # over the key length cap
            answer = await gw.send(method, path, json=json, headers=headers, expect={401})
            assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
            err = answer.json()["error"]
            assert err["message"] if isinstance(err, dict) else err  # in the route's dialect, not empty
        answer = await gw.send(method, path, json=json, headers=A, expect={200, 400, 404, 405})
    assert gw.sim.count() > 0  # authorised requests went through; refused ones never did (checked below)


async def test_refused_requests_do_no_upstream_work(gw: Rig) -> None:
    for _ in range(5):
        await gw.send("POST", "/v1/chat/completions", json={"model": "oai/chat", "messages": [{"role": "user",
                      "content": "x"}]}, headers={"Authorization": "Bearer wrong"}, expect={401})
    assert gw.sim.count() == 0


@pytest.mark.parametrize("header", ["Authorization", "api-key", "x-api-key"])
async def test_each_key_header_works(gw: Rig, header: str) -> None:
    value = f"Bearer {KEY_A}" if header == "Authorization" else KEY_A
    answer = await gw.send("POST", "/v1/embeddings", json={"model": "oai/e", "input": "x"},
                           headers={header: value}, expect={200})
    assert answer.json()["data"]


async def test_metrics_can_be_closed(tally: Tally, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_TEST_HF_TOKEN", HF_SECRET)
    async with rig(tally, lambda url: _settings(url, metrics_public=False)) as r:
        await r.send("GET", "/metrics", expect={401})
        ok = await r.send("GET", "/metrics", headers=A, expect={200})
        assert b"gateway_" in ok.body
        await r.send("GET", "/healthz", expect={200})
        await r.send("GET", "/readyz", expect={200})


# --- what never leaks ----------------------------------------------------------------------------

def _chat(model: str, **over: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "tell me a secret"}], "max_tokens": 5, **over}


WORKLOAD: list[tuple[str, str, Any, dict[str, str], set[int]]] = [
    ("POST", "/v1/chat/completions", _chat("oai/chat"), A, {200}),
    ("POST", "/v1/chat/completions", _chat("oai/chat", stream=True), A, {200}),
    ("POST", "/v1/chat/completions", _chat("oai/chat", temperature=0), A, {200}),
    ("POST", "/v1/chat/completions", _chat("oai/chat", temperature=0), B, {200}),
    ("POST", "/v1/chat/completions", _chat("org/gen-auth"), A, {200}),  # hf upstream, its token checked
    ("POST", "/v1/chat/completions", _chat("oai/chat-auth"), A, {502}),  # the upstream refuses our token
    ("POST", "/v1/chat/completions", _chat("bare/chat"), A, {200}),  # an upstream without a credential
    ("POST", "/v1/chat/completions", _chat("oai/chat-midstream-k2", stream=True), B, {200}),
    ("POST", "/v1/chat/completions", _chat("oai/chat-garbage"), B, {502}),
    ("POST", "/v1/chat/completions", _chat("oai/chat-reset-before"), A, {502, 503}),
    ("POST", "/v1/chat/completions", _chat("oai/chat-429xall-ra1"), A, {429}),
    ("POST", "/v1/chat/completions", _chat("oai/chat-503xall"), A, {502, 503}),
    ("POST", "/v1/embeddings", {"model": "oai/embed", "input": ["a", "b"]}, A, {200}),
    ("POST", "/v1/embeddings", {"model": "oai/embed", "input": ["a", "b"]}, A, {200}),
    ("POST", "/v1/completions", {"model": "oai/c", "prompt": "x", "echo": True}, B, {200}),
    ("POST", "/models/org/gen", {"inputs": "hello"}, A, {200}),
    ("POST", "/models/org/gen", {"inputs": "hello", "stream": True}, A, {200}),
    ("POST", "/models/org/gen-cold-30s", {"inputs": "x", "options": {"wait_for_model": False}}, A, {503}),
    ("POST", "/models/org/gen-truncated-json", {"inputs": "x"}, B, {502}),
    ("POST", "/models/org/gen-cut-k2", {"inputs": "x", "stream": True}, B, {200}),
    ("POST", "/hf-inference/models/org/sst-model/pipeline/text-classification", {"inputs": "x"}, A, {200}),
    ("POST", "/models/org/gen/generate", {"inputs": "x", "parameters": {"max_new_tokens": 2}}, A, {200}),
    ("POST", "/v1/chat/completions", b"{broken", A, {400}),
    ("POST", "/v1/chat/completions", _chat("oai/chat"), {"Authorization": f"Bearer {KEY_A}-wrong"}, {401}),
    ("POST", "/v1/chat/completions", _chat("oai/chat"), {"x-api-key": KEY_B + "z"}, {401}),
    ("GET", "/v1/models", None, A, {200}),
    ("GET", "/v1/models/oai/chat", None, B, {200, 404}),
    ("GET", "/models/org/gen/info", None, A, {200}),
    ("GET", "/status", None, A, {200}),
    ("GET", "/readyz", None, {}, {200}),
    ("GET", "/metrics", None, {}, {200}),
]


def _blob(answer: Answer) -> str:
    head = "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    return head + "\n" + answer.body.decode("utf-8", "replace")


def _leaks(text: str) -> list[str]:
    return [name for name, (part, whole) in SECRETS.items() if part in text or whole in text]


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_no_secret_in_answers_logs_or_metrics(gw: Rig, fmt: str) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging(fmt, "DEBUG", stream=stream)  # type: ignore[arg-type]
    seen: list[str] = []
    try:
        for method, path, body, headers, expect in WORKLOAD:
            data = body if isinstance(body, bytes) else None
            json = None if isinstance(body, bytes) else body
            answer = await gw.send(method, path, json=json, data=data, headers=headers, expect=expect)
            seen.append(_blob(answer))
        metrics = await gw.send("GET", "/metrics", expect={200})
        await asyncio.sleep(0)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    logs = stream.getvalue()
    assert len(logs.splitlines()) >= len(WORKLOAD)  # the access lines at least: logging really was captured
    assert "gateway.access" in logs
    assert not _leaks(logs), f"secret in the {fmt} logs: {_leaks(logs)}"
    assert not _leaks(metrics.body.decode()), "secret in /metrics"
    for text in seen:
        assert not _leaks(text), f"secret in an answer: {_leaks(text)}: {text[:400]}"
    _check_upstream_credentials(gw)


def _check_upstream_credentials(gw: Rig) -> None:
    """Every upstream request carried its upstream's own credential (or none), never the client's key."""
    assert gw.sim.requests, "nothing reached the upstream"
    for req in gw.sim.requests:
        values = " ".join(str(v) for v in req.headers.values())
        assert "CLIENTKEY" not in values, f"a client key reached the upstream: {req.path}"
        assert "CLIENTKEY" not in req.body.decode("utf-8", "replace")
        auth = req.headers.get("Authorization")
        model = req.model or ""
        if model.startswith("bare/"):
            assert auth is None, "an upstream without a credential got one anyway"
        elif model.startswith("oai/"):
            assert auth == f"Bearer {OAI_SECRET}"
        else:
            assert auth == f"Bearer {HF_SECRET}"
        assert req.headers.get("api-key") is None and req.headers.get("x-api-key") is None


@pytest.mark.parametrize("path,body,dialect", [
    ("/v1/chat/completions", _chat("oai/chat-auth"), "openai"),
    ("/models/org/gen-auth", {"inputs": "x"}, "hf"),  # hf upstream: its token is right, so 200 (control)
    ("/v1/embeddings", {"model": "oai/embed-auth", "input": "x"}, "openai"),
])
async def test_an_upstream_refusing_our_credential_is_not_the_clients_401(gw: Rig, path: str, body: Any,
                                                                         dialect: str) -> None:
    """The upstream's 401 is about the gateway's token: the client gets a 502 naming the upstream (not a
    401 that reads as "your key is wrong"), never retried, and no credential in it."""
    ok = path.startswith("/models/")
    answer = await gw.send("POST", path, json=body, headers=A, expect={200} if ok else {502})
    assert not _leaks(_blob(answer))
    if ok:
        return
    err = answer.json()["error"]
    assert err["code"] == "upstream_credentials_refused" and "oai" in err["message"]
    assert answer.headers.get("x-should-retry") == "false" and "WWW-Authenticate" not in answer.headers
    assert gw.sim.count(model=body["model"]) == 1  # not retried: retrying cannot fix a credential


# --- what never crosses over ---------------------------------------------------------------------

async def test_cache_entries_are_per_tenant(gw: Rig) -> None:
    body = {"model": "oai/embed", "input": "isolate me"}
    first = await gw.send("POST", "/v1/embeddings", json=body, headers=A, expect={200})
    again = await gw.send("POST", "/v1/embeddings", json=body, headers=A, expect={200})
    other = await gw.send("POST", "/v1/embeddings", json=body, headers=B, expect={200})
    assert first.headers["X-Cache"] == "MISS" and again.headers["X-Cache"] == "HIT"
    assert other.headers["X-Cache"] == "MISS", "tenant b was served tenant a's cache entry"
    assert gw.sim.count(model="oai/embed") == 2


async def test_shared_routes_share_on_purpose(gw: Rig) -> None:
    body = {"model": "shared/embed", "input": "shared text"}
    await gw.send("POST", "/v1/embeddings", json=body, headers=A, expect={200})
    other = await gw.send("POST", "/v1/embeddings", json=body, headers=B, expect={200})
    assert other.headers["X-Cache"] == "HIT"
    assert gw.sim.count(model="shared/embed") == 1


async def test_coalescing_never_joins_two_tenants(gw: Rig) -> None:
    """Identical slow requests from two tenants at once: one upstream call per tenant, not one in all."""
    body = {"model": "oai/embed-slow-ttfb-300ms", "input": "same words"}
    answers = await asyncio.gather(*(gw.send("POST", "/v1/embeddings", json=body, headers=h, expect={200})
                                     for h in (A, B) * 4))
    assert gw.sim.count(model="oai/embed-slow-ttfb-300ms") == 2
    outcomes = {(i % 2, a.headers.get("X-Cache")) for i, a in enumerate(answers)}
    assert (0, "MISS") in outcomes and (1, "MISS") in outcomes  # each tenant had its own leader
