"""Duration grammars: Go-style settings durations and the strict, fail-open wire response_timeout."""

from __future__ import annotations

import pytest

from tunnel_core.config.durations import format_duration, parse_duration, parse_response_timeout


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("+0", 0.0),
        ("0s", 0.0),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("2h45m", 9900.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("10ns", 1e-8),
        (" 5s ", 5.0),
    ],
)
def test_parse_duration_accepts_go_forms(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5 s", "-1s", "1d", "1s2", "abc", "1m 30s", "0x10s"])
def test_parse_duration_rejects_malformed_values(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("4500ms", 4.5),
        ("0s", 0.0),
        ("0ms", 0.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1000000us", 1.0),
        ("5000000000ns", 5.0),
    ],
)
def test_response_timeout_valid_values_set_a_deadline(value: str, seconds: float) -> None:
    assert parse_response_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        None,  # null
        "",  # empty
        "0s ",  # padded
        " 30s",
        "1.5s",  # fractions are not in the wire grammar
        "1m30s",  # one number, one unit only
        "30",  # unit required
        "30S",  # units are case-sensitive
        "-1s",
        "+1s",
        "10µs",  # only the ASCII "us" spelling
        "1d",
        30,  # a JSON number, not a string
        30.0,
        True,
        ["30s"],
        {"value": "30s"},
    ],
)
def test_response_timeout_invalid_or_absent_fails_open(value: object) -> None:
    assert parse_response_timeout(value) is None


def test_response_timeout_zero_means_immediate_expiry_not_no_deadline() -> None:
    assert parse_response_timeout("0s") == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (5, "5s"), (30, "30s"), (60, "1m0s"), (90, "1m30s"), (3600, "1h0m0s")],
)
def test_format_duration_round_trips_through_parse(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
