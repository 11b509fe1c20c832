"""LogThrottle: a burst, then ``rate`` lines a second per key; what it drops is counted on the next line."""

from __future__ import annotations

from tunnel_core.logs import LogThrottle


def test_burst_then_drops_then_reports_what_it_dropped() -> None:
    t = LogThrottle(rate=2.0, burst=3)
    assert [t.admit("k", now=0.0) for _ in range(5)] == [0, 0, 0, None, None]
    assert t.admit("k", now=0.4) is None  # 0.8 of a token: still dropped
    assert t.admit("k", now=0.5) == 3  # one token back: the line says three were dropped before it
    assert t.admit("k", now=0.5) is None


def test_keys_are_independent_and_the_table_is_capped() -> None:
    t = LogThrottle(rate=1.0, burst=1)
    assert t.admit("a", now=0.0) == 0 and t.admit("a", now=0.0) is None
    assert t.admit("b", now=0.0) == 0
    for i in range(LogThrottle.MAX_KEYS * 2):
        t.admit(f"k{i}", now=0.0)
    assert len(t._buckets) <= LogThrottle.MAX_KEYS
