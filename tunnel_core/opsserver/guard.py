"""Who may use the operator UI and its APIs.

- ``/healthz``, ``/readyz`` and ``/metrics`` are open to every client (probes, scrapers).
- Everything else (``/``, ``/ui``, ``/assets/*``, ``/api/*``) answers loopback clients only,
  unless ``--allow-remote-ui``. A loopback TCP client must also name a loopback host in ``Host``,
  which keeps a DNS-rebinding page (``evil.example`` resolved to 127.0.0.1) from reading the APIs.
  Peers on ``--health.unix-socket`` count as loopback (the socket file's permissions decide who
  connects); uvicorn reports them with no client address, which a TCP peer always has.
- Unsafe methods (PUT, POST, DELETE, ...) must be same-origin: a browser's ``Sec-Fetch-Site``
  must say ``same-origin`` (or ``none`` for a typed URL), else ``Origin`` or ``Referer`` must
  equal this listener's origin. Requests with none of these headers (curl, scripts) pass.
  Unlike the reference, ``same-site`` is refused too: another local web app on a different
  port of 127.0.0.1 is same-site but must not change this process's settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import urlsplit

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LOOPBACK_ONLY = "access is restricted to loopback; set --allow-remote-ui to override"
BAD_HOST = "unexpected Host header; open the UI at http://127.0.0.1:<port>/ui or http://localhost:<port>/ui"
CROSS_ORIGIN = "unsafe browser request must be same-origin"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def is_loopback_address(host: str | None) -> bool:
    """True for a loopback IP literal (127.0.0.0/8, ::1, IPv4-mapped loopback)."""
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_loopback_host_header(host: str) -> bool:
    """True when a ``Host`` header names this machine's loopback (IP literal, localhost, *.localhost)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].split("]", 1)[0]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    return name == "localhost" or name.endswith(".localhost") or is_loopback_address(name)


def _origin_of(raw: str) -> str | None:
    parts = urlsplit(raw.strip())
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def is_same_origin(headers: Mapping[str, str], *, scheme: str, host: str) -> bool:
    """The same-origin rule for unsafe requests (header names lower-case)."""
    site = headers.get("sec-fetch-site", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return False
    expected = f"{scheme.lower()}://{host.strip().lower()}"
    origin = headers.get("origin", "").strip()
    if origin:
        return _origin_of(origin) == expected
    referer = headers.get("referer", "").strip()
    if referer:
        return _origin_of(referer) == expected
    return True


def check(scope: Scope, *, allow_remote: bool) -> str | None:
    """Why this request is refused (a 403 message), or None when it may proceed."""
    if scope.get("path", "") in OPEN_PATHS:
        return None
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    host = headers.get("host", "")
    if not allow_remote:
        client = scope.get("client")
        if client is not None:  # None: a unix-socket peer
            if not is_loopback_address(client[0]):
                return LOOPBACK_ONLY
            if host and not is_loopback_host_header(host):
                return BAD_HOST
    if scope.get("method", "GET") not in SAFE_METHODS and not is_same_origin(
        headers, scheme=scope.get("scheme", "http"), host=host
    ):
        return CROSS_ORIGIN
    return None


class Guard:
    """ASGI middleware applying :func:`check` to every HTTP request before the app sees it."""

    def __init__(self, app: ASGIApp, *, allow_remote: bool) -> None:
        self.app = app
        self.allow_remote = allow_remote

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] == "http":
            refusal = check(scope, allow_remote=self.allow_remote)
            if refusal is not None:
                body = (refusal + "\n").encode()
                await send({"type": "http.response.start", "status": 403, "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
