"""Retry timing: Retry-After parsing, backoff bounds and control-plane error decoding."""

from __future__ import annotations

import email.utils
import random

import pytest

from tunnel_core.controlplane.client import RETRY_AFTER_CAP, error_from_response, parse_retry_after
from tunnel_core.relay.backoff import Backoff

NOW = 1_800_000_000.0


def http_date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("60", 60.0),
        ("61", RETRY_AFTER_CAP),
        ("86400", RETRY_AFTER_CAP),
        (http_date(30), 30.0),
        (http_date(3600), RETRY_AFTER_CAP),
    ],
)
def test_retry_after_seconds_and_dates_are_capped_at_60s(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", [None, "", "soon", "-5", "1.5", "3s", http_date(-30), http_date(0), "Mon, 99 Foo 2026 00:00:00 GMT"],
)
def test_retry_after_absent_invalid_or_past_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_error_from_response_reads_code_message_retry_after_and_request_id() -> None:
    body = b'{"error":{"message":"slow down","type":"rate_limit","param":null,"code":"rate_limit_exceeded"}}'
    err = error_from_response(429, {"retry-after": "3", "x-request-id": "req_1"}, body)
    assert (err.status, err.code, err.message, err.retry_after, err.request_id) == (
        429, "rate_limit_exceeded", "slow down", 3.0, "req_1")
    assert "reduce request volume" in err.mitigation


@pytest.mark.parametrize(
    ("status", "body", "mitigation_part"),
    [
        (401, b"", "runtime API key"),
        (403, b'{"error":{"code":"tunnel_use_forbidden","message":"no"}}', "allowed to use this tunnel"),
        (404, b"not json", "tunnel id"),
        (503, b"{}", "transient"),
        (400, b'{"error":"flat string"}', ""),
    ],
)
def test_error_mitigation_is_a_lookup_by_code_then_status(status: int, body: bytes, mitigation_part: str) -> None:
    err = error_from_response(status, {}, body)
    assert mitigation_part in err.mitigation
    if not mitigation_part:
        assert err.mitigation == ""


def test_backoff_delays_stay_within_jittered_exponential_bounds() -> None:
    random.seed(1234)
    b = Backoff()
    for attempt in range(12):
        base = min(b.maximum, b.minimum * b.factor**attempt)
        delay = b.next()
        assert base / 2 <= delay <= base
    assert b.attempts == 12


@pytest.mark.parametrize("rand", [0.0, 0.999999])
def test_backoff_extremes_of_jitter(monkeypatch: pytest.MonkeyPatch, rand: float) -> None:
    monkeypatch.setattr(random, "random", lambda: rand)
    b = Backoff(minimum=0.2, maximum=10.0)
    delays = [b.next() for _ in range(10)]
    bases = [min(10.0, 0.2 * 2**i) for i in range(10)]
    for d, base in zip(delays, bases, strict=True):
        assert d == pytest.approx(base / 2 + rand * base / 2)
    assert max(delays) <= 10.0


def test_backoff_reset_starts_over_from_the_minimum() -> None:
    b = Backoff(minimum=0.2, maximum=10.0)
    for _ in range(8):
        b.next()
    b.reset()
    assert b.attempts == 0
    assert 0.1 <= b.next() <= 0.2
