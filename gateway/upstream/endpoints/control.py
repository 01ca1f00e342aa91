"""The Inference Endpoints control plane, as `huggingface_hub` 2.4.0 calls it (hf_api.py), and health checks.

    GET  {control}/v2/endpoint/{namespace}/{name}                 the endpoint object     (read-endpoints)
    POST {control}/v2/endpoint/{namespace}/{name}/pause           -> paused, no url       (write-endpoints)
    POST {control}/v2/endpoint/{namespace}/{name}/resume          -> pending, no url      (write-endpoints)
         a 400 whose text says "already running" is a success (the client's own `running_ok`)
    POST {control}/v2/endpoint/{namespace}/{name}/scale-to-zero   -> scaledToZero, url kept
    GET  {endpoint url}{healthRoute}                              200 when a replica serves

Every failure is one `ControlPlaneError` with a bounded `reason` (the metric label and the log's cause):
`unreachable`, `timeout`, `unauthorized` (401), `forbidden` (403), `not_found` (404), `refused` (another
4xx), `server_error` (5xx), `garbage` (not an endpoint object). Its message never holds the token: the
token is only ever written into the Authorization header, and any text read back is scrubbed of it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import orjson

from gateway.core.proxies import ProxyUrl
from gateway.upstream.egress import Egress
from gateway.upstream.endpoints.info import EndpointInfo, parse_endpoint
from gateway.upstream.transport.connection import ConnectFailed, ConnectTimeout, ProxyRefused, ReadTimeout, WireError
from gateway.upstream.transport.pool import Pool

Reason = Literal["unreachable", "timeout", "unauthorized", "forbidden", "not_found", "refused", "server_error",
                 "garbage"]
REASONS: frozenset[str] = frozenset(Reason.__args__)  # type: ignore[attr-defined]
Action = Literal["pause", "resume", "scale-to-zero"]
_MAX_BODY = 256 * 1024
_STATUS_REASONS: dict[int, Reason] = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


class ControlPlaneError(Exception):
    """A control-plane call (or a health check) that did not give an answer to act on."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ControlPlaneClient:
    """Calls one namespace's endpoints on one control plane, with one token; a pool per origin and proxy
    (`egress`: the upstream's proxy and TLS settings, the same as its data plane's)."""

    def __init__(self, base_url: str, token: str | None, *, timeout: float, egress: Egress | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token or ""
        self._timeout = timeout
        self._egress = egress or Egress()
        self._pools: dict[tuple[str, ProxyUrl | None], Pool] = {}

    def endpoint_url(self, namespace: str, name: str) -> str:
        """Where the control plane keeps this endpoint."""
        return f"{self.base_url}/v2/endpoint/{namespace}/{name}"

    async def read(self, namespace: str, name: str) -> EndpointInfo:
        """The endpoint as the control plane sees it now."""
        return self._parse(*await self._call("GET", self.endpoint_url(namespace, name)))

    async def act(self, namespace: str, name: str, action: Action) -> EndpointInfo | None:
        """Pause, resume or scale to zero; the endpoint after it (None: "already running", nothing to do)."""
        status, body = await self._call("POST", f"{self.endpoint_url(namespace, name)}/{action}", check=False)
        if action == "resume" and status == 400 and b"already running" in body:
            return None
        if status >= 400:
            raise self._status_error(status, body)
        return self._parse(status, body)

    async def healthy(self, url: str, route: str) -> bool:
        """Whether `GET {url}{route}` answers 200 (what `InferenceEndpoint.wait()` checks); False on any failure."""
        try:
            status, _ = await self._call("GET", f"{url.rstrip('/')}{route}", check=False)
        except ControlPlaneError:
            return False
        return status == 200

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    # -- internals --------------------------------------------------------------------------------

    async def _call(self, method: str, url: str, *, check: bool = True) -> tuple[int, bytes]:
        headers = {"Accept": "application/json", "User-Agent": "hf-gateway"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with asyncio.timeout(self._timeout):
                pool = self._pool(url)
                resp = await pool.request(method, url, headers, b"" if method == "POST" else None)
                try:
                    body = await resp.read(_MAX_BODY + 1)
                except BaseException:
                    resp.close()
                    raise
                if len(body) > _MAX_BODY:  # an endpoint object is a few kB: this is not one
                    resp.close()
                    body = body[:_MAX_BODY]
                else:
                    resp.release()
        except TimeoutError as exc:
            raise ControlPlaneError("timeout", f"no answer from {_origin(url)} within {self._timeout:g} s") from exc
        except (ConnectTimeout, ReadTimeout) as exc:
            raise ControlPlaneError("timeout", f"no answer from {_origin(url)} in time") from exc
        except ProxyRefused as exc:
            raise ControlPlaneError("unreachable", f"{_origin(url)} cannot be reached: {exc}") from exc
        except (ConnectFailed, WireError, OSError) as exc:
            raise ControlPlaneError("unreachable", f"{_origin(url)} cannot be reached ({type(exc).__name__})") from exc
        if check and resp.status >= 400:
            raise self._status_error(resp.status, body)
        return resp.status, body

    def _pool(self, url: str) -> Pool:
        origin = _origin(url)
        key = (origin, self._egress.proxy_for(origin))  # a connection to a proxy is no connection to the origin
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._egress.pool(origin, limit=8, connect_timeout=self._timeout,
                                                        read_timeout=self._timeout)
        return pool

    def _parse(self, status: int, body: bytes) -> EndpointInfo:
        try:
            return parse_endpoint(orjson.loads(body))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise ControlPlaneError("garbage", f"the control plane answered {status} with something that is not "
                                               f"an endpoint ({self._scrub(str(exc))})") from exc

    def _status_error(self, status: int, body: bytes) -> ControlPlaneError:
        reason = _STATUS_REASONS.get(status, "server_error" if status >= 500 else "refused")
        return ControlPlaneError(reason, f"the control plane answered {status}: {self._scrub(_error_text(body))}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _error_text(body: bytes) -> str:
    """The `error` (or `message`) of an HF error body, else its first characters."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        for key in ("error", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    text = body[:200].decode("utf-8", "replace").strip()
    return text if text and not text.startswith("<") else "(no message)"
