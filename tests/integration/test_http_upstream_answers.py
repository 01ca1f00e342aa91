"""What `HttpUpstream` makes of unusual upstream answers and requests, through a real app and a scripted upstream."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.core.clock import FakeClock
from gateway.core.config import load_settings
from gateway.http.app import create_app
from tests.support.scripted_upstream import Scripted, serving

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = (b'{"id":"x","object":"chat.completion","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}')


def encoded(coding: str, body: bytes) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: {coding}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


@asynccontextmanager
async def gateway_to(
    answers: list[bytes], kind: str = "openai", token_env: str | None = None
) -> AsyncIterator[tuple[TestClient, Scripted]]:
    async with serving(answers) as (script, pool):
        cfg = load_settings(
            None,
            upstreams={"up": {"kind": kind, "base_url": pool.origin, "token_env": token_env}},
            models=[{"name": "*", "deployments": [{"upstream": "up"}]}],
            cache={"enabled": False},
        )
        client = TestClient(TestServer(create_app(cfg, clock=FakeClock(autojump=True))))
        await client.start_server()
        try:
            yield client, script
        finally:
            await client.close()


async def test_an_encoded_answer_nobody_asked_for_is_a_clear_502() -> None:
    """The gateway asks for `identity`: gzip, deflate or br is refused (a gzip bomb costs nothing)."""
    stream = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n\r\n"
              + gzip.compress(b'data: {"choices":[]}\n\ndata: [DONE]\n\n'))
    answers = [encoded("gzip", gzip.compress(ANSWER)), encoded("deflate", zlib.compress(ANSWER)),
               encoded("br", b"\x0b\x02\x80hello\x03"), stream]
    async with gateway_to(answers) as (client, script):
        for coding, stream_it in (("gzip", False), ("deflate", False), ("br", False), ("gzip", True)):
            resp = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream_it})
            assert resp.status == 502, await resp.text()
            assert f"{coding}-encoded" in (await resp.json())["error"]["message"]
        assert all(b"\r\nAccept-Encoding: identity\r\n" in sent for sent in script.requests)


async def test_a_body_without_a_content_type_goes_up_without_one_as_the_client_sent_it() -> None:
    image = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG"
    async with gateway_to([image], kind="hf") as (client, script):
        resp = await client.post(
            "/models/org/painter/pipeline/text-to-image", data=b"\x00raw-bytes\x01", skip_auto_headers=["Content-Type"]
        )
        assert resp.status == 200 and await resp.read() == b"\x89PNG"
    sent = script.requests[0]
    assert b"Content-Type" not in sent and sent.endswith(b"\x00raw-bytes\x01")
    assert b"\r\nAccept-Encoding: identity\r\n" in sent and b"\r\nHost: 127.0.0.1:" in sent


async def test_a_token_read_with_its_file_newline_is_sent_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_UPSTREAM_TOKEN", "hf_fake_token_from_a_secret_file\n")
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER)
    async with gateway_to([ok], token_env="GATEWAY_TEST_UPSTREAM_TOKEN") as (client, script):
        resp = await client.post("/v1/chat/completions", json=CHAT)
        assert resp.status == 200
    assert b"\r\nAuthorization: Bearer hf_fake_token_from_a_secret_file\r\n" in script.requests[0]
