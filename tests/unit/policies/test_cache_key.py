"""Cache keys and plans: what is cacheable, for how long, and which requests share an entry."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.call import Call, Dialect, Flags, Op
from gateway.core.clock import FakeClock
from gateway.core.routing import Router
from gateway.policies.cache.key import CachePlanner, cache_digest, cache_task
from gateway.upstream.fake import FakeUpstream
from tests.support.cache_kit import CHAT, CLASSIFY, EMBED, SHARED, chat_body, make_call, settings

CLOCK = FakeClock()


def _router(models: list[dict[str, Any]] | None = None, base_url: str = "http://hf.test") -> Router:
    cfg = settings(models=models)
    cfg.upstreams["hf"].base_url = base_url
    return Router(cfg.models, {"hf": FakeUpstream("hf", config=cfg.upstreams["hf"])})


def _planner(**cache: Any) -> CachePlanner:
    return CachePlanner(settings(cache).cache, "gwtest")


def _digest(call: Call) -> str:
    return cache_digest(call, cache_task(call), call.route.config.cache.shared)


ROUTER = _router()


def test_key_ignores_key_order_and_fields_that_cannot_change_the_answer() -> None:
    a = make_call(ROUTER, CLOCK, body={"model": EMBED, "input": ["a", "b"], "encoding_format": "float"})
    b = make_call(ROUTER, CLOCK, body={"encoding_format": "float", "user": "u-17", "input": ["a", "b"],
                                       "model": EMBED, "options": {"use_cache": True}, "metadata": {"x": 1}})
    assert _digest(a) == _digest(b)
    nested_a = make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="zero-shot-classification", dialect=Dialect.HF,
                         body={"inputs": "x", "parameters": {"candidate_labels": ["a"], "multi_label": False}})
    nested_b = make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="zero-shot-classification", dialect=Dialect.HF,
                         body={"parameters": {"multi_label": False, "candidate_labels": ["a"]}, "inputs": "x"})
    assert _digest(nested_a) == _digest(nested_b)


def test_key_changes_with_anything_that_changes_the_answer() -> None:
    base = make_call(ROUTER, CLOCK, body={"model": EMBED, "input": "a"})
    other_input = make_call(ROUTER, CLOCK, body={"model": EMBED, "input": "b"})
    other_format = make_call(ROUTER, CLOCK, body={"model": EMBED, "input": "a", "encoding_format": "base64"})
    other_model = make_call(ROUTER, CLOCK, model=CLASSIFY, body={"model": EMBED, "input": "a"})
    other_op = make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="embeddings", body={"model": EMBED, "input": "a"})
    digests = {_digest(c) for c in (base, other_input, other_format, other_model, other_op)}
    assert len(digests) == 5


def test_stream_and_complete_answers_never_share_a_key() -> None:
    body = chat_body(0, stream=True)
    streamed = make_call(ROUTER, CLOCK, model=CHAT, op=Op.CHAT, body=body, stream=True)
    complete = make_call(ROUTER, CLOCK, model=CHAT, op=Op.CHAT, body=body, stream=False)
    assert _digest(streamed) != _digest(complete)
    # include_usage adds a chunk to a stream, so it stays in a stream's key
    with_usage = make_call(ROUTER, CLOCK, model=CHAT, op=Op.CHAT, stream=True,
                           body={**body, "stream_options": {"include_usage": True}})
    assert _digest(with_usage) != _digest(streamed)


def test_tenants_get_their_own_keys_unless_the_route_is_shared() -> None:
    a = make_call(ROUTER, CLOCK, tenant="a")
    b = make_call(ROUTER, CLOCK, tenant="b")
    assert _digest(a) != _digest(b)
    sa = make_call(ROUTER, CLOCK, model=SHARED, tenant="a", body={"model": SHARED, "input": "hello"})
    sb = make_call(ROUTER, CLOCK, model=SHARED, tenant="b", body={"model": SHARED, "input": "hello"})
    assert _digest(sa) == _digest(sb)


def test_upstream_identity_is_in_the_key_but_not_the_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    here = make_call(ROUTER, CLOCK)
    elsewhere = make_call(_router(base_url="http://other.test"), CLOCK)
    assert _digest(here) != _digest(elsewhere)
    monkeypatch.setenv("HF_TOKEN", "hf_fake_test_token_two")
    with_token = make_call(_router(), CLOCK)
    assert _digest(with_token) == _digest(here)
    redeployed = _router(models=[{"name": EMBED, "task": "feature-extraction",
                                  "deployments": [{"upstream": "hf", "model": "other/embedder"}]}])
    assert _digest(make_call(redeployed, CLOCK)) != _digest(here)


@pytest.mark.parametrize(("op", "body", "cacheable"), [
    (Op.EMBEDDINGS, {"model": EMBED, "input": "a"}, True),
    (Op.CHAT, chat_body(0.7), False),
    (Op.CHAT, chat_body(None), False),
    (Op.CHAT, chat_body(0), True),
    (Op.CHAT, chat_body(0.9, seed=42), True),
    (Op.COMPLETIONS, {"model": CHAT, "prompt": "x", "temperature": 1.0}, False),
    (Op.COMPLETIONS, {"model": CHAT, "prompt": "x", "temperature": 0}, True),
    (Op.TGI_GENERATE, {"inputs": "x", "parameters": {"do_sample": False}}, True),
    (Op.TGI_GENERATE, {"inputs": "x", "parameters": {"do_sample": True, "temperature": 0.5}}, False),
    (Op.TEI_EMBED, {"inputs": "x"}, True),
    (Op.TEI_RERANK, {"query": "q", "texts": ["a"]}, True),
])  # fmt: skip
def test_only_deterministic_answers_are_cacheable(op: Op, body: dict[str, Any], cacheable: bool) -> None:
    call = make_call(ROUTER, CLOCK, model=CHAT, op=op, body=body)
    assert (_planner().plan(call) is not None) is cacheable


def test_hf_tasks_follow_their_task() -> None:
    planner = _planner()
    for task, cacheable in [("text-classification", True), ("token-classification", True),
                            ("zero-shot-classification", True), ("feature-extraction", True),
                            ("text-generation", False), ("text-to-image", False), (None, False)]:
        call = make_call(ROUTER, CLOCK, model=CHAT, op=Op.HF_TASK, task=task, dialect=Dialect.HF)
        assert (planner.plan(call) is not None) is cacheable, task
    seeded = make_call(ROUTER, CLOCK, model=CHAT, op=Op.HF_TASK, task="text-generation", dialect=Dialect.HF,
                       body={"inputs": "x", "parameters": {"seed": 3, "temperature": 0.8}})
    assert planner.plan(seeded) is not None


def test_config_turns_tasks_and_models_off_and_sets_ttls() -> None:
    planner = _planner(ttl=100, tasks={"chat": {"enabled": False}, "feature-extraction": {"ttl": 50},
                                       "text-to-image": {"enabled": True}})
    assert planner.plan(make_call(ROUTER, CLOCK, model=CHAT, op=Op.CHAT, body=chat_body(0))) is None
    plan = planner.plan(make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="feature-extraction", dialect=Dialect.HF))
    assert plan is not None and plan.ttl == 50
    embeddings = planner.plan(make_call(ROUTER, CLOCK))
    assert embeddings is not None and embeddings.ttl == 100
    # enabling a sampling task still needs a pinned answer (a seed for images)
    image = {"inputs": "a cat", "parameters": {"seed": 1}}
    assert planner.plan(make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="text-to-image", body=image)) is not None


@pytest.mark.parametrize("task", ["text-to-speech", "image-to-image", "text-to-audio"])
def test_generated_media_enabled_in_the_config_is_cached_only_when_seeded(task: str) -> None:
    planner = _planner(tasks={task: {"enabled": True}})
    unseeded = make_call(ROUTER, CLOCK, op=Op.HF_TASK, task=task, body={"inputs": "hi", "parameters": {}})
    seeded = make_call(ROUTER, CLOCK, op=Op.HF_TASK, task=task, body={"inputs": "hi", "parameters": {"seed": 2}})
    assert planner.plan(unseeded) is None and planner.plan(seeded) is not None
    assert planner.plan(make_call(ROUTER, CLOCK, op=Op.HF_TASK, task="text-to-image")) is None
    per_model = _router(models=[
        {"name": EMBED, "cache": {"enabled": False}},
        {"name": CLASSIFY, "cache": {"ttl": 7}},
        {"name": CHAT, "cache": {"enabled": True}},
    ])
    assert planner.plan(make_call(per_model, CLOCK)) is None
    p = planner.plan(make_call(per_model, CLOCK, model=CLASSIFY, op=Op.HF_TASK, task="text-classification"))
    assert p is not None and p.ttl == 7
    # a model switched on cannot make a sampled answer, or one of an unknown task, cacheable
    assert planner.plan(make_call(per_model, CLOCK, model=CHAT, op=Op.CHAT, body=chat_body(0.7))) is None
    assert planner.plan(make_call(per_model, CLOCK, model=CHAT, op=Op.HF_TASK, task=None)) is None
    assert _planner(enabled=False).plan(make_call(ROUTER, CLOCK)) is None


@pytest.mark.parametrize(("flags", "read", "write"), [
    (Flags(), True, True),
    (Flags(use_cache=True), True, True),
    (Flags(use_cache=False), False, False),
    (Flags(no_cache=True), False, True),
    (Flags(no_store=True), False, False),
    (Flags(no_cache=True, no_store=True), False, False),
])  # fmt: skip
def test_client_flags_decide_reads_and_writes(flags: Flags, read: bool, write: bool) -> None:
    plan = _planner().plan(make_call(ROUTER, CLOCK, flags=flags))
    assert plan is not None and (plan.read, plan.write) == (read, write)


def test_keys_are_versioned_hash_tagged_and_computed_once_per_call() -> None:
    call = make_call(ROUTER, CLOCK)
    plan = _planner().plan(call)
    assert plan is not None and plan.key.startswith("gwtest:v1:cache:{")
    assert call.caching.digest in plan.key
    call.body = {"model": EMBED, "input": "changed"}  # the digest is reused, not recomputed
    again = _planner().plan(call)
    assert again is not None and again.key == plan.key
