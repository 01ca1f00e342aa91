"""`HttpUpstream`: one backend's connection pool and the one place transport errors are mapped.

Given a `Plan`, it sends the request with the upstream's own credential (never the client's),
maps transport failures to `gateway.core.errors`, turns non-2xx answers into `UpstreamStatusError`
(body read and the connection released before anyone sleeps on it), validates and adapts JSON,
and for streams peeks the first data event before returning, so an early failure is an HTTP error.

Invariants:
- Every request says `Accept-Encoding: identity`; an answer in any other coding is a 502.
- Only upstream headers whose name is a token and whose value is printable ASCII are relayed.
- A refused answer (over `max_response_bytes`, invalid JSON) leaves no buffer behind: its bytes are
  dropped before the error is raised and the error does not chain the parser's exception (orjson's
  keeps a copy of the whole document), so a traceback that lives on until the cycle collector runs
  holds kilobytes, not the answer.
- Connections are partitioned by tenant (see `transport/pool.py`).
- A stream ends with `[DONE]` (OpenAI style) only when the upstream's ended properly: sent its own
  `[DONE]` (never a second one), or ended its framing cleanly; a stream cut by a reset or a missing
  last chunk ends with the relay's in-band error event instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import orjson

from gateway.core.call import Answer, Call, Reply, StreamReply
from gateway.core.clock import Clock
from gateway.core.errors import (
    UpstreamConnectTimeout,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from gateway.core.sse import DONE, MAX_EVENT, CommentThinner, error_in, event_data, is_comment, read_events
from gateway.core.upstream_config import UpstreamConfig
from gateway.upstream.egress import Egress
from gateway.upstream.plan import Plan, Planner, SseStyle
from gateway.upstream.status_errors import status_error, stream_error
from gateway.upstream.transport.connection import (
    BadHeader,
    BadResponse,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
    LineTooLong,
    ProxyRefused,
    ReadTimeout,
    Truncated,
    WireError,
)
from gateway.upstream.transport.pool import Pool
from gateway.upstream.transport.response import Response

log = logging.getLogger("gateway.upstream")

# Response headers worth giving back to the client.
_RELAY_PREFIXES = ("x-ratelimit-", "ratelimit", "x-inference-provider", "x-compute-")
_CREDENTIAL_STATUSES = frozenset({401, 402, 403})  # the upstream refuses the gateway's token (or its account)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")  # RFC 9110 §5.6.2
_CLEAN_VALUE = re.compile(r"[\x20-\x7e]{0,1024}")  # printable ASCII, bounded


class HttpUpstream:
    """A configured HTTP backend."""

    def __init__(self, name: str, config: UpstreamConfig, planner: Planner, clock: Clock,
                 retry_after_cap: float = 120.0) -> None:
        self.name = name
        self.kind = config.kind
        self.config = config
        self._planner = planner
        self._clock = clock
        self._retry_after_cap = retry_after_cap
        self._pool: Pool | None = None
        token = config.token.get_secret_value().strip() if config.token else None  # (a secret file's newline)
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}

    async def start(self) -> None:
        # `Accept-Encoding: identity` is sent, so answers come uncompressed: on the networks between a
        # gateway and its upstreams, decompressing costs more than the bytes it saves (bench/PROFILE.md),
        # and without the header RFC 9110 would allow any coding, streams included.
        self._pool = Egress.of(self.config).pool(self.config.base_url, limit=self.config.pool_size,
                                                 connect_timeout=self.config.connect_timeout,
                                                 read_timeout=self.config.read_timeout)
        if self._pool.proxy is not None:
            log.info("upstream %s is reached through the proxy %s", self.name, self._pool.proxy.shown)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def pool_stats(self) -> tuple[int, int]:
        """(active, idle) connections."""
        return self._pool.stats() if self._pool is not None else (0, 0)

    async def send(self, call: Call, model: str) -> Answer:
        plan = self._planner(call, model, self.config.base_url)
        headers = self._headers(call, plan)
        assert self._pool is not None, "upstream used before start()"
        try:
            resp = await self._pool.request(plan.method, plan.url, headers, plan.body, partition=call.tenant)
        except ConnectTimeout as exc:
            raise UpstreamConnectTimeout(f"upstream {self.name} could not be reached in time") from exc
        except ReadTimeout as exc:
            raise UpstreamTimeout(f"upstream {self.name} did not answer in time") from exc
        except ProxyRefused as exc:
            raise _proxy_refused(exc, self.name) from exc
        except ConnectFailed as exc:
            raise UpstreamUnreachable(f"upstream {self.name} is unreachable") from exc
        except Disconnected as exc:
            raise UpstreamUnreachable(f"upstream {self.name} closed the connection") from exc
        except BadResponse as exc:
            raise UpstreamProtocolError(f"upstream {self.name} sent a malformed answer: {exc}") from exc
        except BadHeader as exc:  # only configuration can put a line break there; a retry would send it again
            err = UpstreamError(f"the request to upstream {self.name} cannot be written: {exc}")
            err.retryable = False
            raise err from exc
        except (WireError, OSError) as exc:
            raise UpstreamUnreachable(f"upstream {self.name} failed: {type(exc).__name__}") from exc
        try:
            if resp.status >= 400:
                err = await self._status_error(resp)
                raise plan.explain(err) if plan.explain is not None else err
            if "Content-Encoding" in resp.headers:  # (absent: identity, nothing to check)
                self._check_coding(resp)
            relayed = _relayed(resp.headers.items())
            ctype = resp.headers.get("Content-Type", "")
            if plan.stream and not ctype.startswith("application/json"):
                reply = await self._stream(resp, plan, relayed)
                return await plan.reshape(reply) if plan.reshape is not None else reply
            return await self._complete(call, resp, plan, relayed)
        except BaseException:
            resp.release()
            raise

    def _headers(self, call: Call, plan: Plan) -> dict[str, str]:
        headers: dict[str, str] = {"X-Request-Id": call.request_id, **plan.headers, **self._auth}
        if call.scale_up_hold is not None:  # a managed endpoint's waking call: HF's proxy holds it until ready
            headers["X-Scale-Up-Timeout"] = str(max(1, int(call.scale_up_hold)))
        if plan.body is not None and plan.content_type is not None:
            headers["Content-Type"] = plan.content_type
        headers["Accept"] = plan.accept or ("text/event-stream" if plan.stream else "*/*")
        headers["Accept-Encoding"] = "identity"
        return headers

    async def _status_error(self, resp: Response) -> UpstreamError:
        try:
            body = await resp.read(64 * 1024)
        except (WireError, OSError):
            body = b""
        resp.release()
        if _coding(resp) != "identity":
            body = b""  # compressed bytes would only make a garbled message
        headers = {k.lower(): v for k, v in clean_headers(resp.headers.items())}
        err = status_error(resp.status, headers, body, now=self._clock.time(), upstream=self.name,
                           retry_after_cap=self._retry_after_cap)
        if resp.status in _CREDENTIAL_STATUSES:
            return _credentials_refused(err, self.name)
        return err

    def _check_coding(self, resp: Response) -> None:
        coding = _coding(resp)
        if coding != "identity":
            raise UpstreamProtocolError(
                f"upstream {self.name} sent a {coding[:40]}-encoded answer though the gateway asked for identity")

    async def _read_body(self, resp: Response) -> bytes:
        cap = self.config.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise UpstreamProtocolError(
                f"upstream {self.name} answered {resp.content_length} bytes, over the cap of {cap}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in resp.chunks():
                size += len(chunk)
                if size > cap:
                    raise UpstreamProtocolError(f"upstream {self.name} answered more than the cap of {cap} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
        except ReadTimeout as exc:
            raise UpstreamTimeout(f"upstream {self.name} stopped sending its answer") from exc
        except (Truncated, BadResponse) as exc:
            raise UpstreamProtocolError(f"upstream {self.name} sent a truncated answer") from exc
        except (WireError, ConnectionError) as exc:
            raise UpstreamProtocolError(f"upstream {self.name} dropped the connection mid-answer") from exc
        finally:
            chunks.clear()  # a refused answer's bytes go now, not when the collector reaches the traceback

    async def _complete(self, call: Call, resp: Response, plan: Plan, relayed: dict[str, str]) -> Reply:
        body = await self._read_body(resp)
        resp.release()  # read to its end: the connection serves the next request
        ctype = resp.headers.get("Content-Type", "application/json")
        if not plan.expect_json and not ctype.startswith("application/json"):
            return Reply(resp.status, body, ctype, relayed)
        data = _json(body)
        if data is _INVALID:
            del body  # not kept alive by this frame while the error travels
            what = ctype[:60] or "no content type"
            raise UpstreamProtocolError(f"upstream {self.name} sent an invalid JSON answer ({what})")
        if isinstance(data, dict):
            usage = data.get("usage")
            if isinstance(usage, dict):
                call.tokens_in = int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0)
                call.tokens_out = int(usage.get("completion_tokens") or usage.get("output_tokens") or 0)
        if plan.adapt is not None:
            body = orjson.dumps(plan.adapt(data))
        return Reply(resp.status, body, "application/json", relayed)

    async def _stream(self, resp: Response, plan: Plan, relayed: dict[str, str]) -> StreamReply:
        events = read_events(_lines(resp, self.name))
        first = b""
        try:
            async for ev in events:
                if ev[:1] == b":" and is_comment(ev):
                    continue  # nothing is relayed before the first event: comments before it are dropped
                first += ev
                if event_data(ev) is not None:
                    break
                if len(first) > MAX_EVENT:
                    raise UpstreamProtocolError(f"upstream {self.name} sent over 1 MiB of SSE fields without data")
            err = error_in(first) if first else None
            if err is not None:
                raise stream_error(err)
            if not first:
                raise UpstreamProtocolError(f"upstream {self.name} ended the stream before its first event")
            _check_first_event(first, self.name)
        except TimeoutError as exc:
            await events.aclose()
            raise UpstreamTimeout(f"upstream {self.name} sent no first event in time") from exc
        except BaseException:
            await events.aclose()  # no half-read generator left for the garbage collector to finalise
            raise
        # `resp.close` as a hook too: if the relay never starts iterating (the client left while the
        # headers were being written), `_rest`'s own `finally` never runs and would not free the upstream.
        rest = _rest(events, resp, plan.sse, self._clock, done=first.endswith(DONE))
        return StreamReply(first=first, rest=rest, headers=relayed, on_close=[resp.close])


def _credentials_refused(err: UpstreamStatusError, upstream: str) -> UpstreamError:
    """An upstream 401/402/403 refuses the gateway's own credential, not the client's key: relayed as
    is, the client would read it as "your key is wrong" (the openai SDK raises AuthenticationError)
    and nothing it can do would help. So: a 502 naming the upstream, never retried (a plain
    `UpstreamError`, not a status error, so no stage mistakes it for a retryable 502)."""
    out = UpstreamError(f"upstream {upstream} refused the gateway's credentials ({err.status}): {err.message}")
    out.code = "upstream_credentials_refused"
    out.retryable = False
    return out


def _proxy_refused(exc: ProxyRefused, upstream: str) -> UpstreamError:
    """The forward proxy's refusal: a 502 naming the upstream and the proxy's status (never the proxy's
    credentials). A 5xx (the proxy could not reach the upstream) is retried and handed over like a refused
    connection; a 4xx (407: the credentials, 403: the proxy's policy) is configuration, and stays as it is."""
    message = f"upstream {upstream} cannot be reached: {exc}"
    out = UpstreamUnreachable(message) if exc.status >= 500 else UpstreamError(message)
    out.code = "upstream_proxy_refused"
    out.retryable = exc.status >= 500
    return out


def _check_first_event(first: bytes, upstream: str) -> None:
    """The peeked event must carry JSON (or `[DONE]`): garbage is a 502 now, not a broken 200 stream."""
    data = event_data(first)
    if data is None or data.strip() == b"[DONE]":
        return
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(f"upstream {upstream} sent a stream whose first event is not JSON") from exc


async def _lines(resp: Response, name: str) -> AsyncIterator[bytes]:
    try:
        while True:
            line = await resp.readline(MAX_EVENT)
            if not line:
                return
            yield line
    except LineTooLong as exc:
        raise UpstreamProtocolError(f"upstream {name} sent an overlong SSE line") from exc
    except ReadTimeout as exc:
        raise UpstreamTimeout(f"upstream {name} stalled mid-stream") from exc
    except (WireError, ConnectionError) as exc:
        raise UpstreamProtocolError(f"upstream {name} dropped the stream") from exc


async def _rest(events: AsyncGenerator[bytes, None], resp: Response, style: SseStyle, clock: Clock,
                done: bool) -> AsyncIterator[bytes]:
    """The events after the peeked one; `done`: the peeked one was `[DONE]`."""
    finished = False
    last = b""  # the last event that was not a comment
    keep = CommentThinner(clock).keep  # `thin_comments`, without a generator stage of its own
    try:
        async for ev in events:
            if not keep(ev):
                continue
            if ev == DONE:
                done = True
            elif ev[:1] != b":":
                last = ev
            yield ev
        finished = True
        # An OpenAI stream must end with [DONE] (once), unless it ended with an in-band error: a
        # failed stream never claims it finished. A cut stream raised above and never gets here.
        if style is SseStyle.OPENAI and not done and error_in(last) is None:
            yield DONE
    finally:
        await events.aclose()
        # A stream abandoned half way (client gone, error) must not go back to the pool.
        if finished:
            resp.release()
        else:
            resp.close()


def _coding(resp: Response) -> str:
    """The answer's content coding, lower case ("identity" when none is named)."""
    return resp.headers.get("Content-Encoding", "identity").strip().lower() or "identity"


def clean_headers(headers: Iterable[tuple[str, str]]) -> Iterable[tuple[str, str]]:
    """The headers fit to relay: a token for a name, printable ASCII (at most 1 KiB) for a value."""
    return ((k, v) for k, v in headers if _TOKEN.fullmatch(k) and _CLEAN_VALUE.fullmatch(v))


def _relayed(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The upstream's headers worth giving back to the client (`_RELAY_PREFIXES`) that `clean_headers` lets
    through; the cheap name test first, so the answer's other headers are never matched against the patterns."""
    return {k: v for k, v in headers
            if k.lower().startswith(_RELAY_PREFIXES) and _TOKEN.fullmatch(k) and _CLEAN_VALUE.fullmatch(v)}


_INVALID = object()


def _json(body: bytes) -> Any:
    """The parsed body, or `_INVALID` (the parser's exception, which holds the whole document, dropped here)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return _INVALID
