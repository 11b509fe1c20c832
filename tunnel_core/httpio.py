"""The relay's HTTP client: a keep-alive connection pool over aiohttp.

Why aiohttp and not httpx2 (which the mcp SDK depends on): the relay makes three HTTP
exchanges per forwarded MCP call (poll, target, response), so the client's per-request
cost is the product's overhead. Measured on this project's 2-core machine against a
trivial loopback server: httpx2 ~560 us CPU per request, its transport layer httpcore2
~330 us, aiohttp ~170 us; and httpcore2's pool checks every idle connection with a
``poll()`` syscall on each request, which made it slower still at concurrency 32+.
So the relay process uses aiohttp alone for all its outbound HTTP; httpx2 is used only by
one-shot CLI commands, where a request costs nothing worth measuring.

Errors: the aiohttp/asyncio exception classes listed in ``NetworkErrors``;
``tunnel_core.targets.failures.classify_exception`` maps them to failure sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

NetworkErrors: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
# Network failures or an answer that is not the JSON it should be.
NetworkOrDecodeErrors: tuple[type[BaseException], ...] = (*NetworkErrors, ValueError)
# Failures where the request can not have been written yet (safe to retry anything).
PreSendErrors: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def default_ssl_context() -> ssl.SSLContext:
    """System trust store (via truststore when available, as httpx2 does), TLS 1.2+."""
    try:
        import truststore

        ctx: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:  # pragma: no cover
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _items(raw: Any) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers


class StreamResponse:
    """A response whose body is read incrementally."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = _items(resp.raw_headers)

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._resp.content.iter_any():
            yield chunk

    async def aread(self) -> bytes:
        return await self._resp.read()


class HTTPPool:
    """Keep-alive connection pool with a small request API (headers are (name, value) str pairs)."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self._max = max_connections
        self._keepalive = keepalive_expiry
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0, keepalive_timeout=self._keepalive,
                                             ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True, trust_env=False,
            )
        return self._session

    def _timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        connect = min(self._connect_timeout, total) if total else self._connect_timeout
        return aiohttp.ClientTimeout(total=total, connect=connect)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> Response:
        async with self._get().request(
            method, url, headers=headers, data=content, timeout=self._timeout(timeout), allow_redirects=False
        ) as resp:
            body = await resp.read()
            return Response(resp.status, _items(resp.raw_headers), body)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> AsyncIterator[StreamResponse]:
        async with self._get().request(
            method, url, headers=headers, data=content, timeout=self._timeout(timeout), allow_redirects=False
        ) as resp:
            yield StreamResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
