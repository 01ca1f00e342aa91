"""Why a store call failed, in a small fixed vocabulary: the `cause` of a `StoreError`.

Every Redis failure is classified once, where it is translated (`store/pipelining.py`,
`store/redis.py`), from the exception or the server's own error code. The cause is what the
logs name, what `/readyz` and `/status` show and the `cause` label of
`gateway_store_failures_total` (bounded: the names below, nothing else).

Two families, because they call for different handling:
- connection causes (`CONNECTION`): the server cannot be reached or stopped answering; every
  command fails alike, so the store's breaker opens and calls fail fast until a probe answers;
- command causes: the server answered with an error (no permission, out of memory, a cluster
  redirect...): only some commands fail, the connection is fine.
"""

from __future__ import annotations

import ssl
from typing import Literal

Cause = Literal[
    "refused", "lost", "stalled", "tls", "auth", "noperm", "moved", "crossslot", "clusterdown", "oom",
    "readonly", "loading", "busy", "noscript", "deadline", "error",
]
CAUSES: frozenset[str] = frozenset((
    "refused", "lost", "stalled", "tls", "auth", "noperm", "moved", "crossslot", "clusterdown", "oom",
    "readonly", "loading", "busy", "noscript", "deadline", "error",
))  # fmt: skip
CONNECTION: frozenset[str] = frozenset(("refused", "lost", "stalled", "tls", "auth"))

# The server's error code (first word of an error reply) -> cause. A script's inner error keeps the
# inner command's code ("OOM ... script: ..."), except a missing ACL permission, which Redis
# reports as "ERR The user executing the script can't run this command ..." (handled below).
_CODES: dict[str, Cause] = {
    "WRONGPASS": "auth", "NOAUTH": "auth", "NOPERM": "noperm", "MOVED": "moved", "ASK": "moved",
    "TRYAGAIN": "clusterdown", "CROSSSLOT": "crossslot", "CLUSTERDOWN": "clusterdown", "OOM": "oom",
    "READONLY": "readonly", "MASTERDOWN": "readonly", "LOADING": "loading", "BUSY": "busy",
    "NOSCRIPT": "noscript",
}  # fmt: skip
_SCRIPT_NOPERM = "ERR The user executing the script can't run this command"

# What an operator reads next to the cause in the log line: what it means and what to do.
HINTS: dict[str, str] = {
    "refused": "nothing accepts connections at the Redis address",
    "lost": "Redis closed the connection",
    "stalled": "Redis stopped answering (silent past ratelimit.store_timeout while answers were owed)",
    "tls": "the TLS handshake failed (CA, certificate or hostname: see docs/redis.md#tls)",
    "auth": "Redis refused the credentials in the URL (WRONGPASS / NOAUTH)",
    "noperm": "the Redis ACL user lacks a command the gateway needs (see docs/redis.md#acl)",
    "moved": "Redis is a cluster: use a redis+cluster:// URL (docs/redis.md#cluster)",
    "crossslot": "a command spanned several cluster slots",
    "clusterdown": "the Redis cluster is down or resharding",
    "oom": "Redis is at maxmemory and refuses writes (docs/redis.md#memory)",
    "readonly": "the Redis address is a read-only replica",
    "loading": "Redis is loading its dataset",
    "busy": "Redis is busy running a long script",
    "noscript": "Redis lost its scripts",
    "deadline": "the request's deadline passed while Redis owed the answer",
    "error": "Redis answered an error",
}


def cause_of_reply(text: str) -> Cause:
    """The cause of an error reply, from its text (e.g. "NOPERM this user has no permissions ...")."""
    if text.startswith(_SCRIPT_NOPERM):
        return "noperm"
    return _CODES.get(text.split(" ", 1)[0], "error")


def cause_of_exception(exc: BaseException) -> Cause:
    """The cause of a connection-level failure (an OSError, a TLS error, a timeout)."""
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "stalled"
    return "lost"
