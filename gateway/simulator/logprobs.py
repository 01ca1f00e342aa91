"""Tokens of any answer text and their OpenAI `logprobs` entries.

The simulator's tokenizer cuts text into runs of word characters or runs of punctuation, each with
the whitespace before it (`{"city": "Paris"}` -> `{"`, `city`, `":`, ` "`, `Paris`, `"}`), which
looks like a BPE split and keeps the JSON a stream carries in realistic pieces. Generated prose is
" word" tokens, so for it the count equals the whitespace word count used elsewhere (`usage` stays
the same between a stream and its non-stream twin). Invariant: `"".join(split_tokens(t)) == t`.

A logprobs entry is `{token, logprob, bytes, top_logprobs}` (openai `ChatCompletionTokenLogprob`);
`top_logprobs` starts with the chosen token itself and continues with other words in decreasing
probability, so the chosen token is always the most likely one, as with greedy decoding.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from gateway.simulator.textgen import VOCAB

MAX_TOP_LOGPROBS = 20
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+$")


def split_tokens(text: str) -> list[str]:
    """The tokens of `text`, concatenating back to it."""
    return _TOKEN.findall(text)


def _logprob(material: bytes, index: int) -> float:
    byte = hashlib.sha256(material + index.to_bytes(4, "big")).digest()[0]
    return -round(0.01 + byte / 128.0, 4)


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def logprob_entries(tokens: list[str], material: bytes, top: int, start: int = 0) -> list[dict[str, Any]]:
    """One entry per token; `start` is the first token's position in the whole answer."""
    out = []
    for offset, token in enumerate(tokens):
        index = start + offset
        chosen = _logprob(material, index)
        entry = _entry(token, chosen)
        alternatives = [_entry(token, chosen)]
        lead = " " if token.startswith(" ") else ""
        step = 0
        while len(alternatives) < top:
            word = lead + VOCAB[(index * 7 + step * 13 + len(token)) % len(VOCAB)]
            step += 1
            if word != token and all(a["token"] != word for a in alternatives):
                alternatives.append(_entry(word, round(chosen - 0.5 * len(alternatives), 4)))
        entry["top_logprobs"] = alternatives[:top]
        out.append(entry)
    return out
