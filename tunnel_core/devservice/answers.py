"""Raw ASGI requests and answers for the tunnel service's hot routes (front door, poll, response).

These routes are called once or twice per relayed MCP call, so they are served without
Starlette's request, response and routing objects. What goes on the wire stays the same: an
answer's headers and body are built exactly as Starlette's ``Response``/``JSONResponse``
build them (header order, ``content-length`` rules, the JSON encoder's options); a test
compares the two byte for byte. Request parsing follows Starlette's too (query strings with
blank values kept and the last value winning; header names as the server lowercased them).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import anyio
from starlette.types import Receive, Scope, Send

from tunnel_core.svcserver import DISCONNECT_EXTENSION

T = TypeVar("T")
_JSON = [(b"content-type", b"application/json")]


class Reply:
    """One complete answer: status, raw headers, body (what Starlette's ``Response`` would send)."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def send(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def reply(status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
          media_type: str | None = None) -> Reply:
    """``Response(body, status, headers, media_type)`` of Starlette, as a ``Reply``."""
    if headers is None:
        raw: list[tuple[bytes, bytes]] = []
        add_length = add_type = True
    else:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        add_length = add_type = True
        for k, _ in raw:
            if k == b"content-length":
                add_length = False
            elif k == b"content-type":
                add_type = False
    if add_length and not (status < 200 or status in (204, 304)):
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
    if media_type is not None and add_type:
        if media_type.startswith("text/") and "charset=" not in media_type.lower():
            media_type += "; charset=utf-8"
        raw.append((b"content-type", media_type.encode("latin-1")))
    return Reply(status, raw, body)


def json_body(content: Any) -> bytes:
    """The body Starlette's ``JSONResponse`` renders for ``content``."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def json_reply(content: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """``JSONResponse(content, status, headers)`` of Starlette, as a ``Reply``."""
    body = json_body(content)
    if headers is None and not (status < 200 or status in (204, 304)):  # the common case, without the loop
        return Reply(status, [(b"content-length", str(len(body)).encode()), *_JSON], body)
    return reply(status, body, headers, "application/json")


def error_reply(status: int, message: str, code: str | None, typ: str = "invalid_request_error",
                headers: Mapping[str, str] | None = None) -> Reply:
    """The API error body (``{"error": {message, type, param, code}}``), as ``app.api_error`` answers it."""
    return json_reply({"error": {"message": message, "type": typ, "param": None, "code": code}}, status, headers)


def header(scope: Scope, name: bytes) -> str:
    """The first value of a (lowercase) header, latin-1 decoded; '' when absent."""
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return ""


def query(scope: Scope) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, blank values kept (Starlette's ``QueryParams``)."""
    raw: bytes = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []


def last(pairs: list[tuple[str, str]], name: str, default: str) -> str:
    """``QueryParams.get``: the last value given for ``name``."""
    found = default
    for k, v in pairs:
        if k == name:
            found = v
    return found


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body; None when the client left first. Reading stops past ``limit`` bytes (the
    caller answers 413 for a body longer than ``limit``)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)


async def until_disconnect(receive: Receive) -> None:
    """Return when the client's connection is gone (the request body must already be read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_gone(scope: Scope, receive: Receive, budget: float,
                      wait: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """Run ``wait()`` until it returns, ``budget`` seconds pass, or the client disconnects.

    Returns (True, result) when it returned, else (False, None). The server's disconnect
    callback (``svcserver``, ``httpproto``) stops the wait without a task of its own; under another server, a
    task waits on ``receive()`` for ``http.disconnect``.
    """
    watch = scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
    deadline = anyio.current_time() + budget if budget != math.inf else math.inf
    if watch is not None:
        with anyio.CancelScope(deadline=deadline) as cs:
            unwatch = watch(cs.cancel)
            try:
                return True, await wait()
            finally:
                unwatch()
        return False, None
    done, result = False, None
    async with anyio.create_task_group() as tg:

        async def gone() -> None:
            await until_disconnect(receive)
            tg.cancel_scope.cancel()

        tg.start_soon(gone)
        with anyio.CancelScope(deadline=deadline):
            result = await wait()
            done = True
        tg.cancel_scope.cancel()
    return done, result
