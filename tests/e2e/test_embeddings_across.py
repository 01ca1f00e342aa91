"""Embeddings across dialects: InferenceClient against an OpenAI-compatible upstream, openai against an HF one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from openai import OpenAI

from tests.support.thread_stack import CLIENT_TOKEN, Stack


def test_feature_extraction_on_an_openai_route_is_served_by_its_embeddings(stack: Stack) -> None:
    client = InferenceClient(model=f"{stack.gw_url}/models/oai/embedder", token=CLIENT_TOKEN)
    vectors = client.feature_extraction(["first text", "second text"])  # no `task:` on the route
    assert vectors.shape[0] == 2 and vectors.shape[1] > 0
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    single = client.feature_extraction("first text")
    np.testing.assert_allclose(single[0], vectors[0], rtol=1e-6)
    paths = stack.call_soon(lambda: {r.path for r in stack.sim.requests if r.model == "oai/embedder"})
    assert paths == {"/v1/embeddings"}


def test_other_hf_tasks_on_an_openai_route_say_what_would_work(stack: Stack) -> None:
    client = InferenceClient(model=f"{stack.gw_url}/models/oai/sst2", token=CLIENT_TOKEN)
    with pytest.raises(HfHubHTTPError) as caught:
        client.text_classification("I love this")
    assert caught.value.response.status_code == 422
    message = caught.value.response.json()["error"]
    assert "'openai' upstream" in message and "chat, completions and embeddings" in message and "task:" in message


@pytest.mark.parametrize("text", ["one two three four five six seven", ["a" * 40, "b" * 3]])
def test_openai_embeddings_from_an_hf_backend_report_estimated_tokens(stack: Stack, text: str | list[str]) -> None:
    client = OpenAI(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client", max_retries=0)
    r = client.embeddings.create(model="BAAI/bge-small-en-v1.5", input=text, encoding_format="float")
    chars = len(text) if isinstance(text, str) else sum(len(t) for t in text)
    assert r.usage.prompt_tokens == math.ceil(chars / 4) > 0  # the rate limiter's estimate: characters / 4
    assert r.usage.total_tokens == r.usage.prompt_tokens
