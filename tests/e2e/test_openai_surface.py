"""Model ids of other backends and the model catalogue, through the real openai SDK.

This module runs its own gateway, without a `*` route, so ids nobody routes can be asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai import OpenAI

from gateway.core.config import Settings, load_settings
from tests.support.thread_stack import Stack, start_stack, stop_stack

FIREWORKS = "accounts/fireworks/models/llama-v3p1-8b-instruct"
GGUF = "nomic-ai/nomic-embed-text-v1.5/GGUF"


def _settings(sim_url: str) -> Settings:
    return load_settings(
        None,
        upstream_url=sim_url,
        upstreams={"hf": {"kind": "hf"}, "oai": {"kind": "openai", "base_url": f"{sim_url}/v1"}},
        models=[
            {"name": "gpt-sim", "aliases": ["fast"], "deployments": [{"upstream": "oai"}]},
            {"name": "accounts/fireworks/models/*", "deployments": [{"upstream": "oai"}]},
            {"name": "nomic-ai/*", "deployments": [{"upstream": "oai"}]},
            {"name": "hf/*", "deployments": [{"upstream": "hf"}]},
        ],
    )


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    s = start_stack(_settings)
    yield s
    stop_stack(s)


@pytest.fixture
def client(stack: Stack) -> OpenAI:
    return OpenAI(base_url=f"{stack.gw_url}/v1", api_key="sk-fake-client", max_retries=0)


def test_ids_of_other_backends_reach_an_openai_upstream_as_they_are(client: OpenAI, stack: Stack) -> None:
    r = client.chat.completions.create(model=FIREWORKS, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    assert r.choices[0].message.content
    e = client.embeddings.create(model=GGUF, input=["a", "b"], encoding_format="float")
    assert len(e.data) == 2
    seen = stack.call_soon(lambda: [req.model for req in stack.sim.requests if req.path == "/v1/embeddings"])
    assert GGUF in seen


def test_where_the_id_becomes_an_upstream_path_it_must_look_like_org_name(client: OpenAI, stack: Stack) -> None:
    before = stack.call_soon(lambda: len(stack.sim.requests))
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="hf/nomic-embed/GGUF", input="a")  # the hf upstream puts it in its URL path
    assert "URL path" in caught.value.message
    assert stack.call_soon(lambda: len(stack.sim.requests)) == before  # refused before anything was sent
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-sim\u202e", messages=[{"role": "user", "content": "x"}])


def test_models_list_names_models_and_aliases_and_says_which_patterns_route(client: OpenAI) -> None:
    page = client.models.list()
    assert [m.id for m in page.data] == ["gpt-sim", "fast"]
    assert all(m.owned_by == "oai" for m in page.data)
    raw = client.models.with_raw_response.list().http_response.json()
    assert raw["routes"] == [{"pattern": "accounts/fireworks/models/*", "upstreams": ["oai"]},
                             {"pattern": "nomic-ai/*", "upstreams": ["oai"]},
                             {"pattern": "hf/*", "upstreams": ["hf"]}]


@pytest.mark.parametrize("model, owner", [("gpt-sim", "oai"), ("fast", "oai"), (FIREWORKS, "oai"), (GGUF, "oai"),
                                          ("hf/any-model:novita", "hf")])
def test_retrieve_answers_for_every_routed_id(client: OpenAI, model: str, owner: str) -> None:
    m = client.models.retrieve(model)
    assert (m.id, m.object, m.owned_by) == (model, "model", owner)


def test_retrieve_of_an_unrouted_id_is_a_404_in_openai_shape(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("someone/else")
    assert caught.value.code == "model_not_found"
