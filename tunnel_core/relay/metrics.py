"""Prometheus metrics of one relay, with the reference implementation's names.

Beyond the reference: ``commands_poll_retries_total`` and ``command_response_post_retries_total``
(retry counts of the two control-plane calls), ``command_deadline_expired_total``,
``commands_parked`` (calls waiting for their caller's answer), and the
stdio supervisor's ``mcp_stdio_restarts_total`` / ``mcp_stdio_child_running``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from tunnel_core.promtext import (
    CollectorRegistry,
    Counter,
    CounterMetricFamily,
    Gauge,
    GaugeMetricFamily,
    Histogram,
    generate_latest,
)

LATENCY_MS_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
AGE_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RelayMetrics:
    """A private registry so several relays (tests, dev proxy) can live in one process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.polled = Counter("commands_polled", "Commands received from polls", registry=r)
        self.enqueued = Counter("commands_enqueued", "Commands accepted for processing", registry=r)
        self.poll_cycles = Counter("commands_poll_cycles", "Poll requests made", registry=r)
        self.poll_latency = Histogram(
            "commands_poll_latency_seconds", "Poll request latency", ["error"], registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60),
        )
        self.poll_errors = Counter("commands_poll_errors", "Failed polls", ["error_kind"], registry=r)
        self.poll_retries = Counter(
            "commands_poll_retries", "Polls retried after a backoff, by cause (HTTP status or error kind)",
            ["reason"], registry=r,
        )
        self.age = Histogram(
            "commands_age_seconds", "Time from enqueue at the tunnel service (created_at) to poll receipt",
            registry=r, buckets=AGE_SECONDS_BUCKETS,
        )
        self.queue_drops = Counter("commands_queue_drops", "Commands dropped", ["drop_reason"], registry=r)
        self.poll_last_success = Gauge(
            "commands_poll_last_successful_timestamp_seconds", "Unix time of the last successful poll", registry=r
        )
        self.queue_capacity = Gauge("commands_queue_capacity", "Commands that may be held at once", registry=r)
        self.queue_length = Gauge("commands_queue_length", "Commands held and waiting for a worker", registry=r)
        self.parked = Gauge(
            "commands_parked", "Calls waiting for their caller's answer to a server-to-client request", registry=r
        )
        self.worker_capacity = Gauge("dispatcher_worker_pool_capacity", "Concurrent MCP calls allowed", registry=r)
        self.worker_occupancy = Gauge("dispatcher_worker_pool_occupancy", "MCP calls running", registry=r)
        self.end_to_end = Histogram(
            "command_end_to_end_latency_milliseconds",
            "Time to the terminal response being accepted, from poll receipt (latency_type=poll_to_response) "
            "or from enqueue at the tunnel service, created_at (latency_type=enqueue_to_response)",
            ["latency_type", "tunnel_id", "tunnel_service_status", "request_kind", "request_method", "channel"],
            registry=r, buckets=LATENCY_MS_BUCKETS,
        )
        self.unsupported_channel = Counter(
            "command_unsupported_channel", "Commands for a channel with no binding",
            ["tunnel_id", "channel", "command_type"], registry=r,
        )
        self.response_retries = Counter(
            "command_response_post_retries", "Response POST retries", ["resp_type"], registry=r
        )
        self.deadline_drops = Counter(
            "command_deadline_expired", "Commands dropped because their response_timeout expired", ["stage"],
            registry=r,
        )
        self.liveness = Gauge("liveness", "1 while the process serves", registry=r)
        self.readiness = Gauge("readiness", "1 while /readyz answers 200", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_age(self, created_at: str) -> None:
        """Record enqueue -> poll receipt for a command's RFC 3339 ``created_at`` (ignored when absent/invalid)."""
        since = seconds_since(created_at)
        if since is not None:
            self.age.observe(since)

    def observe_end_to_end(self, labels: tuple[str, ...], poll_elapsed_ms: float, created_at: str) -> None:
        """One terminal response: ``poll_to_response`` always, ``enqueue_to_response`` when ``created_at`` is usable.

        ``labels`` are the values after ``latency_type`` (tunnel_id, tunnel_service_status,
        request_kind, request_method, channel). Enqueue time is the service's wall clock, so a
        clock behind ours (negative elapsed time) records nothing rather than a wrong value.
        """
        since = seconds_since(created_at, clamp=False)
        if since is not None and since >= 0:
            self.end_to_end.labels("enqueue_to_response", *labels).observe(since * 1000)
        self.end_to_end.labels("poll_to_response", *labels).observe(poll_elapsed_ms)

    def watch_stdio(self, targets: Mapping[str, Any]) -> None:
        """Expose restart counts and liveness of stdio children, read from the targets at scrape time."""
        stdio = {name: t for name, t in targets.items() if getattr(t, "kind", "") == "stdio"}
        if stdio:
            self.registry.register(_StdioCollector(stdio))


def seconds_since(created_at: str, *, clamp: bool = True) -> float | None:
    """Wall-clock seconds since an RFC 3339 time; None when absent or unparseable; clamped at 0 unless asked."""
    if not created_at:
        return None
    try:
        then = datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return None
    elapsed = time.time() - then
    return max(0.0, elapsed) if clamp else elapsed


class _StdioCollector:
    def __init__(self, targets: Mapping[str, Any]) -> None:
        self._targets = targets

    def collect(self) -> Iterator[Any]:
        restarts = CounterMetricFamily("mcp_stdio_restarts", "stdio MCP server restarts after an exit",
                                       labels=["channel"])
        running = GaugeMetricFamily("mcp_stdio_child_running", "1 while the stdio MCP server process runs",
                                    labels=["channel"])
        for name, target in sorted(self._targets.items()):
            restarts.add_metric([name], float(getattr(target, "restarts", 0)))
            running.add_metric([name], 1.0 if getattr(target, "pid", None) else 0.0)
        yield restarts
        yield running
