"""The fallback stage: try a route's deployments in order until one answers.

First pass, in configured order, each deployment is:
- skipped when its circuit is open (another request may hold its one half-open trial);
- skipped when its model is loading and no probe is due yet (it is remembered as a candidate to
  wait for); when a probe is due, this request may be the one that probes it;
- otherwise called, with `call.resilience.handoff` set when another deployment could still take the request, so
  the cold-start stage refuses to park and the retry stage refuses long waits: a loading model, a
  retryable failure (429, 502/503/504, connection failure) or an open circuit move the request on,
  and so does a deployment whose kind cannot serve the request at all (`UnsupportedTask`, e.g. a
  TGI server asked for `/v1/responses`: refused by its planner before anything was sent).
A non-retryable error (a 4xx, a read timeout, a garbled answer) is answered as it is: another
deployment would most likely say the same, and the work may already have been billed.

If nobody answered and some deployment is loading, the request waits for the one expected to be
ready first (the cold-start stage parks it, within the deadline). Otherwise the last error is the
answer; if every circuit was open, a 503 with Retry-After until the earliest half-open trial.

`call.resilience.fallbacks` counts the moves from one deployment to the next.
"""

from __future__ import annotations

from gateway.core.call import Answer, Call, Deployment
from gateway.core.clock import Clock
from gateway.core.errors import GatewayError, ModelLoading, ServiceUnavailable, UnsupportedTask
from gateway.core.pipeline import Handler
from gateway.policies.resilience.breaker import Breakers
from gateway.policies.resilience.loading import LoadingBoard
from gateway.policies.resilience.target import Target, target_of
from gateway.store.protocol import StoreError


class FallbackStage:
    """Walks the route's deployments; sets `call.target` for every try."""

    def __init__(self, breakers: Breakers, board: LoadingBoard, clock: Clock) -> None:
        self.breakers = breakers
        self.board = board
        self.clock = clock

    async def __call__(self, call: Call, nxt: Handler) -> Answer:
        deps = call.route.deployments
        if len(deps) == 1:
            return await self._only(call, nxt, deps[0])
        try:
            return await self._in_order(call, nxt, deps)
        finally:
            call.resilience.handoff = False  # a conversation between stages, over with the call

    async def _only(self, call: Call, nxt: Handler, dep: Deployment) -> Answer:
        target = target_of(dep, call.model)
        admission = self.breakers.admit(target)
        if admission is None:
            raise self._all_open(call, [target])
        call.target = dep
        try:
            return await nxt(call)
        finally:
            self.breakers.release(target, admission)

    async def _in_order(self, call: Call, nxt: Handler, deps: tuple[Deployment, ...]) -> Answer:
        loading: list[tuple[float, int, Deployment]] = []  # (ready_at, order, deployment)
        opened: list[Target] = []
        last: GatewayError | None = None
        for i, dep in enumerate(deps):
            if i:
                call.resilience.fallbacks += 1
            target = target_of(dep, call.model)
            admission = self.breakers.admit(target)
            if admission is None:
                opened.append(target)
                continue
            try:
                ready_at = await self._loading_until(target)
                if ready_at is not None:
                    loading.append((ready_at, i, dep))
                    if dep.upstream.kind == "endpoint":  # a managed endpoint waking up: counted as passed over
                        call.resilience.endpoint_passed_over = dep.upstream.name
                    continue
                call.target = dep
                call.resilience.handoff = i < len(deps) - 1 or bool(loading)
                try:
                    return await nxt(call)
                except ModelLoading as exc:
                    if not call.resilience.handoff:
                        raise  # it was this request's last chance and the cold-start stage said no
                    loading.append((self.clock.time() + exc.estimated_time, i, dep))
                    last = exc
                except GatewayError as exc:
                    if not (exc.retryable or isinstance(exc, UnsupportedTask)) or not call.resilience.handoff:
                        raise
                    last = exc
            finally:
                self.breakers.release(target, admission)
            if self.clock.monotonic() >= call.deadline:
                break
        if loading:
            return await self._wait_for_first(call, nxt, min(loading)[2])
        err = last or self._all_open(call, opened)
        try:
            raise err
        finally:
            del err, last  # no exception -> traceback -> this frame -> exception cycle left for the collector

    async def _wait_for_first(self, call: Call, nxt: Handler, dep: Deployment) -> Answer:
        """Every deployment is loading or failing: park on the one expected to be ready first."""
        call.target = dep
        call.resilience.handoff = False
        target = target_of(dep, call.model)
        admission = self.breakers.admit(target)
        try:
            return await nxt(call)
        finally:
            self.breakers.release(target, admission)

    async def _loading_until(self, target: Target) -> float | None:
        """When `target` expects to be ready, if it is loading and not due for a probe; else None."""
        if self.board.known_up(target):
            return None
        try:
            state = await self.board.read(target)
        except StoreError:
            state = self.board.loading_state(target)
        if state is None or not state.loading or self.clock.time() >= state.next_probe:
            return None
        return state.ready_at

    def _all_open(self, call: Call, targets: list[Target]) -> ServiceUnavailable:
        wait = min((self.breakers.retry_in(t) for t in targets), default=1.0)
        names = ", ".join(t.label for t in targets)
        return ServiceUnavailable(
            f"{call.model}: every deployment is failing ({names}); the gateway stopped calling them for a while",
            retry_after=max(1.0, wait),
        )
