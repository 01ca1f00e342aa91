"""Upstream errors through the gateway raise what they raise directly: the real openai SDK and LangChain.

The simulator plays an OpenAI-compatible server that refuses with the bodies real ones send; each
call is made against it directly and through the gateway, and the exceptions must match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest
from openai import OpenAI

from gateway.simulator.config import FaultSpec
from tests.support.thread_stack import Stack

CONTEXT = {"error": {
    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9100 tokens.",
    "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}
# LangChain (langchain-openai 1.x) recognises an overflow by `context_length_exceeded` in str(error),
# which openai 2.x+ no longer puts there (only the message), or by phrases such as this one.
LC_CONTEXT = {"error": {**CONTEXT["error"], "message": "Input tokens exceed the configured limit of 8192 tokens."}}
MSGS = [{"role": "user", "content": "a very long conversation"}]


def _fault(stack: Stack, model: str, *faults: FaultSpec) -> None:
    stack.call_soon(lambda: stack.sim.set_faults(model, list(faults)))


def _both(stack: Stack) -> tuple[OpenAI, OpenAI]:
    direct = OpenAI(base_url=f"{stack.sim_url}/v1", api_key="sk-fake-client", max_retries=0)
    via = OpenAI(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client", max_retries=0)
    return direct, via


def _raised(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except Exception as exc:
        return exc
    raise AssertionError("no exception")


@pytest.mark.parametrize("stream", [False, True])
def test_openai_bad_request_carries_the_upstreams_code_and_param(stack: Stack, stream: bool) -> None:
    model = f"oai/too-long-{stream}"
    _fault(stack, model, FaultSpec(kind="status", status=400, body=CONTEXT))
    for client in _both(stack):
        exc = _raised(lambda c=client: list(c.chat.completions.create(model=model, messages=MSGS, stream=stream))
                      if stream else c.chat.completions.create(model=model, messages=MSGS))
        assert isinstance(exc, openai.BadRequestError)
        assert (exc.code, exc.param, exc.type) == ("context_length_exceeded", "messages", "invalid_request_error")


@pytest.mark.parametrize("status, code, cls", [(429, "insufficient_quota", openai.RateLimitError),
                                               (404, "model_not_found", openai.NotFoundError)])
def test_other_codes_clients_branch_on(stack: Stack, status: int, code: str, cls: type[Exception]) -> None:
    model = f"oai/refuses-{code}"
    body = {"error": {"message": f"simulated {code}", "type": code, "param": None, "code": code}}
    _fault(stack, model, FaultSpec(kind="status", status=status, body=body))
    direct, via = _both(stack)
    for client in (direct, via):
        exc = _raised(lambda c=client: c.chat.completions.create(model=model, messages=MSGS))
        assert isinstance(exc, cls) and exc.code == code, client.base_url


def test_an_in_band_stream_error_keeps_its_code(stack: Stack) -> None:
    model = "oai/filtered-mid-answer"
    event = {"error": {"message": "filtered", "type": "invalid_request_error", "param": None, "code": "content_filter"}}
    _fault(stack, model, FaultSpec(kind="midstream", after_events=2, body=event))
    for client in _both(stack):
        stream = client.chat.completions.create(model=model, messages=MSGS, stream=True)
        exc = _raised(lambda s=stream: list(s))
        assert isinstance(exc, openai.APIError) and exc.code == "content_filter"


@pytest.mark.parametrize("stream", [False, True])
def test_langchain_raises_its_context_overflow_error_as_it_does_directly(stack: Stack, stream: bool) -> None:
    chat_openai = pytest.importorskip("langchain_openai").ChatOpenAI
    from langchain_core.exceptions import ContextOverflowError

    model = f"oai/lc-too-long-{stream}"
    _fault(stack, model, FaultSpec(kind="status", status=400, body=LC_CONTEXT))
    raised = []
    for base in (f"{stack.sim_url}/v1", f"{stack.gw_url}/v1"):
        llm = chat_openai(model=model, base_url=base, api_key="sk-fake-client", max_retries=0)
        exc = _raised(lambda m=llm: list(m.stream("hello")) if stream else m.invoke("hello"))
        assert isinstance(exc, ContextOverflowError), base
        assert isinstance(exc, openai.BadRequestError)
        raised.append((type(exc), exc.code, exc.param, exc.body))
    assert raised[0] == raised[1]
