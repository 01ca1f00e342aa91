"""LangChain's OpenAI integration (langchain-openai), unmodified, through a listening gateway."""

from __future__ import annotations

import pytest

from tests.support.thread_stack import Stack

langchain_openai = pytest.importorskip("langchain_openai")
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _chat(base: str) -> object:
    return langchain_openai.ChatOpenAI(model=MODEL, base_url=base, api_key="sk-fake-client", max_retries=0,
                                       max_tokens=8, temperature=0)


def test_chat_invoke_and_stream_match_the_upstream(stack: Stack) -> None:
    via, direct = _chat(f"{stack.gw_url}/v1"), _chat(f"{stack.sim_url}/v1")
    answer = via.invoke("What is a token bucket?")  # type: ignore[attr-defined]
    assert answer.content == direct.invoke("What is a token bucket?").content  # type: ignore[attr-defined]
    streamed = "".join(str(c.content) for c in via.stream("What is a token bucket?"))  # type: ignore[attr-defined]
    assert streamed == answer.content


async def test_async_chat(stack: Stack) -> None:
    answer = await _chat(f"{stack.gw_url}/v1").ainvoke("hi")  # type: ignore[attr-defined]
    assert answer.content


def test_embeddings(stack: Stack) -> None:
    # check_embedding_ctx_length=False: otherwise the client tokenizes with tiktoken, which downloads its
    # encodings at first use, and sends token ids.
    emb = langchain_openai.OpenAIEmbeddings(model="BAAI/bge-small-en-v1.5", base_url=f"{stack.gw_url}/v1",
                                            api_key="sk-fake-client", check_embedding_ctx_length=False)
    docs = emb.embed_documents(["a", "b"])
    assert len(docs) == 2 and emb.embed_query("a") == pytest.approx(docs[0])
