"""Hostile and broken input: every request gets one clear 4xx in its dialect, never a 5xx, and a
model id can never make the gateway call anything but a configured upstream.

Runs the real gateway and the simulator on real ports (tests/faults/rig.py); requests that no
HTTP client library would send (a lying Content-Length, CR/LF in headers, odd methods) go
through a raw socket. A third server, "evil", listens the whole time: model ids point at it in
every way we could think of, and it must never receive a single request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.core.config import Settings
from tests.support.raw_http import raw_request
from tests.support.rig import Answer, Rig, Tally, fault_settings, rig, tally_fixtures

LIMIT = 64 * 1024  # max_body_bytes here, so oversized bodies stay small
HITS: web.AppKey[list[str]] = web.AppKey("hits", list)


bad_input_tally, tally = tally_fixtures("bad-input", "module")


@pytest.fixture
async def evil() -> AsyncIterator[TestServer]:
    """A host that is not configured anywhere; it records whatever reaches it."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path_qs}")
        return web.Response(text="you should not be here")

    app = web.Application()
    app[HITS] = hits
    app.router.add_route("*", "/{tail:.*}", record)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


def _settings(sim_url: str) -> Settings:
    return fault_settings(sim_url, max_body_bytes=LIMIT)


@pytest.fixture
async def gw(tally: Tally, evil: TestServer) -> AsyncIterator[Rig]:
    async with rig(tally, _settings) as r:
        yield r
        assert evil.app[HITS] == [], f"a model id reached an unconfigured host: {evil.app[HITS]}"
        for req in r.sim.requests:
            _assert_safe_upstream_path(req.path)
        await r.settled()


def _assert_safe_upstream_path(path: str) -> None:
    assert ".." not in path and "%2f" not in path.lower() and "//" not in path, path
    assert "http:" not in path and "https:" not in path, path
    assert all(32 < ord(ch) < 127 for ch in path), path


def _check_error(answer: Answer, dialect: str) -> None:
    data = orjson.loads(answer.body)
    if dialect == "openai":
        assert isinstance(data["error"], dict) and data["error"]["message"] and data["error"]["type"]
        assert answer.headers.get("X-Error-Message")
    else:
        assert isinstance(data["error"], str) and data["error"]
    assert answer.headers.get("X-Request-Id")


CHAT = "/v1/chat/completions"


def _chat(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "oai/chat", "messages": [{"role": "user", "content": "hi"}]}
    body.update(over)
    return {k: v for k, v in body.items() if v is not ...}


# (id, path, body bytes or JSON, content type, expected statuses, dialect)
JSON_CASES: list[tuple[str, str, Any, int]] = [
    ("truncated-json", CHAT, b'{"model": "oai/chat", "messages": [', 400),
    ("not-json", CHAT, b"model=oai/chat", 400),
    ("json-array", CHAT, b"[1, 2, 3]", 400),
    ("json-null", CHAT, b"null", 400),
    ("json-string", CHAT, b'"hello"', 400),
    ("empty-body", CHAT, b"", 400),
    ("trailing-garbage", CHAT, orjson.dumps(_chat()) + b"}}}", 400),
    ("nan-literal", CHAT, b'{"model": "oai/chat", "messages": [], "temperature": NaN}', 400),
    ("messages-string", CHAT, _chat(messages="hi"), 400),
    ("messages-empty", CHAT, _chat(messages=[]), 400),
    ("messages-of-ints", CHAT, _chat(messages=[1, 2]), 400),
    ("model-int", CHAT, _chat(model=5), 400),
    ("model-null", CHAT, _chat(model=None), 400),
    ("model-missing", CHAT, _chat(model=...), 400),
    ("messages-missing", CHAT, _chat(messages=...), 400),
    ("stream-string", CHAT, _chat(stream="yes"), 400),
    ("max-tokens-string", CHAT, _chat(max_tokens="5"), 400),
    ("max-tokens-float", CHAT, _chat(max_tokens=1.5), 400),
    ("n-bool", CHAT, _chat(n=True), 400),
    ("prompt-missing", "/v1/completions", {"model": "oai/c"}, 400),
    ("prompt-int", "/v1/completions", {"model": "oai/c", "prompt": 7}, 400),
    ("input-missing", "/v1/embeddings", {"model": "oai/e"}, 400),
    ("input-empty", "/v1/embeddings", {"model": "oai/e", "input": ""}, 400),
    ("input-dict", "/v1/embeddings", {"model": "oai/e", "input": {"a": 1}}, 400),
    ("encoding-hex", "/v1/embeddings", {"model": "oai/e", "input": "x", "encoding_format": "hex"}, 400),
    ("embeddings-stream", "/v1/embeddings", {"model": "oai/e", "input": "x", "stream": True}, 400),
    ("hf-inputs-missing", "/models/org/gen", {"parameters": {}}, 400),
    ("hf-truncated", "/models/org/gen", b'{"inputs": "a', 400),
    ("hf-array", "/models/org/gen", b"[1]", 400),
    ("hf-empty", "/models/org/gen", b"", 400),
    ("tgi-inputs-missing", "/models/org/gen/generate", {"parameters": {"max_new_tokens": 3}}, 400),
    ("invalid-utf8-json", CHAT, b'{"model": "oai/chat", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400),
    ("invalid-utf8-hf", "/models/org/gen", b'{"inputs": "\xc3\x28"}', 400),
    ("lone-surrogate", CHAT, b'{"model": "oai/chat", "messages": [{"role": "user", "content": "\\ud800"}]}', 400),
    ("timeout-header-text", CHAT, _chat(), 400),  # with X-Gateway-Timeout: soon (below)
]


def _dialect(path: str) -> str:
    return "openai" if path.startswith("/v1/") or "/v1/" in path else "hf"


@pytest.mark.parametrize("case", JSON_CASES, ids=[c[0] for c in JSON_CASES])
async def test_malformed_and_mistyped_bodies(gw: Rig, case: tuple[str, str, Any, int]) -> None:
    name, path, body, status = case
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"Content-Type": "application/json"}
    if name == "timeout-header-text":
        headers["X-Gateway-Timeout"] = "soon"
    before = gw.sim.count()
    answer = await gw.send("POST", path, data=data, headers=headers, expect={status})
    _check_error(answer, _dialect(path))
    assert gw.sim.count() == before  # refused before any upstream work


@pytest.mark.parametrize("depth", [200, 300, 600, 1000, 1100, 100_000])
@pytest.mark.parametrize("where", ["chat", "hf"])
async def test_deeply_nested_json(gw: Rig, depth: int, where: str) -> None:
    """Nesting deep enough to trip a recursive walker or a serialiser's depth limit: a 400, or served."""
    nested = b"[" * depth + b"]" * depth
    if where == "chat":
        path = CHAT
        data = b'{"model": "oai/chat", "temperature": 0, "messages": [{"role": "user", "content": ' + nested + b"}]}"
    else:
        path = "/models/org/gen"
        data = b'{"inputs": "hi", "parameters": {"deep": ' + nested + b"}}"
    answer = await gw.send("POST", path, data=data, headers={"Content-Type": "application/json"},
                           expect={200, 400, 413})  # 413: the deepest ones are also over the size limit
    if answer.status != 200:
        _check_error(answer, _dialect(path))


# --- huge bodies ---------------------------------------------------------------------------------

async def test_declared_huge_body_is_refused_without_reading_it(gw: Rig) -> None:
    """Content-Length says 1 GB, 1 KB is sent and the connection stays open: the 413 comes anyway."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n")
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, head, b'{"model": "oai/chat", "messages": [' + b" " * 1000)
    gw.record(answer.status, {413}, "declared 1 GB body")
    assert answer.status == 413
    assert orjson.loads(answer.body)["error"]["code"] == "payload_too_large"
    assert gw.sim.count() == 0


async def test_chunked_body_over_the_limit_is_cut_off(gw: Rig) -> None:
    """No Content-Length, chunks past the limit, then silence with the body unfinished: still a 413."""
    content = b'{"inputs": "' + b" " * (2 * LIMIT)
    chunks = [content[i:i + 16384] for i in range(0, len(content), 16384)]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)  # no terminating 0-chunk: unfinished
    head = (b"POST /models/org/gen HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n")
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, head, body)
    gw.record(answer.status, {413}, "chunked body over the limit")
    assert answer.status == 413
    assert "error" in orjson.loads(answer.body)


async def test_body_just_over_the_limit_with_a_true_length(gw: Rig) -> None:
    answer = await gw.send("POST", "/v1/embeddings", json={"model": "oai/e", "input": "x" * LIMIT}, expect={413})
    _check_error(answer, "openai")
    ok = await gw.send("POST", "/v1/embeddings", json={"model": "oai/e", "input": "x" * (LIMIT // 2)}, expect={200})
    assert ok.json()["data"]


# --- headers -------------------------------------------------------------------------------------


async def test_huge_header_is_refused(gw: Rig) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 100_000 + b"\r\nConnection: close\r\n"
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, head)
    gw.record(answer.status, {400, 431}, "100 KB header")


async def test_thousands_of_headers_are_refused_or_ignored(gw: Rig) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n" + many + b"Connection: close\r\n")
    gw.record(answer.status, {200, 400, 431}, "5000 headers")


@pytest.mark.parametrize(
    "value",
    [
        b"abc\r\nSet-Cookie: pwned=1",
        b"abc\nSet-Cookie: pwned=1",
        b"abc\rSet-Cookie: pwned=1",
        b"abc\x00def",
        b"abc%0d%0aSet-Cookie:%20pwned=1",
        b"\xff\xfe",
        b"a" * 129,
        b"ok id with spaces",
    ],
    ids=["crlf", "lf", "cr", "nul", "encoded-crlf", "latin1", "too-long", "spaces"],
)
async def test_request_id_injection_is_never_echoed(gw: Rig, value: bytes) -> None:
    head = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Request-Id: " + value + b"\r\nConnection: close\r\n"
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, head)
    gw.record(answer.status, {200, 400}, f"X-Request-Id {value[:20]!r}")
    assert all(name != "set-cookie" for name, _ in answer.headers)
    rid = answer.header("x-request-id")
    if rid is not None:
        assert rid.isascii() and "\r" not in rid and "\n" not in rid and " " not in rid and len(rid) <= 128
        assert "pwned" not in rid


async def test_user_text_in_error_messages_cannot_break_headers(gw: Rig) -> None:
    """X-Error-Message repeats the error text, which may quote the client's input: it stays one clean line."""
    answer = await gw.send("POST", CHAT, json=_chat(model="evil\r\nSet-Cookie: pwned=1"), expect={400})
    assert "Set-Cookie" not in answer.headers
    msg = answer.headers["X-Error-Message"]
    assert "\r" not in msg and "\n" not in msg


# --- paths and methods ---------------------------------------------------------------------------

METHOD_CASES = [
    ("GET", CHAT, 405, "openai"),
    ("PUT", "/v1/embeddings", 405, "openai"),
    ("DELETE", "/v1/completions", 405, "openai"),
    ("PATCH", "/models/org/gen", 405, "hf"),
    ("GET", "/nope", 404, "hf"),
    ("POST", "/v1/nope", 404, "openai"),
    ("POST", "/v1/models", 405, "openai"),
    ("GET", "/pipeline/text-generation/org/gen", 405, "hf"),
    ("POST", "/healthz", 405, "hf"),
    ("GET", "/models/org/gen/unknown-suffix", 404, "hf"),
    ("GET", "/models/org/gen", 404, "hf"),
    ("POST", "/pipeline/NOT A TASK/org/gen", 400, "hf"),
    ("POST", "/pipeline/text-generation", 404, "hf"),
    ("GET", "/v1/models/../../etc/passwd", 404, "hf"),  # the client normalises it to /etc/passwd
]


@pytest.mark.parametrize("method,path,status,dialect", METHOD_CASES)
async def test_unknown_paths_and_methods(gw: Rig, method: str, path: str, status: int, dialect: str) -> None:
    answer = await gw.send(method, path, json={"inputs": "x"} if method != "GET" else None, expect={status})
    _check_error(answer, dialect)
    if status == 405:
        assert answer.headers.get("Allow")


@pytest.mark.parametrize(
    "line",
    [
        b"FOO /v1/models HTTP/1.1",
        b"TRACE / HTTP/1.1",
        b"CONNECT evil:443 HTTP/1.1",
        b"GET http://evil.example/v1/models HTTP/1.1",
        b"GET /v1/models HTTP/9.9",
        b"GET  /v1/models HTTP/1.1",
        b"GET /v1/models\x00 HTTP/1.1",
    ],
)
async def test_odd_request_lines(gw: Rig, line: bytes) -> None:
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, line + b"\r\nHost: gw\r\nConnection: close\r\n")
    gw.record(answer.status, {200, 400, 404, 405, 505}, repr(line))


# --- model ids -----------------------------------------------------------------------------------


def _evil_ids(evil_host: str) -> list[str]:
    return [
        "../../admin",
        "org/../../admin",
        "..",
        "org/..",
        "./org/x",
        "org/./x",
        "org//x",
        "/org/x",
        f"http://{evil_host}/x",
        f"https://{evil_host}/x",
        f"//{evil_host}/x",
        f"{evil_host}/x",
        f"x@{evil_host}",
        f"org/x@{evil_host}",
        f"@{evil_host}/x",
        "org%2Fx",
        "org%2F..%2F..%2Fx",
        "org/x%00",
        "org/x?y=1",
        "org/x#frag",
        "org/x\r\nHost: evil",
        "org/x\x00",
        "org/x\x07",
        "org/x\u202e",
        "org/ｘ",
        "org/x y",
        "org\\x",
        "a" * 10_000,
        "org/x:provider:more",
        f"org/x:{evil_host}",
        "~root/x",
        "org/x/y/z",
    ]


async def test_model_ids_in_bodies_never_reach_another_host(gw: Rig, evil: TestServer) -> None:
    evil_host = f"{evil.host}:{evil.port}"
    for model in _evil_ids(evil_host):
        for path, body in (
            (CHAT, _chat(model=model)),
            ("/v1/embeddings", {"model": model, "input": "x"}),
            ("/v1/completions", {"model": model, "prompt": "x"}),
        ):
            answer = await gw.send("POST", path, json=body, expect={200, 400, 404})
            if answer.status != 200:
                _check_error(answer, "openai")


async def test_model_ids_in_paths_never_reach_another_host(gw: Rig, evil: TestServer) -> None:
    evil_host = f"{evil.host}:{evil.port}"
    for model in _evil_ids(evil_host):
        quoted = "".join(
            ch if 32 < ord(ch) < 127 and ch not in "?#%" else f"%{b:02X}"
            for ch in model
            for b in ([ord(ch)] if ord(ch) < 128 else list(ch.encode()))
        )
        for suffix in ("", "/v1/chat/completions", "/generate", "/pipeline/text-generation"):
            for prefix in ("/models/", "/hf-inference/models/"):
                gw.tally.sent += 1
                head = (
                    f"POST {prefix}{quoted}{suffix} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                    f"Content-Length: 32\r\nConnection: close\r\n"
                ).encode()
                answer = await raw_request(gw.gw_url, head, b'{"inputs": "x", "messages": [{}]}'[:32])
                gw.record(answer.status, {200, 400, 404}, f"{prefix}{quoted[:40]}{suffix}")


async def test_raw_request_targets_with_traversal(gw: Rig) -> None:
    """Dot segments and encoded slashes sent verbatim (no client normalises them away)."""
    targets = [
        b"/models/org/../../../etc/passwd",
        b"/models/..%2F..%2Fetc%2Fpasswd",
        b"/models/%2e%2e/%2e%2e/x",
        b"/hf-inference/models/org/gen/../../../_sim/stats",
        b"/models/org%2Fgen",
        b"/models//evil/x",
        b"/pipeline/text-generation/..%2Fx",
        b"/models/org/gen%00",
        b"/v1/models/%2e%2e%2f%2e%2e",
    ]
    for target in targets:
        gw.tally.sent += 1
        answer = await raw_request(
            gw.gw_url,
            b"POST " + target + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Content-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n",
            b'{"inputs": "x"}',
        )
        gw.record(answer.status, {200, 400, 404, 405}, target.decode())
    assert not any(r.path.startswith("/_sim") for r in gw.sim.requests)


async def test_expect_continue_with_a_huge_body_is_refused_before_it_is_sent(gw: Rig) -> None:
    """The client waits for `100 Continue` before sending; an oversized body gets 413 instead, unsent."""
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n"
    )
    gw.tally.sent += 1
    answer = await raw_request(gw.gw_url, head)  # headers only: nothing of the body is ever sent
    gw.record(answer.status, {413}, "Expect: 100-continue, 1 GB")
    assert orjson.loads(answer.body)["error"]["code"] == "payload_too_large"
    assert answer.header("x-request-id")


@pytest.mark.parametrize("expect", ["100-continue", "0", "something-else"])
async def test_expect_header_values(gw: Rig, expect: str) -> None:
    """`100-continue` works as HTTP says; unknown expectations are ignored (not a bare-text 417)."""
    answer = await gw.send(
        "POST", "/v1/embeddings", json={"model": "oai/e", "input": "x"}, headers={"Expect": expect}, expect={200}
    )
    assert answer.json()["data"]
