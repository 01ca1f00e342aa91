"""The real openai SDK (sync and async, stream and not) through a listening gateway."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.support.thread_stack import Stack

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture
def client(stack: Stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.gw_url}/v1/", api_key="sk-fake-client", max_retries=0)


@pytest.fixture
def direct(stack: Stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.sim_url}/v1/", api_key="sk-fake-client", max_retries=0)


@pytest.mark.parametrize("model", [MODEL, "tgi/chat", "chat-default", "oai/gpt-sim", f"{MODEL}:novita"])
def test_chat_plain_and_stream(client: OpenAI, model: str) -> None:
    msgs = [{"role": "user", "content": "What is the difference between LSTM and Transformer?"}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, temperature=0.5)
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.total_tokens > 0
    stream = client.chat.completions.create(model=model, messages=msgs, max_tokens=8, stream=True,
                                            stream_options={"include_usage": True})
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(parts) == r.choices[0].message.content


def test_same_answer_as_the_upstream(client: OpenAI, direct: OpenAI) -> None:
    msgs = [{"role": "user", "content": "Say hello"}]
    a = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6)
    b = direct.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_completions(client: OpenAI) -> None:
    r = client.completions.create(model="tgi/chat", prompt="Once upon", max_tokens=5)
    assert r.choices[0].text
    text = "".join(c.choices[0].text for c in client.completions.create(model="tgi/chat", prompt="Once upon",
                                                                          max_tokens=5, stream=True) if c.choices)
    assert text == r.choices[0].text


@pytest.mark.parametrize("model", ["BAAI/bge-small-en-v1.5", "tei/embed", "oai/embedder"])
def test_embeddings_base64_default_and_float(client: OpenAI, model: str) -> None:
    r = client.embeddings.create(model=model, input=["a", "b"])
    assert len(r.data) == 2
    f = client.embeddings.create(model=model, input=["a", "b"], encoding_format="float")
    np.testing.assert_allclose(np.array(r.data[0].embedding), np.array(f.data[0].embedding), rtol=1e-6)


def test_models_list(client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"tgi/chat", "chat-default", "tei/embed"} <= set(ids)


def test_errors_are_typed(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tgi/chat", messages=[], max_tokens=3)


async def test_async_client(stack: Stack) -> None:
    client = AsyncOpenAI(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client", max_retries=0)
    r = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert r.choices[0].message.content
    stream = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                  max_tokens=4, stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == r.choices[0].message.content
    e = await client.embeddings.create(model="BAAI/bge-small-en-v1.5", input="x")
    assert len(e.data[0].embedding) > 0
    await client.close()
