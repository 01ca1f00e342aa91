"""Property: whatever a client sends, the gateway answers, never with a 500, and stays healthy.

Thousands of generated requests (hypothesis; bounded to a few seconds) go to a real gateway in
front of the simulator (tests/e2e/stack.py: both on real ports, in a background loop): random
methods, paths, percent-encoded junk, headers, and bodies that range from valid OpenAI/HF
requests with fields of every JSON type to raw bytes. Every answer must be one whole HTTP
answer; errors must be JSON in the route's dialect with a request id; `/healthz` answers at the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from gateway.core.config import Settings, load_settings
from tests.support.rig import Tally, report
from tests.support.thread_stack import Stack, start_stack, stop_stack

pytestmark = pytest.mark.slow  # hypothesis runs hundreds of requests per test

EXAMPLES = 1200  # per property; the three together stay well under 30 s
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _settings(sim_url: str) -> Settings:
    return load_settings(
        None, upstream_url=sim_url, request_timeout=3.0, max_body_bytes=64 * 1024,
        upstreams={"hf": {"kind": "hf", "read_timeout": 2.0},
                   "oai": {"kind": "openai", "base_url": f"{sim_url}/v1", "read_timeout": 2.0}},
        models=[{"name": "oai/*", "deployments": [{"upstream": "oai"}]},
                {"name": "*", "deployments": [{"upstream": "hf"}]}],
    )


class Fuzzer:
    """Sends requests from test code to the stack's loop and checks each answer."""

    def __init__(self, stack: Stack, tally: Tally) -> None:
        self.stack = stack
        self.tally = tally
        self.session: aiohttp.ClientSession = self._on_loop(self._session())

    def _on_loop(self, coro: Any) -> Any:
        assert self.stack.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.stack.loop).result(timeout=30)

    @staticmethod
    async def _session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    def close(self) -> None:
        self._on_loop(self.session.close())

    def send(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> tuple[int, Any, bytes]:
        self.tally.sent += 1
        status, hdrs, data = self._on_loop(self._send(method, target, headers, body))
        self.tally.answered += 1
        if status >= 500:
            self.tally.gateway_5xx += status == 500
        return status, hdrs, data

    async def _send(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> Any:
        url = URL(self.stack.gw_url + target, encoded=True)
        async with self.session.request(method, url, headers=headers, data=body, allow_redirects=False) as resp:
            return resp.status, resp.headers.copy(), await resp.read()


@pytest.fixture(scope="module")
def fuzz_tally(pytestconfig: pytest.Config) -> Iterator[Tally]:
    tally = Tally("fuzz")
    yield tally
    report(pytestconfig, tally)


@pytest.fixture(scope="module")
def fuzzer(fuzz_tally: Tally) -> Iterator[Fuzzer]:
    stack = start_stack(_settings)
    f = Fuzzer(stack, fuzz_tally)
    yield f
    try:
        status, _, _ = f.send("GET", "/healthz", {}, None)
        assert status == 200, "the gateway stopped answering /healthz after the fuzzing"
    finally:
        f.close()
        stop_stack(stack)


def _check(method: str, target: str, status: int, headers: Any, body: bytes) -> None:
    assert status != 500, f"{method} {target} -> 500: {body[:300]!r}"
    if status < 400 or method == "HEAD":
        return
    if status == 417 and not (method == "POST" and target in POST_ROUTES):
        return  # aiohttp's own answer to an unknown Expect value where no gateway route matched (404/405)
    assert headers.get("X-Request-Id"), f"{method} {target} -> {status} without a request id"
    data = orjson.loads(body)
    assert isinstance(data, dict) and data.get("error"), f"{method} {target} -> {status}: {body[:300]!r}"
    if "/v1/" in target.split("?")[0] or target.startswith("/v1"):
        if not isinstance(data["error"], dict):  # the HF shape is fine only where the route is HF-style
            assert not target.startswith("/v1/"), f"{target}: OpenAI route answered an HF-shaped error"
        else:
            assert data["error"].get("message")


# --- strategies ----------------------------------------------------------------------------------
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=24)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
model_names = st.sampled_from(["oai/chat", "org/gen", "oai/embed", "org/sst-model", "", "..", "org/../x",
                               "http://127.0.0.1:1/x", "org/x:prov", "a" * 300]) | st.text(max_size=40)
messages = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "tool"]),
                                           "content": st.text(max_size=40) | json_values}), max_size=3)
openai_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": model_names | json_values,
        "messages": messages | json_values,
        "prompt": st.text(max_size=30) | json_values,
        "input": st.text(min_size=1, max_size=30) | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers(-5, 50) | json_values,
        "temperature": st.floats(0, 2) | json_values,
        "n": st.integers(-1, 3) | json_values,
        "encoding_format": st.sampled_from(["float", "base64", "hex"]),
        "stream_options": json_values,
        "seed": st.integers(0, 10),
        "tools": json_values,
        "instructions": st.text(max_size=30) | json_values,
        "max_output_tokens": st.integers(-5, 50) | json_values,
        "background": st.booleans() | json_values,
    },
)
hf_bodies = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.text(max_size=40) | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(
                [
                    "max_new_tokens",
                    "candidate_labels",
                    "top_k",
                    "details",
                    "seed",
                    "return_full_text",
                    "do_sample",
                    "aggregation_strategy",
                    "width",
                ]
            ),
            json_values,
            max_size=4,
        )
        | json_values,
        "options": json_values,
        "stream": st.booleans() | json_values,
        "normalize": json_values,
        "query": json_values,
        "texts": json_values,
    },
)


def _dumps(value: Any) -> bytes:
    """The stdlib encoder: it writes what orjson will not (huge integers, Infinity, lone surrogates)."""
    return json.dumps(value).encode()


bodies = openai_bodies.map(_dumps) | hf_bodies.map(_dumps) | json_values.map(_dumps) | st.binary(max_size=200)
POST_ROUTES = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/models/org/gen",
    "/models/oai/chat",
    "/hf-inference/models/org/gen",
    "/hf-inference/models/org/gen/v1/chat/completions",
    "/models/org/gen/generate",
    "/models/org/gen/generate_stream",
    "/models/org/gen/embed",
    "/models/org/gen/predict",
    "/models/org/gen/rerank",
    "/pipeline/text-classification/org/sst-model",
    "/hf-inference/models/org/sst-model/pipeline/zero-shot-classification",
]
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
headers = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "Accept",
            "X-Request-Id",
            "x-wait-for-model",
            "x-use-cache",
            "Cache-Control",
            "X-Gateway-Timeout",
            "Authorization",
            "x-hf-bill-to",
            "api-key",
            "Range",
            "Expect",
            "Content-Encoding",
        ]
    ),
    header_values,
    max_size=4,
)
path_junk = st.text(max_size=40).map(lambda t: quote(t, safe="/:@%"))
prefixes = st.sampled_from(
    [
        "/",
        "/v1/",
        "/v1/models/",
        "/models/",
        "/hf-inference/models/",
        "/pipeline/",
        "/pipeline/text-generation/",
        "/_sim/",
        "/healthz",
        "/metrics/",
        "/models/org/gen/",
    ]
)


@FUZZ
@given(route=st.sampled_from(POST_ROUTES), body=bodies, hdrs=headers)
def test_inference_routes_never_answer_500(fuzzer: Fuzzer, route: str, body: bytes, hdrs: dict[str, str]) -> None:
    if "Content-Type" not in hdrs:
        hdrs["Content-Type"] = "application/json"
    hdrs.pop("Content-Encoding", None) if hdrs.get("Content-Encoding", "").lower() in ("gzip", "br") else None
    status, h, data = fuzzer.send("POST", route, hdrs, body)
    _check("POST", route, status, h, data)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    prefix=prefixes,
    junk=path_junk,
    query=st.none() | path_junk,
    hdrs=headers,
    body=st.none() | bodies,
)
def test_any_method_and_path_never_answers_500(
    fuzzer: Fuzzer, method: str, prefix: str, junk: str, query: str | None, hdrs: dict[str, str], body: bytes | None
) -> None:
    target = prefix + junk + (f"?{query}" if query else "")
    if not target.startswith("/"):
        target = "/" + target
    if method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        body = None
    status, h, data = fuzzer.send(method, target, hdrs, body)
    _check(method, target, status, h, data)


@FUZZ
@given(model=model_names, stream=st.booleans(), extra=openai_bodies)
def test_model_names_never_answer_500(fuzzer: Fuzzer, model: str, stream: bool, extra: dict[str, Any]) -> None:
    body = {**extra, "model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    status, h, data = fuzzer.send("POST", "/v1/chat/completions", {"Content-Type": "application/json"}, _dumps(body))
    _check("POST", "/v1/chat/completions", status, h, data)
