"""The store side of one managed endpoint: its record, the fleet's single poller, its wake-up claim, its idle timer.

Keys (one hash tag per endpoint, `{namespace/name}`, so every script stays in one Redis Cluster slot):
- `record`  the `EndpointRecord` ("<checked_at> <json>"), written through `endpoint_record.lua` so a
            reading asked for earlier never overwrites a later one; kept a week (the last known URL
            must survive a fleet restart while the control plane is down);
- `lease`   the replica that polls the control plane for the fleet (`endpoint_lease.lua`: take or renew);
- `wake`    THE wake-up (or resume) in progress, "<token> <woken_at>", and `wakes` the fleet's count of
            them (`endpoint_wake.lua` takes the claim and counts in one step): exactly one request per
            fleet wakes a scaled-to-zero endpoint or resumes a paused one;
- `used`    the latest moment any replica sent the endpoint traffic (`endpoint_touch.lua` keeps the max);
- `idle`    the claim of the one replica that pauses (or scales to zero) an idle endpoint;
- `events`  a channel: "something changed, read the record now".
Store failures surface as `StoreError`; the endpoint watch decides what to do with them.
"""

from __future__ import annotations

import secrets

from gateway.policies.endpoints.record import EndpointRecord
from gateway.store.protocol import Store, key

_RECORD_TTL_MS = 7 * 86400 * 1000
_COUNT_TTL_MS = 30 * 86400 * 1000


class EndpointBoard:
    """Reads and writes one endpoint's shared state."""

    def __init__(self, store: Store, prefix: str, label: str) -> None:
        self.store = store
        self._tag = label  # namespace/name: two gateway configs naming the same endpoint share its state
        self._prefix = prefix
        self.token = secrets.token_hex(8)  # this replica, for the poller lease
        self.channel = self._key("events")

    def _key(self, what: str) -> str:
        return key(self._prefix, "ep", self._tag, what)

    async def read(self) -> EndpointRecord | None:
        return EndpointRecord.decode(await self.store.get(self._key("record")))

    async def write(self, record: EndpointRecord) -> bool:
        """Store `record` unless a later one is there; tell the other replicas. True when written."""
        written = await self.store.run_script("endpoint_record", [self._key("record")],
                                              [record.encode(), _RECORD_TTL_MS])
        if int(written):
            await self.store.publish(self.channel, self.message("record"))
        return bool(int(written))

    async def lease(self, seconds: float) -> bool:
        """Whether this replica polls for the fleet for the next `seconds` (taken or renewed)."""
        held = await self.store.run_script("endpoint_lease", [self._key("lease")],
                                           [self.token, max(1, int(seconds * 1000))])
        return bool(int(held))

    async def claim_wake(self, at: float, seconds: float) -> int:
        """Claim the wake-up for `seconds`: the fleet's wake-up count with this one, or 0 when taken already."""
        value = f"{secrets.token_hex(8)} {at:.3f}"
        count = await self.store.run_script("endpoint_wake", [self._key("wake"), self._key("wakes")],
                                            [value, max(1, int(seconds * 1000)), _COUNT_TTL_MS])
        if int(count):
            await self.store.publish(self.channel, self.message("wake"))
        return int(count)

    async def wake_started(self) -> float | None:
        """When the wake-up in progress started (None: none in progress)."""
        raw = await self.store.get(self._key("wake"))
        if not raw:
            return None
        try:
            return float(raw.split()[1])
        except (ValueError, IndexError):
            return None

    async def hold_wake(self, at: float, seconds: float) -> None:
        """Keep the wake claim for only `seconds` more (a failed resume may be tried again then)."""
        await self.store.set(self._key("wake"), f"retry {at:.3f}".encode(), ttl=max(seconds, 0.05))

    async def end_wake(self) -> None:
        """The endpoint is ready: the next scale-to-zero needs a new wake-up."""
        await self.store.delete(self._key("wake"))

    async def wake_ups(self) -> int:
        raw = await self.store.get(self._key("wakes"))
        try:
            return int(raw) if raw else 0
        except ValueError:
            return 0

    async def touch(self, at: float, seconds: float) -> float:
        """Report traffic at `at`; the fleet's latest traffic moment (kept `seconds`)."""
        latest = await self.store.run_script("endpoint_touch", [self._key("used")],
                                             [f"{at:.3f}", max(1, int(seconds * 1000))])
        return float(latest)

    async def last_used(self) -> float | None:
        raw = await self.store.get(self._key("used"))
        try:
            return float(raw) if raw else None
        except ValueError:
            return None

    async def claim_idle(self, seconds: float) -> bool:
        """Whether this replica is the one to act on the idle endpoint (nobody else for `seconds`)."""
        return await self.store.set(self._key("idle"), self.token.encode(), ttl=max(seconds, 0.05), nx=True)

    def message(self, what: str) -> bytes:
        """A notification on `channel`: what changed, and which replica says so."""
        return f"{what} {self.token}".encode()

    def mine(self, message: bytes) -> bool:
        """Whether this replica sent `message` (its own writes wake nobody here)."""
        return message.endswith(self.token.encode())
