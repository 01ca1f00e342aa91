"""The cache envelope: replies, streams and leader errors survive the round trip; junk reads as absent."""

from __future__ import annotations

import zlib

import pytest
from multidict import CIMultiDict

from gateway.core.call import Reply, StreamReply
from gateway.core.errors import BadRequest, GatewayError, ModelLoading, UpstreamStatusError, UpstreamTimeout
from gateway.policies.cache.entry import decode, encode_reply, encode_skip, encode_stream
from gateway.policies.cache.leader_error import encode_error, rebuild_error
from tests.support.cache_kit import drain


def test_reply_round_trip_keeps_status_type_body_and_useful_headers_only() -> None:
    reply = Reply(200, b'{"a":1}', "application/json",
                  {"x-compute-time": "0.2", "X-RateLimit-Remaining": "9", "ratelimit-reset": "3"})
    env = decode(encode_reply(reply, at=1000.0, compress_over=4096))
    assert env is not None and env.kind == "reply"
    back = env.answer(now=1012.5)
    assert isinstance(back, Reply)
    assert (back.status, back.body, back.content_type) == (200, b'{"a":1}', "application/json")
    assert back.headers == {"x-compute-time": "0.2", "Age": "12"}


def test_a_binary_answer_with_the_transports_header_names_round_trips() -> None:
    # The transport's header names are case-insensitive `istr`s, which orjson refuses as keys.
    upstream = CIMultiDict({"x-inference-provider": "hf-inference", "Content-Type": "audio/wav"})
    headers = {k: v for k, v in upstream.items() if k.lower().startswith("x-inference")}
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(300)
    env = decode(encode_reply(Reply(200, audio, "audio/wav", headers), at=5.0, compress_over=64))
    assert env is not None
    back = env.answer(now=5.0)
    assert isinstance(back, Reply) and (back.body, back.content_type) == (audio, "audio/wav")
    assert back.headers == {"x-inference-provider": "hf-inference", "Age": "0"}


def test_large_values_are_compressed_and_small_ones_are_not() -> None:
    body = b'{"embedding":[' + b"0.125," * 5000 + b'0.5]}'
    big = encode_reply(Reply(200, body), at=0.0, compress_over=4096)
    small = encode_reply(Reply(200, b"[1]"), at=0.0, compress_over=4096)
    assert big[1] & 1 and len(big) < len(body) / 5
    assert not small[1] & 1
    env = decode(big)
    assert env is not None and env.body == body and env.stored_size == len(big)


async def test_stream_round_trip_replays_the_same_events() -> None:
    events = [b": hello\n\ndata: {\"t\":1}\n\n", b"data: {\"t\":2}\n\n", b"data: [DONE]\n\n"]
    original = StreamReply(first=events[0], rest=_none(), headers={"x-compute-time": "1"})
    env = decode(encode_stream(events, original, at=5.0, compress_over=10))
    assert env is not None and env.kind == "stream"
    replay = env.answer(now=6.0)
    assert isinstance(replay, StreamReply)
    assert replay.content_type == "text/event-stream" and replay.headers["Age"] == "1"
    assert await drain(replay) == events


async def _none():  # type: ignore[no-untyped-def]
    return
    yield b""


@pytest.mark.parametrize("err", [
    UpstreamStatusError("boom", status=500, upstream_headers={"x-trace": "1"}, body=b'{"error":"boom"}'),
    ModelLoading("loading", estimated_time=42.0, body=b'{"error":"loading"}'),
    UpstreamTimeout("slow"),
    BadRequest("nope"),
    GatewayError("internal gateway error"),
])  # fmt: skip
def test_a_leaders_error_is_rebuilt_as_a_fresh_instance_of_its_class(err: GatewayError) -> None:
    env = decode(encode_error(err, "tok-1", compress_over=4096))
    assert env is not None and env.kind == "error" and env.token == "tok-1"
    one, two = rebuild_error(env), rebuild_error(env)
    assert one is not two
    assert type(one) is type(err)
    assert (one.status, one.code, one.message, one.headers) == (err.status, err.code, err.message, err.headers)
    if isinstance(err, UpstreamStatusError):
        assert isinstance(one, UpstreamStatusError)
        assert (one.body, one.upstream_headers, one.retryable) == (err.body, err.upstream_headers, err.retryable)
    if isinstance(err, ModelLoading):
        assert isinstance(one, ModelLoading)
        assert one.estimated_time == 42.0 and one.headers["Retry-After"] == "42"
        assert one.extra_body() == {"estimated_time": 42.0}


def test_skip_marker_and_junk() -> None:
    env = decode(encode_skip("tok-2"))
    assert env is not None and env.kind == "skip" and env.token == "tok-2"
    assert decode(None) is None
    assert decode(b"") is None
    assert decode(b"\x02\x00whatever") is None  # another envelope version
    assert decode(b"\x01\x01" + zlib.compress(b"\x00\x00\x00\x05{bad")) is None
    assert decode(b"\x01\x00\x00\x00\x00\x02[]") is None  # meta is not an object
    stream = encode_stream([b"data: 1\n\n"], StreamReply(first=b"data: 1\n\n", rest=_none()), 0.0, 4096)
    assert decode(stream[:-2] + b"xx") is not None  # same length: still splits
    assert decode(stream[:-1]) is None  # event lengths no longer add up
