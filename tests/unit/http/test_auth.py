"""Gateway API keys: who may call, as which tenant, and what the refusal looks like per dialect."""

from __future__ import annotations

import argparse
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient

from gateway.cli.main import main
from gateway.core.call import Answer, Call, Reply
from gateway.core.clock import FakeClock
from gateway.core.config import KeyConfig, load_settings
from gateway.http.middleware import auth
from gateway.http.middleware.auth import KeyRing, hash_key
from gateway.store.memory import MemoryStore
from gateway.store.protocol import StoreError, key
from gateway.upstream.fake import FakeUpstream
from tests.support.serving import gateway_client

KEY = "gwk_fake_test_key_team_a"
OTHER = "gwk_fake_test_key_team_b"
CHAT = {"model": "org/m", "messages": [{"role": "user", "content": "hi"}]}


def _who(call: Call, model: str) -> Answer:
    return Reply(200, orjson.dumps({"tenant": call.tenant, "key_id": call.api_key_id}))


def _settings(**extra: Any) -> Any:
    keys = [{"sha256": hash_key(KEY), "tenant": "team-a", "name": "a-ci"},
            {"sha256": hash_key(OTHER), "tenant": "team-b"}]
    return load_settings(None, keys=keys, cache={"enabled": False}, **extra)


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with gateway_client(_settings(), upstreams={"hf": FakeUpstream("hf", default=_who)}, cancel=False) as c:
        yield c


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"}, {"api-key": KEY}, {"x-api-key": KEY},
])
async def test_a_valid_key_in_any_accepted_header_sets_the_tenant(client: TestClient, headers: dict[str, str]) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status == 200
    assert await r.json() == {"tenant": "team-a", "key_id": "a-ci"}


async def test_each_key_maps_to_its_own_tenant(client: TestClient) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {OTHER}"})
    assert (await r.json()) == {"tenant": "team-b", "key_id": hash_key(OTHER)[:12]}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer gwk_wrong"}, {"Authorization": KEY},
                                     {"x-api-key": KEY + "x"}, {"Authorization": "Bearer " + "x" * 5000}])
async def test_openai_routes_refuse_in_the_openai_shape(client: TestClient, headers: dict[str, str]) -> None:
    r = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert r.status == 401
    body = await r.json()
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert KEY not in await r.text()


@pytest.mark.parametrize("path", ["/models/org/m", "/hf-inference/models/org/m", "/models/org/m/generate"])
async def test_hf_routes_refuse_in_the_hf_shape(client: TestClient, path: str) -> None:
    r = await client.post(path, json={"inputs": "x"}, headers={"Authorization": "Bearer hf_fake_test_token"})
    assert r.status == 401
    body = await r.json()
    assert set(body) == {"error"} and "API key" in body["error"]


async def test_ops_endpoints_stay_open(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/v1/models")).status == 401


async def test_without_keys_the_gateway_is_open() -> None:
    async with gateway_client(
        load_settings(None, cache={"enabled": False}), upstreams={"hf": FakeUpstream("hf", default=_who)}, cancel=False
    ) as c:
        r = await c.post("/v1/chat/completions", json=CHAT)
        assert r.status == 200 and (await r.json())["tenant"] is None


async def test_the_final_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    ring = KeyRing([KeyConfig(sha256=hash_key(KEY), tenant="team-a")])
    assert (await ring.identify(KEY)) is not None
    assert seen == [(hash_key(KEY), hash_key(KEY))]  # digests compared, never the raw key
    assert await ring.identify("gwk_nope") is None


async def test_keys_kept_in_the_store_work_and_are_revocable() -> None:
    clock = FakeClock()
    store = MemoryStore(clock)
    ring = KeyRing([], store, prefix="gw", in_store=True, clock=clock)
    assert ring.enabled
    assert await ring.identify(KEY) is None
    await store.set(key("gw", "key", hash_key(KEY)), b"team-s")
    assert (await ring.identify(KEY)).tenant == "team-s"  # type: ignore[union-attr]
    await store.delete(key("gw", "key", hash_key(KEY)))
    assert (await ring.identify(KEY)) is not None  # remembered for a while...
    clock.advance(auth.STORE_CACHE_SECONDS + 1)
    assert await ring.identify(KEY) is None  # ...then the revocation holds
    await store.set(key("gw", "key", hash_key(OTHER)), b"bad {tenant}")
    assert await ring.identify(OTHER) is None  # a value that is no tenant name is refused


class _DownStore(MemoryStore):
    async def get(self, key: str) -> bytes | None:
        raise StoreError("redis: ConnectionError")


async def test_a_store_that_cannot_check_keys_gives_503_not_an_open_door() -> None:
    settings = load_settings(None, ratelimit={"keys_in_store": True}, cache={"enabled": False})
    async with gateway_client(
        settings, store=_DownStore(FakeClock()), upstreams={"hf": FakeUpstream("hf", default=_who)}, cancel=False
    ) as c:
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await r.json())["error"]["code"] == "store_unavailable"


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = main(argv)
    return rc, capsys.readouterr().out


async def test_keys_create_output_pasted_into_a_config_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _run_cli(["keys", "create", "--tenant", "team-z", "--name", "laptop"], capsys)
    assert rc == 0
    lines = out.splitlines()
    secret = lines[1].strip()
    assert secret.startswith("gwk_") and len(secret) > 40
    snippet = "\n".join(lines[lines.index("keys:") :])
    assert secret not in snippet  # only the hash goes into the config
    config = tmp_path / "gateway.yaml"
    config.write_text("cache: {enabled: false}\n" + snippet + "\n")
    assert yaml.safe_load(config.read_text())["keys"][0]["tenant"] == "team-z"
    async with gateway_client(
        load_settings(config), upstreams={"hf": FakeUpstream("hf", default=_who)}, cancel=False
    ) as c:
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"})
        assert r.status == 200 and await r.json() == {"tenant": "team-z", "key_id": "laptop"}
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer gwk_other"})
        assert r.status == 401


def test_two_keys_are_never_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    keys = {_run_cli(["keys", "create", "--tenant", "t"], capsys)[1].splitlines()[1] for _ in range(5)}
    assert len(keys) == 5


def test_keys_create_refuses_a_tenant_that_cannot_be_a_hash_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--tenant", "{team}"]) == 2
    assert "tenant" in capsys.readouterr().err


def test_keys_hash_reads_the_key_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    rc, out = _run_cli(["keys", "hash", "--tenant", "team-a"], capsys)
    assert rc == 0 and f"sha256: {hash_key(KEY)}" in out and KEY not in out


def test_parser_is_wired_into_the_cli() -> None:
    from gateway.cli.main import _parser

    args = _parser().parse_args(["keys", "create", "--tenant", "x"])
    assert isinstance(args, argparse.Namespace) and args.tenant == "x"
