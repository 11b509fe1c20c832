"""tunnel_core.promtext writes what prometheus_client writes: the same metrics, the same operations, both texts.

prometheus_client is the oracle (it stays a dependency of the tunnel service); only the values
of the ``*_created`` series (creation times) differ between two registries, so they are masked.
"""

from __future__ import annotations

import re
from typing import Any

import prometheus_client
import pytest
from prometheus_client import core as prometheus_core
from prometheus_client.parser import text_string_to_metric_families

from tunnel_core import promtext


class _Families:
    def __init__(self, lib: Any) -> None:
        self.lib = lib

    def collect(self) -> Any:
        restarts = self.lib.CounterMetricFamily("mcp_stdio_restarts", "restarts", labels=["channel"])
        running = self.lib.GaugeMetricFamily("mcp_stdio_child_running", 'running "child"\nline 2',
                                             labels=["channel"])
        for name, n in (("main", 3), ("b\\x", 0)):
            restarts.add_metric([name], float(n))
            running.add_metric([name], 1.0 if n else 0.0)
        yield restarts
        yield running


def exercise(lib: Any, families: Any) -> bytes:
    r = lib.CollectorRegistry()
    plain = lib.Counter("commands_polled", "Commands received from polls", registry=r)
    total = lib.Counter("already_total", "a name given with _total", registry=r)
    labelled = lib.Counter("poll_errors", "Failed polls", ["error_kind"], registry=r)
    never = lib.Counter("never_used", "labels but no child", ["x"], registry=r)
    gauge = lib.Gauge("queue_length", "Commands held", registry=r)
    big = lib.Gauge("last_success_timestamp_seconds", "Unix time", registry=r)
    hist = lib.Histogram("poll_latency_seconds", "Poll request latency", ["error"], registry=r,
                         buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60))
    plain_hist = lib.Histogram("age_seconds", "Age", registry=r, buckets=(0.005, 1, 2.5))
    ms = lib.Histogram("e2e_milliseconds", "End to end", ["a", "b"], registry=r, buckets=(1, 2, 5, 10000, 60000))
    r.register(families)
    plain.inc()
    plain.inc(2.5)
    total.inc()
    labelled.labels("timeout").inc()
    labelled.labels('we"ird\nlabel\\').inc(3)
    assert never is not None
    gauge.set(7)
    gauge.inc()
    gauge.dec(3)
    big.set(1765000000.123)
    for v in (0.001, 0.05, 0.2, 7, 100):
        hist.labels("false").observe(v)
    hist.labels("true").observe(0.5)
    plain_hist.observe(3)
    ms.labels("poll_to_response", "t1").observe(1.5)
    ms.labels("poll_to_response", "t1").observe(12000)
    return bytes(lib.generate_latest(r))


def _masked(text: bytes) -> str:
    return re.sub(r"^(\w+_created(\{[^}]*\})?) \S+$", r"\1 <time>", text.decode(), flags=re.M)


ORACLE: Any = type("Oracle", (), {
    "CollectorRegistry": staticmethod(prometheus_client.CollectorRegistry), "Counter": prometheus_client.Counter,
    "Gauge": prometheus_client.Gauge, "Histogram": prometheus_client.Histogram,
    "generate_latest": staticmethod(prometheus_client.generate_latest),
    "CounterMetricFamily": prometheus_core.CounterMetricFamily, "GaugeMetricFamily": prometheus_core.GaugeMetricFamily,
})


def test_the_text_is_prometheus_clients_line_for_line() -> None:
    ours = _masked(exercise(promtext, _Families(promtext)))
    theirs = _masked(exercise(ORACLE, _Families(ORACLE)))
    assert ours.splitlines() == theirs.splitlines()
    assert "<time>" in ours  # the _created series are there (and masked)
    assert list(text_string_to_metric_families(ours.replace("<time>", "1.0")))  # and it parses


@pytest.mark.parametrize("value", [0, 1, 0.5, 1e-9, 123456.0, 1234567.0, 1765000000.123, float("inf"),
                                   float("-inf"), float("nan"), -5.25, 2.0**70])
def test_floats_are_written_as_go_writes_them(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert promtext.go_float(value) == floatToGoString(value)


def test_counters_refuse_to_go_down() -> None:
    c = promtext.Counter("c", "c")
    with pytest.raises(ValueError):
        c.inc(-1)
    with pytest.raises(ValueError):
        promtext.Counter("d", "d", ["x"]).labels("a", "b")
