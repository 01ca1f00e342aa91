"""The road's prepare / abandon protocol (pipeline.build_pipeline): what a prepare started is always undone."""

from __future__ import annotations

import logging

import pytest

from gateway.core.call import Answer, Call, Dialect, Op, Reply, Route
from gateway.core.config import ModelConfig
from gateway.core.errors import UpstreamUnreachable
from gateway.core.pipeline import Handler, build_pipeline


def _call() -> Call:
    route = Route("m", "m", None, (), ModelConfig(name="m"))
    return Call(request_id="req-1", dialect=Dialect.OPENAI, op=Op.CHAT, route_label="chat", model="m",
                route=route, body=None, raw=b"")


started: dict[int, set[str]] = {}  # id(call) -> the names of the stages whose work is still to undo


class Starting:
    """A stage whose prepare starts work (noted on the call, counted in `pending`) that its abandon must undo."""

    def __init__(self, name: str, *, abandon_fails: bool = False) -> None:
        self.name = name
        self.abandon_fails = abandon_fails
        self.undone = False

    def prepare(self, call: Call) -> bool:
        started.setdefault(id(call), set()).add(self.name)
        call.pending += 1
        return False

    def abandon(self, call: Call) -> None:
        if self.name in started.get(id(call), set()):
            started[id(call)].discard(self.name)
            self.undone = True
        if self.abandon_fails:
            raise RuntimeError(f"{self.name}: abandon failed")

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        return await nxt(call)


class FailingPrepare(Starting):
    def prepare(self, call: Call) -> bool:
        raise RuntimeError("prepare failed")


async def _ok(call: Call) -> Answer:
    return Reply(200, b"{}")


async def _unavailable(call: Call) -> Answer:
    raise UpstreamUnreachable("upstream down")


async def test_a_prepare_that_raises_still_undoes_what_the_earlier_prepares_started() -> None:
    started = Starting("lookup")
    road = build_pipeline([started, FailingPrepare("take")], _ok)
    with pytest.raises(RuntimeError, match="prepare failed"):
        await road(_call())
    assert started.undone  # e.g. a queued cache claim lets its lock go instead of holding it lock_ttl


async def test_an_abandon_that_raises_is_logged_and_the_other_abandons_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing, later = Starting("first", abandon_fails=True), Starting("second")
    # Neither stage is reached: both have their prepared work abandoned once the call is over.
    road = build_pipeline([failing, later], _ok)
    with caplog.at_level(logging.ERROR, logger="gateway.pipeline"):
        answer = await road(_call())
    assert isinstance(answer, Reply) and answer.status == 200  # the answer is not lost to the failure
    assert failing.undone and later.undone
    assert any(r.exc_info and "first: abandon failed" in str(r.exc_info[1]) for r in caplog.records)


async def test_an_abandon_that_raises_does_not_replace_the_calls_own_error() -> None:
    failing, later = Starting("first", abandon_fails=True), Starting("second")
    road = build_pipeline([failing, later], _unavailable)
    with pytest.raises(UpstreamUnreachable):
        await road(_call())
    assert later.undone
