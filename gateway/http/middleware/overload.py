"""In-flight caps: `max_in_flight` for the whole process and `tenants.<name>.max_in_flight` per tenant.

A middleware (after auth, so the tenant is known; before any handler, so no body has been read):
a request that would take the process or its tenant over its cap is answered at once with 503
`Overloaded` and `Retry-After: 1`, instead of queueing and letting memory grow without bound.
A request counts from the moment it is admitted until its answer is finished (a stream until its
last event), so a long stream holds its slot for its whole life.

Invariants:
- the caps are per process (per worker with `--workers N`): N workers admit up to N x the cap;
- ops endpoints (`/healthz`, `/readyz`, `/metrics`) are never counted nor refused, so health checks
  and scrapes still answer under overload;
- a slot is always given back (`finally`), whether the request succeeded, failed, or its client left;
- with no cap configured the middleware is not installed at all (no cost).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.core.config import Settings
from gateway.core.errors import Overloaded
from gateway.http.appkeys import TENANT
from gateway.http.ops import OPS_PATHS

HandlerFn = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER = 1.0  # seconds: slots free up as fast as requests finish, so ask for a short pause


class InFlight:
    """Counts admitted requests, globally and per tenant, against their caps."""

    def __init__(self, global_cap: int | None, tenant_caps: dict[str, int]) -> None:
        self.global_cap = global_cap
        self.tenant_caps = tenant_caps
        self.total = 0
        self.by_tenant: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> InFlight:
        caps = {name: t.max_in_flight for name, t in settings.tenants.items() if t.max_in_flight is not None}
        return cls(settings.max_in_flight, caps)

    @property
    def enabled(self) -> bool:
        return self.global_cap is not None or bool(self.tenant_caps)

    def admit(self, tenant: str | None) -> None:
        """Take a slot for `tenant`, or raise Overloaded (taking nothing)."""
        if self.global_cap is not None and self.total >= self.global_cap:
            raise Overloaded("the gateway is at its in-flight request limit; retry shortly", retry_after=RETRY_AFTER)
        cap = self.tenant_caps.get(tenant) if tenant is not None else None
        if tenant is not None and cap is not None and self.by_tenant.get(tenant, 0) >= cap:
            raise Overloaded(f"tenant {tenant!r} is at its in-flight request limit ({cap}); retry shortly",
                             retry_after=RETRY_AFTER)
        self.total += 1
        if tenant is not None:
            self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1

    def release(self, tenant: str | None) -> None:
        """Give back the slot `admit` took."""
        self.total -= 1
        if tenant is not None:
            left = self.by_tenant.get(tenant, 1) - 1
            if left:
                self.by_tenant[tenant] = left
            else:
                self.by_tenant.pop(tenant, None)


def overload_middleware(settings: Settings) -> Middleware | None:
    """The in-flight cap middleware, or None when no cap is configured."""
    slots = InFlight.from_settings(settings)
    if not slots.enabled:
        return None

    @web.middleware
    async def overload(request: web.Request, handler: HandlerFn) -> web.StreamResponse:
        if request.path in OPS_PATHS:
            return await handler(request)
        tenant = request.get(TENANT)
        slots.admit(tenant)
        try:
            return await handler(request)
        finally:
            slots.release(tenant)

    return overload
