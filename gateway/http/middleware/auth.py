"""Gateway API keys: who is calling (the tenant), checked before any handler runs.

A key arrives as `Authorization: Bearer <key>` (what the openai SDK and InferenceClient send),
or as an `api-key` / `x-api-key` header. Keys are never stored: the config lists their SHA-256
(`keys: [{sha256, tenant, name}]`, made by `hf-gateway keys create`), and with
`ratelimit.keys_in_store` a key may also live in the store as `{prefix}:v1:key:{sha256}` -> tenant
(added or revoked without a restart; positive answers are remembered for `STORE_CACHE_SECONDS`).

Timing: the presented key is hashed first, and only its digest is looked up. A dict lookup's
timing depends on the digest, which an attacker cannot steer towards a valid key's digest
without a SHA-256 preimage, so it leaks nothing useful; the final equality check is
`hmac.compare_digest` all the same.

With keys configured, a request without a valid key is refused with 401 (`Unauthorized`, rendered
in its route's dialect by the error middleware). `/healthz`, `/readyz` and, with
`metrics_public`, `/metrics` stay open. With no key configured the gateway is open (the server
logs a warning at startup). A store that cannot answer a key lookup gives 503: authentication
never fails open.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.core.clock import Clock
from gateway.core.config import TENANT_RE, KeyConfig, Settings
from gateway.core.errors import StoreUnavailable, Unauthorized
from gateway.http.appkeys import API_KEY_ID, TENANT
from gateway.http.ops import PROBE_PATHS
from gateway.store.guard import StoreGuard
from gateway.store.protocol import Store, StoreError, key

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY_HEADERS = ("api-key", "x-api-key")
MAX_KEY_LENGTH = 512
STORE_CACHE_SECONDS = 30.0
STORE_CACHE_SIZE = 10_000
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hf-gateway"'}


def hash_key(presented: str) -> str:
    """The SHA-256 hex digest under which a key is configured."""
    return hashlib.sha256(presented.encode("utf-8")).hexdigest()


def presented_key(request: web.Request) -> str | None:
    """The key the client sent (Bearer token, else `api-key` / `x-api-key`), or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for name in KEY_HEADERS:
        value = request.headers.get(name, "").strip()
        if value:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a valid key belongs to."""

    tenant: str
    key_id: str  # the key's configured name, else the first 12 hex of its hash (not secret)


class KeyRing:
    """The configured key hashes, plus (optionally) keys kept in the store."""

    def __init__(self, keys: list[KeyConfig], store: Store | None = None, *, prefix: str = "gw",
                 in_store: bool = False, clock: Clock | None = None, timeout: float | None = None) -> None:
        self._guard = StoreGuard("API key lookup", timeout)  # a late answer is waited for, up to `timeout`
        self._by_hash = {k.sha256: k for k in keys}
        self._identities = {k.sha256: Identity(k.tenant, k.name or k.sha256[:12]) for k in keys}  # made once
        self._store = store if in_store else None
        self._prefix = prefix
        self._clock = clock
        self._cache: dict[str, tuple[Identity, float]] = {}
        self.enabled = bool(keys) or self._store is not None

    async def identify(self, presented: str) -> Identity | None:
        """The identity of a presented key, or None when it is not valid."""
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = hash_key(presented)
        found = self._by_hash.get(digest)
        if found is not None and hmac.compare_digest(found.sha256, digest):
            return self._identities[digest]
        if self._store is not None:
            return await self._from_store(digest)
        return None

    async def _from_store(self, digest: str) -> Identity | None:
        now = self._clock.monotonic() if self._clock is not None else 0.0
        hit = self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        assert self._store is not None
        try:
            raw = await self._guard.run(self._store.get(key(self._prefix, "key", digest)))
        except StoreError as exc:
            raise StoreUnavailable("API keys cannot be checked right now: the state store is unavailable",
                                   retry_after=1.0) from exc
        tenant = raw.decode("utf-8", "replace") if raw else ""
        if not TENANT_RE.fullmatch(tenant):
            self._cache.pop(digest, None)
            return None
        ident = Identity(tenant, digest[:12])
        if len(self._cache) >= STORE_CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = (ident, now + STORE_CACHE_SECONDS)
        return ident


def open_paths(settings: Settings) -> frozenset[str]:
    """Paths served without a key."""
    return PROBE_PATHS | ({"/metrics"} if settings.metrics_public else set())


def auth_middleware(settings: Settings, store: Store, clock: Clock) -> Middleware:
    """Sets `request[TENANT]` / `request[API_KEY_ID]` from a valid key; 401 without one."""
    ring = KeyRing(settings.keys, store, prefix=settings.redis_prefix, in_store=settings.ratelimit.keys_in_store,
                   clock=clock, timeout=settings.request_timeout)
    unguarded = open_paths(settings)

    @web.middleware
    async def middleware(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        if not ring.enabled or request.path in unguarded:
            return await handler(request)
        presented = presented_key(request)
        if presented is None:
            raise Unauthorized("no API key: send it as `Authorization: Bearer <key>`", headers=_CHALLENGE)
        ident = await ring.identify(presented)
        if ident is None:
            raise Unauthorized("invalid API key", headers=_CHALLENGE)
        request[TENANT] = ident.tenant
        request[API_KEY_ID] = ident.key_id
        return await handler(request)

    return middleware
