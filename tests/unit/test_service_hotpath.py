"""Pieces of the tunnel service's per-call path made cheaper: they must behave exactly as before.

``iso`` formats one timestamp per second and reuses it (same text as ``datetime``), and a
waiting poll waits on a ring count with a future instead of an event and a cancel scope (a ring
between reading the count and waiting is not missed; a timed-out wait leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunnel_core.devservice.backends.base import TunnelQueue
from tunnel_core.devservice.frontdoor import iso

pytestmark = pytest.mark.anyio


def _datetime_iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.one_of(st.floats(min_value=0, max_value=4e9, allow_nan=False),
                 st.integers(0, 2**32).map(lambda s: s + 0.9999995), st.integers(0, 2**32).map(lambda s: s + 0.0005)))
def test_iso_writes_what_datetime_writes(ts: float) -> None:
    assert iso(ts) == _datetime_iso(ts)
    assert iso(ts + 1) == _datetime_iso(ts + 1)  # the cached second is replaced, not reused wrongly


async def test_a_ring_before_the_wait_is_not_missed_and_a_timeout_leaves_nothing() -> None:
    q = TunnelQueue("tunnel_" + "d" * 32)
    seen = q.rings
    q.notify()  # arrives while the poll is still reading the queue
    await asyncio.wait_for(q.wait_ring(seen, 30.0), 5.0)  # returns at once
    seen = q.rings
    await asyncio.wait_for(q.wait_ring(seen, 0.01), 5.0)  # nothing rang: returns after its timeout
    assert not q.waiters
    waiting = asyncio.ensure_future(q.wait_ring(seen, float("inf")))
    for _ in range(3):
        await asyncio.sleep(0)  # let it register
    assert len(q.waiters) == 1 and not waiting.done()
    q.notify()
    await asyncio.wait_for(waiting, 5.0)
    assert not q.waiters
    cancelled = asyncio.ensure_future(q.wait_ring(q.rings, float("inf")))
    await asyncio.sleep(0)
    cancelled.cancel()  # a poll whose client left
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert not q.waiters
