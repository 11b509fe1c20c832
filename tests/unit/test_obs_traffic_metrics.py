"""The Traffic ring (relay.traffic) and the metrics added to the reference set (relay.metrics)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.traffic import TrafficRecorder, classify


@pytest.mark.parametrize(("code", "body", "posted", "outcome"), [
    (200, {"jsonrpc": "2.0", "id": 1, "result": {}}, 200, "ok"),
    (202, None, 200, "ok"),
    (200, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "x"}}, 200, "rpc_error"),
    (200, {"jsonrpc": "2.0", "id": 1, "result": {"isError": True, "content": []}}, 200, "tool_error"),
    (502, {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Bad Gateway"}}, 200, "http_error"),
    (200, {"result": {}}, None, "post_failed"),
    (200, {"result": {}}, 404, "ok"),  # the service already had an answer: nothing for the operator to do
])
def test_outcome_classification(code: int, body: dict[str, Any] | None, posted: int | None, outcome: str) -> None:
    assert classify(code, body, posted) == outcome


def test_recorder_is_bounded_newest_first_and_counts_everything() -> None:
    rec = TrafficRecorder(capacity=3)
    for i in range(5):
        rec.add(f"req_{i}", "main", "tools/call", "call", 200, "ok" if i % 2 == 0 else "rpc_error", float(i))
    assert [r.request_id for r in rec.recent(10)] == ["req_4", "req_3", "req_2"]
    snap = rec.snapshot(2)
    assert (snap["total"], snap["failed"], snap["capacity"], snap["payloads_recorded"]) == (5, 2, 3, False)
    assert len(snap["calls"]) == 2
    call = snap["calls"][0]
    assert set(call) == {"time", "request_id", "channel", "method", "kind", "status", "outcome", "latency_ms"}
    assert call["time"].endswith("Z") and call["latency_ms"] == 4.0


def _families(metrics: RelayMetrics) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}


def test_command_age_is_observed_from_created_at_and_bad_values_are_ignored() -> None:
    m = RelayMetrics()
    created = (datetime.now(UTC) - timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    m.observe_age(created)
    m.observe_age("")
    m.observe_age("yesterday")
    m.observe_age((datetime.now(UTC) + timedelta(seconds=30)).isoformat())  # clock skew: clamped to 0
    samples = {s.name: s.value for s in _families(m)["commands_age_seconds"].samples if not s.labels.get("le")}
    assert samples["commands_age_seconds_count"] == 2
    assert 1.5 <= samples["commands_age_seconds_sum"] <= 5


class _Stdio:
    kind = "stdio"

    def __init__(self, restarts: int, pid: int | None) -> None:
        self.restarts, self.pid = restarts, pid


class _HTTP:
    kind = "http"


def test_stdio_restarts_and_liveness_are_read_at_scrape_time() -> None:
    m = RelayMetrics()
    child = _Stdio(0, 4242)
    m.watch_stdio({"main": _HTTP(), "local": child})
    child.restarts, child.pid = 3, None
    fam = _families(m)
    restarts = {s.labels["channel"]: s.value for s in fam["mcp_stdio_restarts"].samples}
    running = {s.labels["channel"]: s.value for s in fam["mcp_stdio_child_running"].samples}
    assert restarts == {"local": 3.0} and running == {"local": 0.0}
    assert "mcp_stdio_restarts_total" in m.render().decode()


def test_retry_counters_exist_under_their_names() -> None:
    m = RelayMetrics()
    m.poll_retries.labels("http_503").inc()
    m.response_retries.labels("jsonrpc_response").inc(2)
    text = m.render().decode()
    assert 'commands_poll_retries_total{reason="http_503"} 1.0' in text
    assert 'command_response_post_retries_total{resp_type="jsonrpc_response"} 2.0' in text
