"""Duration grammars: Go-style settings durations and the strict wire ``response_timeout``."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_WIRE_TIMEOUT = re.compile(r"^([0-9]+)(ns|us|ms|s|m|h)$")


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("30s", "1m30s", "250ms", "0") into seconds; ValueError when malformed."""
    s = text.strip()
    if s in ("0", "+0"):
        return 0.0
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(f"invalid duration {text!r} (use forms like 30s, 1m30s, 250ms)")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_response_timeout(value: object) -> float | None:
    """Seconds of a polled command's response_timeout, or None for no deadline (fail open).

    Only a JSON string of one non-negative integer and one unit counts; absent, null,
    padded or otherwise malformed values mean "no deadline", as the contract requires.
    """
    if not isinstance(value, str):
        return None
    m = _WIRE_TIMEOUT.match(value)
    if not m:
        return None
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Render seconds compactly in the Go style used by the settings ("30s", "1m0s", "250ms")."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"
