"""Shared pieces of the rate-limit and shaping tests: keys, settings, scripted answers, broken stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.core.call import Answer, Call, Reply, StreamReply
from gateway.core.config import Settings, load_settings
from gateway.http.middleware.auth import hash_key
from gateway.store.memory import MemoryStore
from gateway.store.protocol import StoreError

KEY_A = "gwk_fake_test_key_a"
KEY_B = "gwk_fake_test_key_b"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}


def chat(model: str = "org/m", text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def settings(tenants: dict[str, Any] | None = None, **extra: Any) -> Settings:
    """Two keys (team-a, team-b), no cache (identical bodies must each reach the limiter)."""
    keys = [{"sha256": hash_key(KEY_A), "tenant": "team-a"}, {"sha256": hash_key(KEY_B), "tenant": "team-b"}]
    extra.setdefault("cache", {"enabled": False, "coalesce": False})
    return load_settings(None, keys=keys, tenants=tenants or {}, **extra)


def with_usage(prompt: int, completion: int) -> Any:
    """An upstream answer that reports its usage, as HttpUpstream does for JSON answers."""

    def answer(call: Call, model: str) -> Answer:
        call.tokens_in, call.tokens_out = prompt, completion
        return Reply(200, orjson.dumps({"usage": {"prompt_tokens": prompt, "completion_tokens": completion}}))

    return answer


def sse_stream(events: list[bytes]) -> StreamReply:
    """A stream whose first event has been peeked, like HttpUpstream returns it."""

    async def rest() -> AsyncIterator[bytes]:
        for ev in events[1:]:
            yield ev

    return StreamReply(first=events[0], rest=rest())


def openai_chunks(n: int, usage: tuple[int, int] | None = None) -> list[bytes]:
    out = [b'data: {"choices":[{"index":0,"delta":{"content":"t%d"}}]}\n\n' % i for i in range(n)]
    if usage is not None:
        out.append(b'data: {"choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":%d}}\n\n' % usage)
    return [*out, b"data: [DONE]\n\n"]


class BrokenStore(MemoryStore):
    """The bucket script fails (Redis down) or hangs (Redis stalled); everything else works."""

    def __init__(self, clock: Any, *, hang: bool = False) -> None:
        super().__init__(clock)
        self.hang = hang
        self.broken = True
        self.error = StoreError("redis: the connection was closed", "lost")

    async def run_script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        if not self.broken or name != "token_bucket":
            return await super().run_script(name, keys, args)
        if self.hang:
            await asyncio.Event().wait()
        raise StoreError(str(self.error), self.error.cause)
