"""A bounded ring of recently relayed calls for the operator UI's Traffic tab.

One small record per command (time, channel, method, status, latency); never a payload,
a header or an argument. Recording is a few attribute reads and a deque append, so it
stays off the relay's cost sheet.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from tunnel_core.records import record

DEFAULT_CAPACITY = 500


@record(frozen=True, slots=True)
class TrafficRecord:
    """One finished (or dropped) command as the Traffic tab lists it."""

    time: float  # Unix time the outcome was known
    request_id: str
    channel: str
    method: str  # JSON-RPC method; "" for session termination / OAuth discovery
    kind: str  # call | notification | session_termination | oauth_discovery
    status: int  # resp_code posted to the tunnel service (0 when nothing was posted)
    outcome: str  # ok | rpc_error | tool_error | http_error | unsupported_channel | post_failed | deadline | ttl
    latency_ms: float  # poll receipt -> outcome

    def as_json(self) -> dict[str, Any]:
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.time)) + f".{int(self.time * 1000) % 1000:03d}Z",
            "request_id": self.request_id, "channel": self.channel, "method": self.method, "kind": self.kind,
            "status": self.status, "outcome": self.outcome, "latency_ms": round(self.latency_ms, 3),
        }


def classify(code: int, body: dict[str, Any] | None, posted: int | None) -> str:
    """The outcome word of a reply: cheap key lookups only, never a serialisation of the body."""
    if posted is None:
        return "post_failed"
    if code >= 400:
        return "http_error"
    if body is not None:
        if "error" in body:
            return "rpc_error"
        result = body.get("result")
        if isinstance(result, dict) and result.get("isError") is True:
            return "tool_error"
    return "ok"


class TrafficRecorder:
    """Keeps the last ``capacity`` records plus running totals (which never wrap)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = max(1, capacity)
        self._ring: collections.deque[TrafficRecord] = collections.deque(maxlen=self.capacity)
        self.total = 0
        self.failed = 0

    def add(
        self, request_id: str, channel: str, method: str, kind: str, status: int, outcome: str, latency_ms: float
    ) -> None:
        self.total += 1
        if outcome != "ok":
            self.failed += 1
        self._ring.append(
            TrafficRecord(time.time(), request_id, channel, method, kind, status, outcome, latency_ms)
        )

    def recent(self, limit: int = 100) -> list[TrafficRecord]:
        """Newest first."""
        n = min(max(limit, 0), len(self._ring))
        return [self._ring[-1 - i] for i in range(n)]

    def snapshot(self, limit: int = 100) -> dict[str, Any]:
        """The ``/api/traffic`` body."""
        return {
            "calls": [r.as_json() for r in self.recent(limit)],
            "capacity": self.capacity,
            "total": self.total,
            "failed": self.failed,
            "payloads_recorded": False,
        }
