"""What may be cached, for how long, and under which key: `CachePlanner.plan(call) -> CachePlan | None`.

A request is cacheable when its task is enabled (per model, else per task, else the built-in
default) and its answer cannot vary: embeddings and classifications always; generation, chat and
completions only with `temperature` 0, `do_sample` false or a `seed`. No configuration can make a
sampled answer cacheable. The Responses API (task `responses`) is off by default, as agents use it:
turned on (`cache.tasks.responses` or the route's `cache.enabled`), it caches only `temperature` 0
requests without `tools` or a `conversation`.

The key is a hash of, in this order of importance:
- the scope: the tenant, or `shared` when the route says so (tenant A never reads tenant B's entries);
- the upstream identity: every deployment of the route (upstream name, kind, base URL, model),
  never the credential, so re-pointing a route at another backend starts a fresh cache;
- the model, op, dialect and task, and the answer form (`stream` or `complete`), so a streamed
  entry is never served to a non-stream request nor the reverse;
- the canonical body: keys sorted at every level, fields that cannot change the answer dropped.
Keys are built with `gateway.store.key(prefix, "cache", digest)` and carry `KEY_FORMAT`, bumped
whenever anything above changes meaning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core import tasks
from gateway.core.call import Call, Op
from gateway.core.config import CacheConfig
from gateway.store import key

KEY_FORMAT = "c1"
_MAX_IDENTITIES = 4096
# Fields that never change the answer. `stream` is represented by the answer form instead;
# `stream_options` is kept for streams (include_usage adds a chunk) and dropped otherwise.
_IRRELEVANT = frozenset({"stream", "user", "options", "metadata", "store"})
_IRRELEVANT_COMPLETE = _IRRELEVANT | {"stream_options"}
_GENERIC_ACCEPT = frozenset({"*/*", "application/json", "text/event-stream"})
# Tasks whose answer is sampled: cacheable only when the request pins it down. Generated images and
# audio are stored as the bytes they are, with their Content-Type, once a seed makes them repeatable.
SAMPLING_TASKS = frozenset({tasks.TEXT_GENERATION, "chat", "completions", "responses"} | tasks.BINARY_ANSWER_TASKS)
# Responses API requests that can never be cached: tools call out (an agent's turn, not a lookup),
# `conversation` names server-side state that changes with every turn.
_RESPONSES_UNCACHEABLE = ("tools", "conversation")
# On by default (as HF's own API caches by default); `cache.tasks` overrides these.
DEFAULT_TASKS = frozenset({
    tasks.FEATURE_EXTRACTION, "embeddings", tasks.SENTENCE_SIMILARITY, "rerank",
    tasks.TEXT_CLASSIFICATION, tasks.ZERO_SHOT, tasks.TOKEN_CLASSIFICATION,
    tasks.TEXT_GENERATION, "chat", "completions",
})  # fmt: skip
_OP_TASKS = {
    Op.CHAT: "chat", Op.COMPLETIONS: "completions", Op.EMBEDDINGS: "embeddings",
    Op.TEI_EMBED: tasks.FEATURE_EXTRACTION, Op.TEI_PREDICT: tasks.TEXT_CLASSIFICATION,
    Op.TEI_RERANK: "rerank", Op.TGI_GENERATE: tasks.TEXT_GENERATION, Op.RESPONSES: "responses",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CachePlan:
    """How the cache treats one call."""

    key: str  # the entry's store key; the coalescing lock and channel derive from it
    ttl: float
    read: bool  # look the entry up (False: client said no-cache / no-store / use_cache false)
    write: bool  # store the answer (False: no-store / use_cache false)
    stream: bool  # the answer form

    @property
    def bypass(self) -> bool:
        return not self.read and not self.write


def cache_task(call: Call) -> str | None:
    """The task that decides cacheability: fixed by the op for native routes, else the call's task."""
    return _OP_TASKS.get(call.op, call.task)


def is_pinned(task: str | None, body: dict[str, Any] | None) -> bool:
    """Whether a sampling task's request pins its answer down (temperature 0, do_sample false, seed;
    a seed alone for generated images and audio)."""
    if task == "responses":  # (it has no `seed`: only temperature 0, and nothing stateful or tool-driven)
        if not isinstance(body, dict) or any(body.get(name) for name in _RESPONSES_UNCACHEABLE):
            return False
        temp = body.get("temperature")
        return isinstance(temp, (int, float)) and not isinstance(temp, bool) and temp == 0
    return tasks.is_deterministic(task, body)


def canonical_body(call: Call) -> bytes:
    """The body as the cache sees it: sorted keys, answer-neutral fields dropped; raw bodies as sent."""
    if call.body is None:
        return (call.content_type or "").encode() + b"\n" + call.raw
    drop = _IRRELEVANT if call.stream else _IRRELEVANT_COMPLETE
    body = call.body if drop.isdisjoint(call.body) else {k: v for k, v in call.body.items() if k not in drop}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def cache_digest(call: Call, task: str | None, shared: bool, identity: bytes | None = None) -> str:
    """The hash naming a call's entry (see the module docstring for what goes in).

    `identity`: `identity_bytes(call, task, shared)`, when the caller has it memoised.
    """
    h = hashlib.blake2b(identity if identity is not None else identity_bytes(call, task, shared), digest_size=16)
    h.update(b"\n")
    h.update(canonical_body(call))
    return h.hexdigest()


def identity_bytes(call: Call, task: str | None, shared: bool) -> bytes:
    """Everything in the key but the body, serialised: it depends on the route and the call's form only."""
    accept = call.accept if call.accept and call.accept not in _GENERIC_ACCEPT else None
    identity = {
        "format": KEY_FORMAT,
        "scope": "shared" if shared else f"tenant:{call.tenant or '-'}",
        "upstreams": [
            [d.upstream.name, d.upstream.kind, getattr(d.upstream.config, "base_url", ""), d.model]
            for d in call.route.deployments
        ],
        "model": call.model, "op": call.op.value, "dialect": call.dialect.value, "task": task,
        "form": "stream" if call.stream else "complete", "accept": accept,
    }  # fmt: skip
    return orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)


class CachePlanner:
    """Applies the configuration to calls; one per app, shared by the cache and coalesce stages."""

    def __init__(self, config: CacheConfig, prefix: str) -> None:
        self.config = config
        self.prefix = prefix
        # identity_bytes per (route, form): built once instead of per request. Bounded (tenants
        # may come from the store): cleared when full, which only costs a rebuild.
        self._identities: dict[tuple[object, ...], tuple[object, bytes]] = {}

    def plan(self, call: Call) -> CachePlan | None:
        """The call's plan, or None when its answer is not cacheable at all (made once per call)."""
        made = call.caching.plan
        if made is not None:
            return made  # type: ignore[no-any-return]
        ttl = self._ttl_if_cacheable(call)
        if ttl is None:
            return None
        digest = call.caching.digest
        if digest is None:  # computed once per call, reused by the next stage
            digest = call.caching.digest = self._digest(call)
        flags = call.flags
        off = flags.use_cache is False or flags.no_store
        made = call.caching.plan = CachePlan(
            key=key(self.prefix, "cache", digest), ttl=ttl, read=not off and not flags.no_cache,
            write=not off, stream=call.stream,
        )
        return made

    def _digest(self, call: Call) -> str:
        task, shared = cache_task(call), call.route.config.cache.shared
        memo = (id(call.route), call.model, call.op, call.dialect, task, call.stream, call.accept,
                shared or call.tenant)
        known = self._identities.get(memo)
        if known is None or known[0] is not call.route:  # (the route itself guards against a reused id)
            if len(self._identities) >= _MAX_IDENTITIES:
                self._identities.clear()
            known = self._identities[memo] = (call.route, identity_bytes(call, task, shared))
        return cache_digest(call, task, shared, known[1])

    def _ttl_if_cacheable(self, call: Call) -> float | None:
        if not self.config.enabled:
            return None
        task = cache_task(call)
        if task is None:
            return None  # nothing tells whether the answer is stable (set the route's `task:` to cache it)
        model = call.route.config.cache
        rule = self.config.tasks.get(task)
        if model.enabled is False or (model.enabled is None and not self._task_on(task)):
            return None
        if task in SAMPLING_TASKS and not is_pinned(task, call.body):
            return None
        return model.ttl or (rule.ttl if rule else None) or self.config.ttl

    def _task_on(self, task: str) -> bool:
        rule = self.config.tasks.get(task)
        if rule is not None:
            return rule.enabled
        return task in DEFAULT_TASKS
