"""The compact envelope a cache entry, or a coalescing leader's outcome, is stored as.

    byte 0   envelope version (ENVELOPE_VERSION); anything else decodes as "no entry"
    byte 1   flags: bit 0 set = the payload is zlib-compressed
    rest     payload = u32 big-endian length of meta | meta (JSON) | body

Kinds (meta["k"]):
    reply    a complete 2xx answer: status, content type, headers, stored-at time; body = the bytes
    stream   an SSE answer: the same plus "n", each event's length; body = the events, first one first
    error    a coalescing leader's failure: its token, the error's class and attributes; body = the
             upstream's error body (if any)
    skip     a coalescing leader's answer that was not stored (too big): followers go on their own

Invariants: only the `reply` and `stream` kinds are ever written under an entry key; errors and
skips live under the short-lived outcome key and carry the token of the leader that wrote them.
The error kind is written and read by `leader_error.py`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.core.call import Answer, Reply, StreamReply

ENVELOPE_VERSION = 1
_COMPRESSED = 0x01
_ZLIB_LEVEL = 3  # a fast level: entries are compressed on the request path
_LEN = struct.Struct(">I")
# Upstream headers that describe the moment, not the answer: a replayed quota figure would mislead.
_STALE_PREFIXES = ("x-ratelimit-", "ratelimit", "retry-after", "date", "age")


@dataclass(slots=True)
class Envelope:
    """A decoded envelope."""

    kind: str
    meta: dict[str, Any]
    body: bytes
    stored_size: int = 0  # bytes as stored (after compression)
    events: list[bytes] = field(default_factory=list)

    @property
    def token(self) -> str | None:
        tok = self.meta.get("tok")
        return tok if isinstance(tok, str) else None

    def answer(self, now: float) -> Answer:
        """The stored answer, with an `Age` header counted from when it was stored."""
        headers = dict(self.meta.get("h") or {})
        headers["Age"] = str(max(0, int(now - float(self.meta.get("at", now)))))
        status = int(self.meta.get("s", 200))
        ctype = str(self.meta.get("t") or "application/json")
        if self.kind == "stream":
            return StreamReply(first=self.events[0], rest=_replay(self.events[1:]), headers=headers,
                               status=status, content_type=ctype)
        return Reply(status, self.body, ctype, headers)


def answer_headers(headers: dict[str, str]) -> dict[str, str]:
    """The upstream headers worth replaying with a stored answer (names as plain `str`: orjson refuses the
    transport's case-insensitive `istr` keys, and an upstream's `x-inference-provider` is kept)."""
    return {str(k): v for k, v in headers.items() if not k.lower().startswith(_STALE_PREFIXES)}


def encode_reply(reply: Reply, at: float, compress_over: int) -> bytes:
    meta = {"k": "reply", "s": reply.status, "t": reply.content_type, "h": answer_headers(reply.headers), "at": at}
    return pack(meta, reply.body, compress_over)


def encode_stream(events: list[bytes], answer: StreamReply, at: float, compress_over: int) -> bytes:
    meta = {
        "k": "stream", "s": answer.status, "t": answer.content_type, "h": answer_headers(answer.headers),
        "at": at, "n": [len(e) for e in events],
    }  # fmt: skip
    return pack(meta, b"".join(events), compress_over)


def encode_skip(token: str) -> bytes:
    return pack({"k": "skip", "tok": token}, b"", 1 << 62)




def decode(raw: bytes | None) -> Envelope | None:
    """The envelope in `raw`, or None when absent or not in a format this version reads."""
    if raw is None or len(raw) < 2 or raw[0] != ENVELOPE_VERSION:
        return None
    payload = raw[2:]
    try:
        if raw[1] & _COMPRESSED:
            payload = zlib.decompress(payload)
        (meta_len,) = _LEN.unpack_from(payload)
        meta = orjson.loads(payload[4 : 4 + meta_len])
    except (zlib.error, struct.error, orjson.JSONDecodeError):
        return None
    if not isinstance(meta, dict):
        return None
    env = Envelope(kind=str(meta.get("k")), meta=meta, body=payload[4 + meta_len :], stored_size=len(raw))
    if env.kind == "stream":
        env.events = _split(env.body, meta.get("n"))
        if not env.events:
            return None
    return env




def pack(meta: dict[str, Any], body: bytes, compress_over: int) -> bytes:
    """An envelope: version, flags, then the (possibly compressed) meta and body."""
    meta_bytes = orjson.dumps(meta)
    payload = _LEN.pack(len(meta_bytes)) + meta_bytes + body
    flags = 0
    if len(payload) > compress_over:
        packed = zlib.compress(payload, _ZLIB_LEVEL)
        if len(packed) < len(payload):
            payload, flags = packed, _COMPRESSED
    return bytes((ENVELOPE_VERSION, flags)) + payload


def _split(body: bytes, lengths: Any) -> list[bytes]:
    if not isinstance(lengths, list) or sum(lengths) != len(body):
        return []
    out, pos = [], 0
    for n in lengths:
        out.append(body[pos : pos + n])
        pos += n
    return out


async def _replay(events: list[bytes]) -> AsyncIterator[bytes]:
    for ev in events:
        yield ev


