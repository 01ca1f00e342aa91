"""The gateway's one error hierarchy; `http/middleware/render.py` (`render_error`) is the only place they become HTTP.

    GatewayError                      status, type, code, retryable, extra headers
    ├── ClientError                   the request is at fault (4xx), never retried
    │   ├── BadRequest                400 malformed JSON, wrong types, missing fields
    │   ├── Unauthorized              401 missing or invalid gateway API key
    │   ├── NotFound                  404 unknown path
    │   ├── UnknownModel              404 no route for the model
    │   ├── MethodNotAllowed          405
    │   ├── RequestTimeout            408 the body did not arrive within the request's deadline
    │   ├── PayloadTooLarge           413 body over the configured limit
    │   ├── UnsupportedTask           422 the deployment's backend cannot serve this task
    │   │   └── UnsupportedRoute          a whole API (e.g. /v1/responses) the backend kind does not speak
    │   └── RateLimited               429 a gateway bucket is empty (carries Retry-After)
    ├── ServiceUnavailable            503 the gateway itself cannot take the request now
    │   ├── Overloaded                    in-flight caps reached
    │   └── StoreUnavailable              Redis down with fail_closed
    └── UpstreamError                 the upstream failed us
        ├── UpstreamUnreachable       502 connection refused / reset before a response
        ├── UpstreamTimeout           504 read timeout, or the deadline passed
        │   └── UpstreamConnectTimeout    no connection within connect_timeout (never reached it)
        ├── UpstreamProtocolError     502 garbage, truncated or oversized response
        ├── EndpointUnavailable       503 a managed endpoint cannot serve (paused, failed, not discovered)
        └── UpstreamStatusError       the upstream's own non-2xx answer, relayed with its status
            └── ModelLoading          503 "model is currently loading" with estimated_time
                └── EndpointWaking        a managed endpoint is scaling up (estimate from its config)

An `UpstreamStatusError` keeps the upstream's own error fields (`upstream_fields`: OpenAI's `type`,
`code`, `param`; TGI's `error_type`; anything else its error object held) so the renderer relays
them as they came: clients branch on them (`context_length_exceeded`, `insufficient_quota`, ...).
The gateway's `type` / `code` are only the defaults under them; the gateway's own errors never
carry upstream fields.

Foreign exceptions (aiohttp, asyncio, redis) are translated into these at the seam that sees
them (`upstream/http.py`, `store/redis.py`), never in handlers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class GatewayError(Exception):
    """Base of every error the gateway answers with."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"
    retryable: bool = False
    error_type: str | None = None  # TGI-style `error_type` on HF routes

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.retry_after = retry_after
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))

    def extra_body(self) -> dict[str, object]:
        """Fields added to the HF-dialect body (e.g. estimated_time)."""
        return {}


class ClientError(GatewayError):
    status = 400
    type = "invalid_request_error"
    code = "bad_request"


class BadRequest(ClientError):
    status = 400
    code = "bad_request"
    error_type = "validation"


class Unauthorized(ClientError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(ClientError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class UnknownModel(NotFound):
    code = "model_not_found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class RequestTimeout(ClientError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class UnsupportedTask(ClientError):
    status = 422
    code = "unsupported_task"
    error_type = "validation"


class UnsupportedRoute(UnsupportedTask):
    code = "unsupported_route"


class RateLimited(ClientError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True
    error_type = "overloaded"


class ServiceUnavailable(GatewayError):
    status = 503
    type = "server_error"
    code = "service_unavailable"
    retryable = True
    error_type = "overloaded"


class Overloaded(ServiceUnavailable):
    code = "overloaded"


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamConnectTimeout(UpstreamTimeout):
    """No connection was made in time: the request never reached the upstream, so a retry is safe."""


class UpstreamProtocolError(UpstreamError):
    status = 502
    code = "upstream_bad_response"
    retryable = False


RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})


class UpstreamStatusError(UpstreamError):
    """A non-2xx answer from the upstream: its status, headers and body, already read and released."""

    code = "upstream_status"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        upstream_headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        error_type: str | None = None,
        retry_after: float | None = None,
        upstream_fields: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.upstream_headers = dict(upstream_headers or {})
        self.body = body
        # The upstream's error fields other than its message, as they came (JSON values).
        self.upstream_fields: dict[str, object] = dict(upstream_fields or {})
        if error_type is not None:
            self.error_type = error_type
        self.retryable = status in RETRYABLE_STATUSES
        if status == 429:
            self.type, self.code = "rate_limit_error", "upstream_rate_limited"
        elif status < 500:
            self.type, self.code = "invalid_request_error", "upstream_rejected"


class ModelLoading(UpstreamStatusError):
    """503 "Model X is currently loading" with the upstream's `estimated_time`."""

    code = "model_loading"

    def __init__(
        self,
        message: str,
        *,
        estimated_time: float,
        upstream_headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        retry_after_cap: float = 120.0,
    ) -> None:
        super().__init__(
            message,
            status=503,
            upstream_headers=upstream_headers,
            body=body,
            retry_after=min(max(estimated_time, 1.0), retry_after_cap),
        )
        self.estimated_time = estimated_time

    def extra_body(self) -> dict[str, object]:
        return {"estimated_time": self.estimated_time}


class EndpointWaking(ModelLoading):
    """A managed dedicated endpoint is waking up (scaled to zero, resuming, initializing).

    HF's scale-up 503 carries no estimate, so `estimated_time` comes from the endpoint's configured
    `wake_estimate`. Being a `ModelLoading`, it takes the cold-start road: another deployment serves
    the request at once, or the request parks until the endpoint is ready.
    """

    code = "endpoint_waking"


class EndpointUnavailable(UpstreamError):
    """A managed endpoint cannot serve now and will not by itself: paused, failed, or never discovered.

    Retryable in the fallback's sense (another deployment may take the request), yet never retried on
    the same endpoint: it is not an upstream answer, so the retry stage leaves it alone.
    """

    status = 503
    code = "endpoint_unavailable"
    error_type = "overloaded"
