"""The endpoint stage: what a call to a managed dedicated endpoint does, given the endpoint's state.

It stands inside the retry stage (it sees every attempt) and, like every resilience stage, speaks to
the others through errors: `EndpointWaking` (a `ModelLoading`) sends the call to the next deployment
at once, or parks it with the cold-start machinery until the endpoint is ready; `EndpointUnavailable`
sends it to the next deployment, or is the clear 503 the client gets. Neither is retried here.

    running / updating (ready)  -> the call goes; a 503/502 (or a 400 "Invalid state") makes the watch
                                   read the control plane at once: if the endpoint turns out to be
                                   scaled to zero or starting, the call is waking (HF's proxy started the
                                   wake-up); if paused, unavailable
    scaledToZero                -> ONE request per fleet wakes it (`endpoint_wake.lua`): with another
                                   deployment left it is sent as is (HF answers 503 and starts the
                                   scale-up) and moves on; without, it carries `X-Scale-Up-Timeout`
                                   (the rest of its deadline) and HF's proxy holds it until a replica
                                   serves. Every other request: waking.
    pending / initializing,
    running but not yet healthy -> waking (the shared record is read again first, once a second)
    paused                      -> `resume: true`: ONE request per fleet resumes it, then waking;
                                   otherwise unavailable, with how to resume it
    failed / updateFailed       -> unavailable
    unknown (no reading yet)    -> the configured `url` if any; else unavailable

The estimate of a wake-up is the config's `wake_estimate` minus the time it has run (HF's scale-up
503 carries none). Calls that went to the endpoint are reported to the watch (the idle timer).
"""

from __future__ import annotations

import asyncio

from gateway.core.call import Answer, Call, StreamReply
from gateway.core.errors import EndpointUnavailable, EndpointWaking, ModelLoading, UpstreamStatusError
from gateway.core.pipeline import Handler
from gateway.policies.endpoints.fleet import EndpointFleet
from gateway.policies.endpoints.record import UNKNOWN
from gateway.policies.endpoints.watch import EndpointWatch
from gateway.policies.resilience.target import can_hand_off, deployment_of
from gateway.upstream.endpoints.control import ControlPlaneError

_WAKING_STATUSES = frozenset({502, 503})  # HF's proxy while a replica starts (502 before mid-2025)
_HOLD_MARGIN = 1.0  # seconds of the deadline kept for the answer after HF's proxy lets the call through


class EndpointStage:
    """Sends calls to managed endpoints according to their state (module docstring)."""

    def __init__(self, fleet: EndpointFleet, retry_after_cap: float = 120.0) -> None:
        self.fleet = fleet
        self.retry_after_cap = retry_after_cap

    @property
    def active(self) -> bool:
        return bool(self.fleet)

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        watch = self.fleet.get(deployment_of(call).upstream.name)
        if watch is None:
            return await nxt(call)
        state = await self._state(watch)
        if state == UNKNOWN:
            if watch.upstream.aim is None:
                raise self._unavailable(call, watch, "has not been found yet: the control plane has not answered "
                                                     "(set `url` on the upstream to use a known URL meanwhile)")
            return await self._send(call, nxt, watch)
        record = watch.record
        if record.ready:
            return await self._send(call, nxt, watch)
        if state == "scaledToZero":
            if await watch.claim_wake():
                return await self._wake(call, nxt, watch)
            raise self._waking(call, watch, "is waking up")
        if state == "paused":
            return await self._paused(call, watch)
        if record.broken:
            detail = f": {record.message}" if record.message else ""
            raise self._unavailable(call, watch, f"is {state}{detail}; it cannot serve until it is repaired")
        record = await watch.reread()  # starting: perhaps it is ready by now
        if record.ready:
            return await self._send(call, nxt, watch)
        raise self._waking(call, watch, "is starting")

    async def _state(self, watch: EndpointWatch) -> str:
        state = watch.record.state
        if state == UNKNOWN and watch.upstream.aim is None and not watch.first_step.is_set():
            # The app just started: give the first reading a moment rather than refuse at once.
            try:
                async with asyncio.timeout(watch.cfg.control_timeout):
                    await watch.first_step.wait()
            except TimeoutError:
                pass
            state = watch.record.state
        return state

    async def _wake(self, call: Call, nxt: Handler, watch: EndpointWatch) -> Answer:
        """This call wakes the endpoint: held by HF's proxy when it has nowhere else to go."""
        if not can_hand_off(call):
            left = call.deadline - watch.clock.monotonic() - _HOLD_MARGIN
            call.scale_up_hold = max(1.0, min(left, watch.cfg.read_timeout - _HOLD_MARGIN))
        try:
            answer = await self._send(call, nxt, watch, waking=True)
        except UpstreamStatusError as exc:
            if exc.status not in _WAKING_STATUSES or isinstance(exc, ModelLoading):
                raise
            await watch.observed("initializing", ready=False)
            raise self._waking(call, watch, "is waking up (scaled to zero)") from exc
        finally:
            call.scale_up_hold = None
        return answer

    async def _paused(self, call: Call, watch: EndpointWatch) -> Answer:
        if not watch.cfg.resume:
            raise self._unavailable(
                call, watch, f"is paused; resume it (`hf-gateway endpoints resume {watch.name}`, or "
                             f"`hf endpoints resume {watch.cfg.name} --namespace {watch.cfg.namespace}`), "
                             "or set `resume: true` on the upstream to let the gateway resume it")
        if await watch.claim_wake():
            try:
                await watch.resume()
            except ControlPlaneError as exc:
                raise self._unavailable(call, watch, f"is paused and resuming it failed ({exc.reason}); "
                                                     "the gateway will try again shortly") from exc
        raise self._waking(call, watch, "is resuming")

    async def _send(self, call: Call, nxt: Handler, watch: EndpointWatch, *, waking: bool = False) -> Answer:
        """The call goes to the endpoint; what it meets teaches the watch."""
        await watch.traffic_started()
        try:
            answer = await nxt(call)
        except UpstreamStatusError as exc:
            watch.traffic_ended()
            if not waking and _stale_view(exc):
                await self._reconsider(call, watch, exc)
            raise
        except BaseException:
            watch.traffic_ended()
            raise
        if isinstance(answer, StreamReply):
            answer.on_close.append(watch.traffic_ended)  # a stream keeps the endpoint busy until it ends
        else:
            watch.traffic_ended()
        if not watch.record.ready:  # it served: it is up, whatever the last reading said
            await watch.observed("running", ready=True)
        return answer

    async def _reconsider(self, call: Call, watch: EndpointWatch, exc: UpstreamStatusError) -> None:
        """A ready endpoint answered as a stopped one would: read the control plane; if it is waking, so is
        this call (its 503 started the wake-up); if it was paused meanwhile, it is unavailable."""
        record = await watch.refresh()
        if record.state == "scaledToZero" or record.waking:
            await watch.claim_wake()  # the 503 started the wake-up: count it, once per fleet
            if record.state == "scaledToZero":
                await watch.observed("initializing", ready=False)
            raise self._waking(call, watch, "is waking up (scaled to zero)") from exc
        if record.state == "paused":
            raise self._unavailable(call, watch, "was paused (by someone else: the gateway's last reading "
                                                 "said it served)") from exc

    def _waking(self, call: Call, watch: EndpointWatch, what: str) -> EndpointWaking:
        call.resilience.endpoint_passed_over = watch.name
        left = watch.wake_left()
        return EndpointWaking(f"endpoint {watch.label} {what}; expected ready in about {left:.0f} s",
                              estimated_time=round(left, 1), retry_after_cap=self.retry_after_cap)

    def _unavailable(self, call: Call, watch: EndpointWatch, what: str) -> EndpointUnavailable:
        call.resilience.endpoint_passed_over = watch.name
        return EndpointUnavailable(f"endpoint {watch.label} {what}")


def _stale_view(exc: UpstreamStatusError) -> bool:
    """Whether an endpoint believed ready answered as a scaled-to-zero, starting or paused one does."""
    if isinstance(exc, ModelLoading):
        return False
    if exc.status in _WAKING_STATUSES:
        return True
    # A paused endpoint's URL: HF documents nothing; `400 Bad Request: Invalid state` has been reported.
    return exc.status == 400 and "invalid state" in exc.message.lower()
