"""What the endpoint policy reports as it happens: the seam to the metrics (`Metrics` implements it).

Policies sit below observability, so they are handed a recorder instead of importing the metrics; the
state gauge is read at scrape time instead (`observability/readouts.py`).
"""

from __future__ import annotations

from typing import Protocol


class EndpointEvents(Protocol):
    """Recorder of endpoint events; `endpoint` is the upstream's configured name."""

    def endpoint_wakeup(self, endpoint: str) -> None:
        """This replica started a wake-up (a request to a scaled-to-zero endpoint, or a resume)."""

    def endpoint_ready(self, endpoint: str, seconds: float) -> None:
        """A wake-up ended: the endpoint answered its health route `seconds` after it began."""

    def endpoint_idle_action(self, endpoint: str, action: str) -> None:
        """This replica paused (`pause`) or scaled to zero (`scale_to_zero`) an idle endpoint."""

    def endpoint_control_error(self, endpoint: str, reason: str) -> None:
        """A control-plane call failed (`reason`: one of control.REASONS)."""


class NoEvents:
    """Records nothing (tests, tools)."""

    def endpoint_wakeup(self, endpoint: str) -> None:
        pass

    def endpoint_ready(self, endpoint: str, seconds: float) -> None:
        pass

    def endpoint_idle_action(self, endpoint: str, action: str) -> None:
        pass

    def endpoint_control_error(self, endpoint: str, reason: str) -> None:
        pass
