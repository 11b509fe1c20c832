"""What Harpoon remembers about its calls: the recent-call ring for ``/api/harpoon/calls`` and
the ``harpoon_*`` metrics (the reference's names and labels).

Every ``call_target`` attempt, whatever its outcome, becomes one :class:`CallRecord` and one
observation of each metric, labelled ``label`` (the target's label; ``__unknown__`` for a
label that is not registered, so callers cannot mint new series), ``status_class``
(``2xx``..``5xx``, ``none`` without an HTTP answer) and ``outcome``:

=====================  ==================================================
``success``            the target answered (any status)
``invalid_input``      the arguments were refused before anything was sent
``request_error``      no usable answer: connection, TLS, timeout, redirect refused
``response_too_large`` the body exceeded ``max_response_bytes``
=====================  ==================================================

Bodies are kept only with ``--harpoon.capture-payloads``, each cut to
:data:`CAPTURE_CAP` bytes, and every API answer passes through the log redaction.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import deque
from typing import Any

from tunnel_core.promtext import CollectorRegistry, Counter, Histogram
from tunnel_core.records import record

CALL_BUFFER_SIZE = 100
CAPTURE_CAP = 32 * 1024
UNKNOWN_LABEL = "__unknown__"
LATENCY_MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000)
SIZE_BUCKETS = (0, 256, 1024, 4096, 16384, 65536, 102400)


@record(frozen=True, slots=True)
class CallRecord:
    timestamp: float
    label: str
    url: str
    method: str
    status: int
    latency_ms: int
    req_bytes: int
    resp_bytes: int
    response_content_type: str = ""
    error: str = ""
    request_body: str | None = None
    response_body: str | None = None
    response_body_transformed: str | None = None
    body_is_base64: bool | None = None

    def view(self) -> dict[str, Any]:
        """The reference's JSON shape (payload fields only when they were captured)."""
        out: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.timestamp))
            + f".{int(self.timestamp % 1 * 1000):03d}Z",
            "label": self.label, "url": self.url, "method": self.method, "status": self.status,
            "latency_ms": self.latency_ms, "req_bytes": self.req_bytes, "resp_bytes": self.resp_bytes,
        }
        if self.response_content_type:
            out["response_content_type"] = self.response_content_type
        if self.error:
            out["error"] = self.error
        if self.request_body is not None:
            out["request_body"] = self.request_body
            out["response_body"] = self.response_body or ""
            if self.response_body_transformed is not None:
                out["response_body_transformed"] = self.response_body_transformed
            out["body_is_base64"] = bool(self.body_is_base64)
        return out


def captured(data: bytes) -> tuple[str, bool]:
    """A body for the call record: UTF-8 text when it is, else base64; cut to CAPTURE_CAP bytes."""
    cut = data[:CAPTURE_CAP]
    try:
        text = cut.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(cut).decode("ascii"), True
    return text + (f"... [{len(data) - CAPTURE_CAP} more bytes]" if len(data) > CAPTURE_CAP else ""), False


class CallBuffer:
    """The most recent calls, newest first on read."""

    def __init__(self, capacity: int = CALL_BUFFER_SIZE) -> None:
        self._calls: deque[CallRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()  # read by the UI's API handlers, written by tool calls

    @property
    def capacity(self) -> int:
        return self._calls.maxlen or 0

    def add(self, record: CallRecord) -> None:
        with self._lock:
            self._calls.append(record)

    def snapshot(self, limit: int = CALL_BUFFER_SIZE, label: str = "") -> list[CallRecord]:
        label = label.strip()
        with self._lock:
            calls = list(self._calls)
        picked = [c for c in reversed(calls) if not label or c.label == label]
        return picked[:max(0, limit)]


class HarpoonMetrics:
    """``harpoon_call_total``, ``harpoon_call_latency_milliseconds``, ``harpoon_response_size_bytes``."""

    LABELS = ("label", "status_class", "outcome")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter("harpoon_call", "Harpoon call_target invocations", self.LABELS, registry=registry)
        self.latency = Histogram("harpoon_call_latency_milliseconds", "Latency of Harpoon call_target invocations",
                                 self.LABELS, registry=registry, buckets=LATENCY_MS_BUCKETS)
        self.size = Histogram("harpoon_response_size_bytes", "Response body size returned by Harpoon call_target",
                              self.LABELS, registry=registry, buckets=SIZE_BUCKETS)

    def observe(self, label: str, status: int, outcome: str, latency_ms: float, response_bytes: int) -> None:
        values = (label or UNKNOWN_LABEL, status_class(status), outcome)
        self.calls.labels(*values).inc()
        self.latency.labels(*values).observe(max(0.0, latency_ms))
        self.size.labels(*values).observe(max(0, response_bytes))


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "none"
