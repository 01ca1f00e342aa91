"""Deterministic text generation and its TGI shapes (docs/protocol.md, 'InferenceClient: answer shapes', 'TGI routes').

Tokens are words drawn from a fixed vocabulary by a SHA-256 stream seeded with the model, the
prompt and the request's `seed`; each token is one word with a leading space. Hence the same
request always yields the same text, and whitespace-split word counts equal token counts, which
keeps `usage` identical between a stream and its non-stream twin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from gateway.simulator.dialects import Style, stream_error_event
from gateway.simulator.wire import StreamBody, tgi_event

VOCAB = (
    "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "a", "gateway", "routes", "every",
    "request", "to", "model", "that", "answers", "with", "tokens", "streaming", "fast", "and", "slow",
    "cold", "warm", "cache", "hit", "miss", "retry", "later", "hello", "world", "river", "mountain",
    "blue", "green", "red", "signal", "noise", "packet", "byte", "stream", "event", "server", "client",
    "simple", "clear", "bright", "quiet", "storm", "light", "shadow", "paper", "stone", "glass", "window",
    "garden", "forest", "ocean", "sky", "cloud", "rain", "sun", "moon",
)
TOKEN_ID_BASE = 1000


@dataclass(frozen=True)
class Token:
    """One generated token."""

    id: int
    text: str
    logprob: float

    def as_tgi(self) -> dict[str, Any]:
        """TGI's token object."""
        return {"id": self.id, "text": self.text, "logprob": self.logprob, "special": False}


@dataclass(frozen=True)
class Generation:
    """The deterministic result of generating from one prompt."""

    prompt: str
    tokens: tuple[Token, ...]
    prompt_tokens: int
    finish_reason: str
    seed: int | None

    @property
    def text(self) -> str:
        """The generated text (tokens concatenated)."""
        return "".join(t.text for t in self.tokens)

    def usage(self) -> dict[str, int]:
        """OpenAI `usage` counts."""
        completion = len(self.tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def word_count(text: str) -> int:
    """The simulator's token count: whitespace-split words."""
    return len(text.split())


def digest_stream(*parts: str, size: int = 256) -> bytes:
    """At least `size` deterministic bytes derived from `parts`."""
    seed = "\x00".join(parts).encode("utf-8", "surrogatepass")
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out)


def make_token(material: bytes, index: int) -> Token:
    """The `index`-th token of a digest stream (wraps around for long generations)."""
    a = material[(2 * index) % len(material)]
    b = material[(2 * index + 1) % len(material)]
    word = (a + index) % len(VOCAB)
    return Token(TOKEN_ID_BASE + word, " " + VOCAB[word], -round(0.01 + b / 128.0, 4))


def generate(model: str, prompt: str, max_new_tokens: int, *, seed: int | None = None,
             finish_reason: str = "length") -> Generation:
    """Generate `max_new_tokens` deterministic tokens for `prompt`."""
    material = digest_stream(model, prompt, str(seed))
    tokens = tuple(make_token(material, i) for i in range(max_new_tokens))
    return Generation(prompt, tokens, word_count(prompt), finish_reason, seed)


def tgi_details(gen: Generation, *, prefill: bool) -> dict[str, Any]:
    """The `details` object of a non-stream TGI answer."""
    prefill_tokens = [
        {"id": TOKEN_ID_BASE + i, "text": w, "logprob": None if i == 0 else -1.0}
        for i, w in enumerate(gen.prompt.split())
    ] if prefill else []
    return {
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.tokens),
        "seed": gen.seed,
        "prefill": prefill_tokens,
        "tokens": [t.as_tgi() for t in gen.tokens],
    }


def tgi_object(gen: Generation, params: dict[str, Any]) -> dict[str, Any]:
    """TGI's `GenerateResponse`: generated_text (+ details when asked)."""
    prefix = gen.prompt if params.get("return_full_text") else ""
    out: dict[str, Any] = {"generated_text": prefix + gen.text}
    if params.get("details"):
        out["details"] = tgi_details(gen, prefill=bool(params.get("decoder_input_details")))
    return out


def _tgi_stream_event(index: int, token: Token, generated: str | None, details: Any) -> bytes:
    return tgi_event({"index": index, "token": token.as_tgi(), "generated_text": generated, "details": details})


def tgi_stream(gen: Generation, params: dict[str, Any]) -> StreamBody:
    """TGI's `generate_stream` SSE: one event per token, text and details on the last, no [DONE]."""
    prefix = gen.prompt if params.get("return_full_text") else ""
    events = []
    last = len(gen.tokens)
    for i, token in enumerate(gen.tokens, start=1):
        generated = details = None
        if i == last:
            generated = prefix + gen.text
            if params.get("details"):
                details = {"finish_reason": gen.finish_reason, "generated_tokens": last,
                           "seed": gen.seed, "input_length": gen.prompt_tokens}
        events.append(_tgi_stream_event(i, token, generated, details))
    material = digest_stream(gen.prompt, "endless")

    def more(n: int) -> bytes:
        return _tgi_stream_event(last + n, make_token(material, n), None, None)

    return StreamBody(tuple(events), b"", stream_error_event(Style.TGI), more)
