"""What the simulator received: request records, counters, concurrency and cancellations.

Invariants: counts are exact even when records are dropped (records are capped at
`record_limit` and not kept at all in fast mode); every request is counted once, under the model
its handler identified (or None when it never got that far, e.g. a 404); `cancelled` counts a
request at most once however many places notice that its client went away.
"""

from __future__ import annotations

import base64
import json
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, overload


class HeaderDict(dict[str, str]):
    """Headers as received (a plain dict, original case kept in the keys) with case-blind lookups.

    Clients re-case header names (aiohttp sends `X-Request-ID` for `X-Request-Id`), so tests
    looking a header up should not depend on the sender's spelling.
    """

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        super().__init__(items or {})
        self._folded = {k.lower(): k for k in self}

    @overload
    def _key(self, key: str) -> str: ...
    @overload
    def _key(self, key: object) -> object: ...
    def _key(self, key: object) -> object:
        if isinstance(key, str) and not super().__contains__(key):
            return self._folded.get(key.lower(), key)
        return key

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(self._key(key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._key(key))

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self._folded[key.lower()] = key

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        """The header's value whatever the case of `key`."""
        return super().get(self._key(key), default)


@dataclass
class ReceivedRequest:
    """One request as it arrived."""

    method: str
    path: str
    headers: HeaderDict
    body: bytes
    at: float
    model: str | None = None
    task: str | None = None
    provider: str | None = None  # the Inference Provider that served it (router routes; `providers.py`)
    cancelled: bool = False
    counted: bool = field(default=False, repr=False)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def content_type(self) -> str | None:
        """The `Content-Type` header as sent (None when the client sent none, as for raw bytes)."""
        return self.headers.get("Content-Type")

    def public(self) -> dict[str, Any]:
        """A JSON-able view for `GET /_sim/requests`, with credentials masked.

        A UTF-8 body is shown as text in `body`; any other body (an image, an audio file) is
        `body: null` with the exact bytes in `body_base64`, so nothing is lost to decoding.
        """
        headers = {
            k: ("<redacted>" if k.lower() in ("authorization", "x-api-key", "api-key") else v)
            for k, v in self.headers.items()
        }
        try:
            text: str | None = self.body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        view: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "model": self.model,
            "task": self.task,
            "provider": self.provider,
            "headers": headers,
            "content_type": self.content_type,
            "body": text,
            "at": self.at,
            "cancelled": self.cancelled,
        }
        if text is None:
            view["body_base64"] = base64.b64encode(self.body).decode("ascii")
        return view


class Stats:
    """Counters and records of received requests."""

    def __init__(self, record_limit: int, *, keep_records: bool = True) -> None:
        self._records: deque[ReceivedRequest] = deque(maxlen=record_limit)
        self._keep = keep_records and record_limit > 0
        self._counts: Counter[tuple[str | None, str]] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.cancelled = 0

    @property
    def requests(self) -> list[ReceivedRequest]:
        """The kept records, oldest first."""
        return list(self._records)

    def arrive(self, method: str, path: str, headers: Mapping[str, str], body: bytes, at: float) -> ReceivedRequest:
        """Open a record for a request that just arrived and count it as in flight."""
        # Fast mode keeps no records, so skip copying headers it would never show.
        record = ReceivedRequest(method, path, HeaderDict(headers if self._keep else None), body, at)
        if self._keep:
            self._records.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return record

    def identify(self, record: ReceivedRequest, model: str | None, task: str | None) -> None:
        """Attach the model and task, and count the request under that model."""
        record.model, record.task = model, task
        if not record.counted:
            record.counted = True
            self._counts[(model, record.path)] += 1

    def leave(self, record: ReceivedRequest) -> None:
        """The handler is done with the request."""
        self.in_flight -= 1
        self.identify(record, record.model, record.task)

    def cancel(self, record: ReceivedRequest) -> None:
        """The client went away before the response finished."""
        if not record.cancelled:
            record.cancelled = True
            self.cancelled += 1

    def count(self, model: str | None = None, path_prefix: str | None = None) -> int:
        """Requests received, optionally only for one model and/or paths under a prefix."""
        return sum(
            n
            for (m, path), n in self._counts.items()
            if (model is None or m == model) and (path_prefix is None or path.startswith(path_prefix))
        )

    def snapshot(self) -> dict[str, Any]:
        """Counters as JSON for `GET /_sim/stats`."""
        by_model: Counter[str] = Counter()
        by_path: Counter[str] = Counter()
        for (model, path), n in self._counts.items():
            by_model[model if model is not None else "<none>"] += n
            by_path[path] += n
        return {
            "total": sum(self._counts.values()),
            "by_model": dict(by_model),
            "by_path": dict(by_path),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "cancelled": self.cancelled,
        }

    def reset(self) -> None:
        """Forget records and counters; requests still in flight stay counted as in flight."""
        self._records.clear()
        self._counts.clear()
        self.max_in_flight = self.in_flight
        self.cancelled = 0
