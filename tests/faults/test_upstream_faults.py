"""Misbehaving upstreams: every fault gives the client one clear answer in its dialect, in time,
and leaves nothing behind (no task, no upstream connection in use, nothing in flight upstream).

Semantics these tests pin down (README "Security" and "Errors"):
- a failure before the first byte reaches the client is an HTTP error: 502 for refused, reset,
  truncated, garbage or oversized answers, 504 when the upstream is too slow;
- after the first event of a stream has gone out, a failure ends the stream with one in-band
  error event in the route's dialect and no `[DONE]`;
- `read_timeout` (per upstream) bounds the silence between two reads, so an extremely slow drip
  ends with an in-band timeout event; the request's deadline (`request_timeout`, or the
  client's shorter `X-Gateway-Timeout`) bounds the whole request, streams included, so a stream
  that never ends is closed at the deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.rig import Answer, Rig, Tally, rig

DEADLINE = 5.0  # the rig's request_timeout
OK = "ok"  # 200, complete and well-formed
INBAND = "inband"  # 200 stream that ends with one in-band error event


@dataclass(frozen=True)
class Case:
    fault: str
    complete: int | str  # expected for a non-stream request
    stream: int | str  # expected for a stream request
    headers: tuple[tuple[str, str], ...] = ()


CASES = [
    Case("refused", 502, 502),
    Case("reset-before", 502, 502),
    Case("reset-after-headers", 502, 502),
    Case("truncated-json", 502, 502),
    Case("garbage", 502, 502),
    Case("wrong-content-type", OK, 502),
    Case("cut-k3", OK, INBAND),
    Case("midstream-k3", OK, INBAND),
    Case("drip-30s", OK, INBAND),  # read_timeout (1 s here) ends the silence between events
    Case("slow-ttfb-30s", 504, 504),
    Case("huge-body", 502, 502),  # 8 MiB against a 1 MiB cap
    Case("huge-body-512kb", OK, OK),  # under the caps (1 MiB body, 1 MiB SSE event)
    Case("endless-stream+drip-20ms", OK, INBAND, (("X-Gateway-Timeout", "1"),)),  # the deadline ends it
]


def _model(dialect: str, fault: str) -> str:
    if fault == "refused":
        return "dead/gen"
    return f"oai/chat-{fault}" if dialect == "openai" else f"org/gen-{fault}"


def _request(dialect: str, fault: str, stream: bool) -> tuple[str, dict[str, Any]]:
    model = _model(dialect, fault)
    if dialect == "openai":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "say something"}],
                                "max_tokens": 8}
        if stream:
            body["stream"] = True
        return "/v1/chat/completions", body
    body = {"inputs": "say something", "parameters": {"max_new_tokens": 8}}
    if stream:
        body["stream"] = True
    return f"/models/{model}", body


def _check_error_body(dialect: str, answer: Answer) -> None:
    data = answer.json()
    if dialect == "openai":
        assert isinstance(data["error"], dict) and data["error"]["message"], data
        assert answer.headers.get("X-Error-Message")
    else:
        assert isinstance(data["error"], str) and data["error"], data
    assert answer.headers.get("X-Request-Id")
    assert "Content-Length" in answer.headers  # never chunked: the HF async client needs it


def _check_inband(dialect: str, answer: Answer) -> None:
    assert answer.status == 200 and answer.stream, answer.body[:300]
    err = answer.error_event()
    assert err is not None, f"no in-band error event at the end: {answer.body[-300:]!r}"
    if dialect == "openai":
        assert isinstance(err["error"], dict) and err["error"]["message"]
    else:
        assert isinstance(err["error"], str) and err.get("error_type")
    assert b"[DONE]" not in answer.body  # a failed stream never claims it finished


def _check_ok(dialect: str, stream: bool, answer: Answer) -> None:
    assert answer.status == 200, answer.body[:300]
    if not stream:
        answer.json()
        return
    assert answer.stream
    assert answer.error_event() is None
    if dialect == "openai":
        assert answer.events[-1] == b"data: [DONE]"


@pytest.mark.parametrize("dialect", ["openai", "hf"])
@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
async def test_upstream_fault(case: Case, stream: bool, dialect: str, tally: Tally) -> None:
    expected = case.stream if stream else case.complete
    path, body = _request(dialect, case.fault, stream)
    statuses = {200} if expected in (OK, INBAND) else {int(expected)}
    async with rig(tally) as r:
        # A hang guard, not a speed check: the gateway's own deadline (request_timeout 5 s here) must
        # end the request; the slack is for a loaded machine.
        async with asyncio.timeout(DEADLINE + 2.0):
            answer = await r.send("POST", path, json=body, headers=dict(case.headers), expect=statuses)
        if expected == OK:
            _check_ok(dialect, stream, answer)
        elif expected == INBAND:
            _check_inband(dialect, answer)
        else:
            _check_error_body(dialect, answer)
        await r.settled()
        # The gateway's connection to the upstream is either back in the pool or gone: never stuck.
        assert all(active == 0 for active, _ in r.pools().values()), r.pools()


async def test_many_faults_at_once_leave_nothing_behind(tally: Tally) -> None:
    """All the faults above, concurrently: still one answer each, nothing left behind."""
    async with rig(tally) as r:
        jobs = []
        for case in CASES:
            for dialect in ("openai", "hf"):
                for stream in (False, True):
                    expected = case.stream if stream else case.complete
                    statuses = {200} if expected in (OK, INBAND) else {int(expected)}
                    path, body = _request(dialect, case.fault, stream)
                    jobs.append(r.send("POST", path, json=body, headers=dict(case.headers), expect=statuses))
        await asyncio.gather(*jobs)  # every answer is recorded against its `expect`; the tally fails the test
        await r.settled()
        assert await _healthy(r)


async def _healthy(r: Rig) -> bool:
    assert r.session is not None
    async with r.session.get(r.gw_url + "/healthz") as resp:
        return resp.status == 200
