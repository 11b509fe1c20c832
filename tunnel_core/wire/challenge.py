"""``WWW-Authenticate`` challenges: find and replace the RFC 9728 ``resource_metadata`` parameter.

A header may carry several challenges (``Basic realm="x", Bearer resource_metadata="..."``)
and quoted values may contain commas, so the header is split on commas outside quotes and
each segment is attributed to the most recent auth scheme. Only ``Bearer`` challenges count.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_PARAM_RE = re.compile(r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*""")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _segments(header: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the comma-separated parts of ``header``, quotes respected."""
    out: list[tuple[int, int]] = []
    start, in_quote, escaped = 0, False, False
    for i, ch in enumerate(header):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quote:
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
        elif ch == "," and not in_quote:
            out.append((start, i))
            start = i + 1
    out.append((start, len(header)))
    return out


def _bearer_matches(header: str) -> list[re.Match[str]]:
    """The ``resource_metadata`` parameters (name=value matches) of the Bearer challenges in ``header``."""
    matches: list[re.Match[str]] = []
    scheme: str | None = None
    for start, end in _segments(header):
        pos = start
        while pos < end and header[pos].isspace():
            pos += 1
        token = _TOKEN_RE.match(header, pos, end)
        if token is not None:
            after = token.end()
            while after < end and header[after].isspace():
                after += 1
            if after >= end or header[after] != "=":
                # "Scheme" or "Scheme param=value": a new challenge starts here.
                scheme = token.group(0).lower()
                pos = after
        if scheme != "bearer" or pos >= end:
            continue
        m = _PARAM_RE.fullmatch(header, pos, end)
        if m is not None and m.group(1).lower() == "resource_metadata":
            matches.append(m)
    return matches


def _value(m: re.Match[str]) -> str:
    raw = m.group(2)
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw


def resource_metadata_url(header: str) -> str:
    """The absolute ``resource_metadata`` URL of the first Bearer challenge; "" when absent."""
    for m in _bearer_matches(header):
        value = _value(m).strip()
        if value:
            return value
    return ""


def require_absolute(url: str) -> str:
    """``url`` when it is an absolute http(s) URL without credentials or fragment; ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("resource_metadata must be an absolute http(s) URL")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("resource_metadata must not carry credentials or a fragment")
    return url


def replace_resource_metadata(header: str, new_url: str) -> str:
    """``header`` with every Bearer ``resource_metadata`` value replaced by ``new_url`` (quoted)."""
    matches = _bearer_matches(header)
    if not matches:
        return header
    quoted = '"' + new_url.replace("\\", "\\\\").replace('"', '\\"') + '"'
    out: list[str] = []
    pos = 0
    for m in matches:
        out.append(header[pos:m.start(2)])
        out.append(quoted)
        pos = m.end(2)
    out.append(header[pos:])
    return "".join(out)
