"""``--log.http-raw-unsafe``: every MCP HTTP exchange written to the log at debug level.

Two records per exchange, ``raw http request`` (method, URL, headers, body) and ``raw http
response`` (status, headers, body; a streamed body gets one ``raw http response body``
record per chunk as it arrives). Bodies are shown up to :data:`BODY_CAP` bytes each. The
records pass through the same redaction as every log line (Authorization, cookies,
``Bearer``/``sk-`` tokens, known secret values are masked), but bodies can still carry
private data: keep it for short debugging sessions. Records appear only while the log level
is ``debug`` (``--log.level debug``, or ``PUT /api/log-level`` at run time).
"""

from __future__ import annotations

import logging

log = logging.getLogger("tunnel_client.mcpclient")

BODY_CAP = 64 * 1024


def _body(data: bytes | None) -> str:
    if not data:
        return ""
    shown = data[:BODY_CAP].decode("utf-8", errors="replace")
    return shown + (f"... [{len(data) - BODY_CAP} more bytes]" if len(data) > BODY_CAP else "")


def _headers(items: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in items:
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)


def log_request(method: str, url: str, headers: list[tuple[str, str]], content: bytes | None) -> None:
    if enabled():
        log.debug("raw http request", extra={"method": method, "url": url, "headers": _headers(headers),
                                             "body": _body(content)})


def log_response(url: str, status: int, headers: list[tuple[str, str]], body: bytes | None, *,
                 streamed: bool = False) -> None:
    if enabled():
        log.debug("raw http response", extra={"url": url, "status_code": status, "headers": _headers(headers),
                                              "body": "(streamed; see raw http response body)" if streamed
                                              else _body(body)})


def log_body(url: str, chunk: bytes) -> None:
    """One chunk of a streamed response body, as it is read."""
    if enabled():
        log.debug("raw http response body", extra={"url": url, "body": _body(chunk)})
