"""Error rendering per dialect, through a real app with a scripted upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.core.config import load_settings
from gateway.core.errors import ModelLoading, UpstreamStatusError, UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.fake import FakeUpstream
from tests.support.serving import gateway_client

CHAT = {"model": "org/m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def gw() -> AsyncIterator[tuple[TestClient, FakeUpstream]]:
    up = FakeUpstream("hf")
    async with gateway_client(load_settings(None), upstreams={"hf": up}, cancel=False) as client:
        yield client, up


async def test_openai_routes_get_openai_errors_with_x_error_message(gw: tuple[TestClient, FakeUpstream]) -> None:
    client, up = gw
    up.script(UpstreamStatusError("upstream said no", status=422, error_type="validation"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status == 422
    body = await r.json()
    assert body["error"]["message"] == "upstream said no"
    assert {"type", "code"} <= body["error"].keys()
    assert r.headers["X-Error-Message"] == "upstream said no"
    assert r.headers["X-Request-Id"]
    assert r.headers["Content-Length"]  # never chunked


async def test_hf_routes_get_hf_errors_with_error_type_for_generation(gw: tuple[TestClient, FakeUpstream]) -> None:
    client, up = gw
    up.script(UpstreamStatusError("Input validation error: bad", status=422, error_type="validation"))
    r = await client.post("/models/org/m", json={"inputs": "x", "parameters": {"max_new_tokens": 3}})
    assert r.status == 422
    assert await r.json() == {"error": "Input validation error: bad", "error_type": "validation"}


async def test_loading_is_503_with_estimated_time_and_capped_retry_after(gw: tuple[TestClient, FakeUpstream]) -> None:
    client, up = gw
    up.script(ModelLoading("Model org/m is currently loading", estimated_time=300.88))
    r = await client.post("/hf-inference/models/org/m", json={"inputs": "x"},
                          headers={"X-Wait-For-Model": "false"})
    assert r.status == 503
    body = await r.json()
    assert body["error"] == "Model org/m is currently loading"
    assert body["estimated_time"] == 300.88
    assert r.headers["Retry-After"] == "120"  # openai gives up above 120 s


@pytest.mark.parametrize("exc, status", [(UpstreamUnreachable("down"), 502), (UpstreamTimeout("slow"), 504)])
async def test_transport_failures(gw: tuple[TestClient, FakeUpstream], exc: Exception, status: int) -> None:
    client, up = gw
    up.config.retry.max_attempts = 1
    up.script(*([exc] * 10))
    r = await client.post("/v1/embeddings", json={"model": "org/m", "input": "x"})
    assert r.status == status
    assert (await r.json())["error"]["code"]


@pytest.mark.parametrize(
    "path, data, headers, status",
    [
        ("/v1/chat/completions", b"{not json", {}, 400),
        ("/v1/chat/completions", b"[1, 2]", {}, 400),
        ("/v1/chat/completions", orjson.dumps({"model": 5, "messages": []}), {}, 400),
        ("/v1/chat/completions", orjson.dumps({"model": "a/b"}), {}, 400),
        # A body id may be any visible ASCII (ids of other backends); path-bound ids are checked where they
        # become a path (tests/integration/test_bad_input.py aims them at another host).
        ("/v1/chat/completions", orjson.dumps({**CHAT, "model": "org/x\r\nHost: evil"}), {}, 400),
        ("/v1/chat/completions", orjson.dumps({**CHAT, "model": "org/x y"}), {}, 400),
        ("/v1/chat/completions", orjson.dumps({**CHAT, "model": "a" * 257}), {}, 400),
        ("/v1/chat/completions", orjson.dumps({**CHAT, "max_tokens": "ten"}), {}, 400),
        ("/v1/embeddings", orjson.dumps({"model": "a/b", "input": "x", "encoding_format": "hex"}), {}, 400),
        ("/models/org/m", b"\xff\xfe{", {"Content-Type": "application/json"}, 400),
        ("/models/org/m", orjson.dumps({"no_inputs": 1}), {"Content-Type": "application/json"}, 400),
        ("/models/org/m", b"{}", {"Content-Type": "application/json", "X-Gateway-Timeout": "soon"}, 400),
        ("/pipeline/Bad Task/org/m", b"{}", {"Content-Type": "application/json"}, 400),
    ],
)
async def test_bad_input_is_a_clear_4xx(gw: tuple[TestClient, FakeUpstream], path: str, data: bytes,
                                        headers: dict[str, str], status: int) -> None:
    client, up = gw
    r = await client.post(path, data=data, headers=headers)
    assert r.status == status, await r.text()
    body = await r.json()
    assert body["error"]
    assert not up.calls
    assert (await client.get("/healthz")).status == 200


async def test_oversized_body_is_413_from_content_length() -> None:
    async with gateway_client(
        load_settings(None, max_body_bytes=2048), upstreams={"hf": FakeUpstream("hf")}, cancel=False
    ) as client:
        r = await client.post("/v1/embeddings", data=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert r.status == 413
        assert (await r.json())["error"]["code"] == "payload_too_large"


async def test_unknown_path_and_method(gw: tuple[TestClient, FakeUpstream]) -> None:
    client, _ = gw
    r = await client.get("/v2/whatever")
    assert r.status == 404 and (await r.json())["error"]
    r = await client.delete("/v1/chat/completions")
    assert r.status == 405
    assert (await r.json())["error"]["code"] == "method_not_allowed"


async def test_request_id_is_propagated(gw: tuple[TestClient, FakeUpstream]) -> None:
    client, up = gw
    r = await client.post("/v1/embeddings", json={"model": "org/m", "input": "x"}, headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    assert up.calls[0][0].request_id == "abc-123"
