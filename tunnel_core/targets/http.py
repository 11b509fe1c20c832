"""Streamable HTTP MCP target.

The connector's JSON-RPC message is POSTed as received (ids and payload untouched) over a
kept-alive connection pool. JSON and SSE answers are both read; every server notification
and server-to-client request on an SSE stream is emitted as ``jsonrpc_notify`` before the
terminal ``jsonrpc_response``.

Each message is parsed once, for the checks (valid JSON, the response to this id, an MCP
error), and travels on as the server's own bytes (``Reply.raw``): the response POST splices
them in rather than encoding the parsed value again. That keeps the payload byte-identical
(key order, whitespace, escapes, numbers beyond a double) and halves the relay's CPU per MiB.
An answer, or one SSE event, over ``MAX_ANSWER_BYTES`` is refused (``response_body_too_large``).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio

from tunnel_core import __version__, tracing
from tunnel_core.httpconn import ConnectError
from tunnel_core.httpio import HTTPPool, NetworkErrors, StreamResponse, describe_network_error
from tunnel_core.targets.base import Emit, ProbeResult, Reply
from tunnel_core.targets.failures import TargetFailure, classify_exception
from tunnel_core.targets.headers import StaticHeaders, request_headers, response_headers, with_static
from tunnel_core.wire.messages import HeaderMap, JsonRpcCommand, SessionTerminationCommand

log = logging.getLogger("tunnel_client.mcpclient")

MAX_ERROR_BODY = 100 * 1024
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # one JSON answer or SSE event (as for a stdio line)
DEFAULT_ACCEPT = "application/json, text/event-stream"
DRAIN_BUDGET = 1.0  # seconds a server has to end an SSE stream after its answer before the connection is closed
PROBE_PROTOCOL_VERSION = "2025-06-18"


def _is_response_to(msg: Any, rpc_id: Any) -> bool:
    return isinstance(msg, dict) and "method" not in msg and ("result" in msg or "error" in msg) and (
        msg.get("id") == rpc_id
    )


def _is_mcp_error(msg: Any, rpc_id: Any) -> bool:
    """A JSON-RPC error response for this id that may be passed through verbatim."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0" or "result" in msg or "method" in msg:
        return False
    err = msg.get("error")
    return (
        msg.get("id") == rpc_id
        and isinstance(err, dict)
        and isinstance(err.get("code"), int)
        and isinstance(err.get("message"), str)
    )


def parse_message(data: bytes, *, lenient: bool = False) -> tuple[Any, bytes | None]:
    """The JSON value in ``data``, and the bytes to post for it: ``data`` itself when it is UTF-8.

    Text that is not UTF-8 is decoded as before and its value re-encoded (None for the bytes):
    a JSON body by ``json.loads``'s own rules (UTF-16/32, lone surrogates), an SSE event
    (``lenient``) with invalid bytes replaced. Raises ValueError when it is not JSON.
    """
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    try:
        text = data.decode()  # then parsing str: about half the CPU of json.loads(bytes)
    except UnicodeDecodeError:
        return json.loads(data.decode("utf-8", "replace") if lenient else data), None
    return json.loads(text), data


def _json_headers(headers: HeaderMap, *, force: bool) -> HeaderMap:
    ct = headers.get("Content-Type", [""])[0].lower()
    if force or not ct.startswith("text/event-stream"):
        headers = dict(headers)
        headers["Content-Type"] = ["application/json"]
    return headers


class HTTPTarget:
    """An MCP server reached over Streamable HTTP."""

    kind = "http"
    proc_affinity = False

    def __init__(self, channel: str, url: str, http: HTTPPool, *, connection_ttl: float,
                 static: StaticHeaders | None = None) -> None:
        self.channel = channel
        self.url = url
        self._http = http
        self._ttl = connection_ttl
        self.static = static  # operator headers for this MCP URL (connector headers win conflicts)
        self._extra = static.extra if static else ()

    @property
    def http(self) -> HTTPPool:
        """The channel's pool (proxy, CA bundle, client certificate); OAuth discovery uses it too."""
        return self._http

    def _headers(self, cmd_headers: HeaderMap) -> list[tuple[str, str]]:
        headers = request_headers(cmd_headers, allow_authorization=True)
        if self._extra:
            headers = with_static(self._extra, headers)
        names = {k.lower() for k, _ in headers}
        if "accept" not in names:
            headers.append(("Accept", DEFAULT_ACCEPT))
        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        headers.append(("Content-Type", "application/json"))
        tracing.inject(headers)  # W3C traceparent of the mcp.call span (no-op unless tracing is on)
        return headers

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        msg = cmd.jsonrpc
        is_request = "method" in msg and "id" in msg
        rpc_id = msg.get("id")
        body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._headers(cmd.headers)
        try:
            with anyio.fail_after(self._ttl):
                async with self._http.stream(
                    "POST", self.url, content=body, headers=headers, timeout=self._ttl
                ) as resp:
                    if not is_request:
                        await resp.aread()
                        return Reply("notify_ack", resp.status, None, response_headers(resp.header_items()))
                    return await self._read_answer(resp, rpc_id, emit)
        except TimeoutError:
            raise  # connection TTL: the dispatcher drops the command without a response
        except TargetFailure as known:
            return self._failure_reply(known, rpc_id, is_request)
        except NetworkErrors as exc:
            failure = classify_exception(exc)
            log.warning(
                "mcp request failed",
                extra={"channel": self.channel, "source": failure.source, "kind": failure.kind,
                       "error": describe_network_error(exc, self.url), "error_type": type(exc).__name__},
            )
            return self._failure_reply(failure, rpc_id, is_request)
        except Exception as exc:  # one odd request must never stop the relay
            log.error("mcp request failed unexpectedly",
                      extra={"channel": self.channel, "error_type": type(exc).__name__})
            return self._failure_reply(TargetFailure("client_internal", "unknown"), rpc_id, is_request)

    def _failure_reply(self, failure: TargetFailure, rpc_id: Any, is_request: bool) -> Reply:
        if not is_request:
            return Reply("notify_ack", failure.status, None, {})
        # Upstream headers of an HTTP error survive (a 401's WWW-Authenticate is how OAuth starts).
        headers = {**(failure.headers or {}), "Content-Type": ["application/json"]}
        return Reply("jsonrpc_response", failure.status, failure.envelope(rpc_id), headers)

    async def _read_answer(self, resp: StreamResponse, rpc_id: Any, emit: Emit) -> Reply:
        status = resp.status
        headers = response_headers(resp.header_items())
        ctype = (resp.header("content-type") or "").split(";")[0].strip().lower()
        if status >= 300:
            raw = await _read_capped(resp, MAX_ERROR_BODY)
            if raw is None:
                raise TargetFailure("target_http", "response_body_too_large", status, status, headers)
            if not raw:
                raise TargetFailure("target_http", "response_body_missing", status, status, headers)
            try:
                msg, splice = parse_message(raw) if ctype != "text/event-stream" else await _last_sse_message(raw)
            except ValueError:
                raise TargetFailure("target_http", "malformed_json", status, status, headers) from None
            if _is_mcp_error(msg, rpc_id):
                return Reply("jsonrpc_response", status, msg, headers, splice)
            raise TargetFailure("target_http", "invalid_mcp_error", status, status, headers)
        if ctype == "text/event-stream":
            return await self._read_sse(resp, rpc_id, emit, status, headers)
        raw = await _read_capped(resp, MAX_ANSWER_BYTES)
        if raw is None:
            raise TargetFailure("protocol", "response_body_too_large")
        if not raw:
            raise TargetFailure("protocol", "response_body_missing")
        try:
            msg, splice = parse_message(raw)
        except ValueError:
            raise TargetFailure("protocol", "malformed_json") from None
        if not _is_response_to(msg, rpc_id):
            raise TargetFailure("protocol", "invalid_protocol_response")
        return Reply("jsonrpc_response", status, msg, _json_headers(headers, force=True), splice)

    async def _read_sse(
        self, resp: StreamResponse, rpc_id: Any, emit: Emit, status: int, headers: HeaderMap
    ) -> Reply:
        notify_ok = True
        chunks = resp.aiter_bytes()
        events = iter_sse(chunks)
        async for event, data in events:
            if event not in ("", "message") or not data.strip():
                continue  # keep-alive pings and other event types carry no JSON-RPC
            try:
                msg, splice = parse_message(data, lenient=True)
            except ValueError:
                raise TargetFailure("protocol", "malformed_json") from None
            if _is_response_to(msg, rpc_id):
                # The answer is relayed now, without waiting for the server to end its stream: the
                # rest (usually just the last chunk) is read after the block, so the connection can
                # be reused. Closing the generators here spares the loop a finalizer task for each.
                await events.aclose()
                if resp.drain_later(DRAIN_BUDGET):
                    await chunks.aclose()
                else:
                    await _drain(chunks)
                return Reply("jsonrpc_response", status, msg, _json_headers(headers, force=False), splice)
            if isinstance(msg, dict) and "method" in msg:
                # A notification, or a request of the server to the caller (sampling, elicitation,
                # roots/list, ping): relayed like a notification, in order. The caller answers with a
                # POST of its own, which reaches this server in the same session while this stream
                # stays open; an unanswered request is the server's to time out.
                if notify_ok:
                    notify_ok = await emit(Reply("jsonrpc_notify", status, msg, headers, splice))
                continue
            raise TargetFailure("protocol", "invalid_protocol_response")
        raise TargetFailure("transport_closed", "eof")

    async def terminate_session(self, cmd: SessionTerminationCommand) -> Reply:
        headers = [(k, v) for k, v in request_headers(cmd.headers) if k.lower() != "content-type"]
        if self._extra:
            headers = with_static(self._extra, headers)
        try:
            with anyio.fail_after(self._ttl):
                resp = await self._http.request("DELETE", self.url, headers=headers, timeout=self._ttl)
        except NetworkErrors:
            return Reply("session_termination_response", 502, None, {})
        return Reply("session_termination_response", resp.status, None, response_headers(resp.header_items()))

    async def probe(self, timeout: float = 2.0) -> ProbeResult:
        """MCP ``initialize`` handshake; 401 counts as reachable-but-auth-required."""
        body = {
            "jsonrpc": "2.0",
            "id": "tunnel-client-probe",
            "method": "initialize",
            "params": {
                "protocolVersion": PROBE_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "tunnel-client", "version": __version__},
            },
        }
        headers = [("Accept", DEFAULT_ACCEPT), ("Content-Type", "application/json")]
        if self.static:
            headers = with_static(self.static.for_discovery(self.url), headers)
        try:
            with anyio.fail_after(timeout):
                async with self._http.stream(
                    "POST", self.url, content=json.dumps(body).encode(), headers=headers, timeout=timeout
                ) as resp:
                    raw = await _read_capped(resp, MAX_ERROR_BODY)
                    session = resp.header("mcp-session-id")
        except TimeoutError:
            return ProbeResult("timeout", f"no answer within {timeout:g}s")
        except NetworkErrors as exc:
            f = classify_exception(exc)
            if f.source == "timeout":
                return ProbeResult("timeout", f"no answer within {timeout:g}s")
            return ProbeResult("failed", describe_network_error(exc, self.url))
        except Exception as exc:  # a probe reports; it never crashes the relay
            return ProbeResult("failed", f"client_internal: {type(exc).__name__}")
        if resp.status == 401:
            return ProbeResult("auth-required", "HTTP 401")
        if resp.status >= 300:
            return ProbeResult("failed", f"HTTP {resp.status}")
        if session:
            # Leave no half-open session behind on the server.
            with contextlib.suppress(*NetworkErrors):
                await self._http.request("DELETE", self.url, headers=[*headers[:-2], ("Mcp-Session-Id", session)],
                                         timeout=timeout)
        text = (raw or b"").decode("utf-8", "replace")
        if '"result"' not in text:
            return ProbeResult("failed", "initialize returned no result")
        return ProbeResult("ok")

    async def wait_accepting(self, deadline: float) -> bool:
        """Retry a TCP-level request until the server accepts connections or ``deadline`` (monotonic) passes."""
        delay = 0.05
        while True:
            try:
                await self._http.request("HEAD", self.url, headers=[], timeout=1.0)
                return True
            except ConnectError:
                pass
            except NetworkErrors:
                return True
            if anyio.current_time() + delay > deadline:
                return False
            await anyio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def aclose(self) -> None:
        await self._http.aclose()


async def _read_capped(resp: StreamResponse, cap: int) -> bytes | None:
    """Read at most ``cap`` bytes; None when the body is larger."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def iter_sse(chunks: AsyncIterator[bytes], *, max_event: int = MAX_ANSWER_BYTES,
                   ) -> AsyncGenerator[tuple[str, bytes], None]:
    """Yield (event, data) for each server-sent event; the caller keeps ``chunks`` for draining.

    ``data`` is the event's data lines joined by LF, as bytes (the server's JSON text, to be
    posted as it is). Linear in the stream's size and frugal with copies, which is what a
    multi-megabyte event costs: each chunk is searched once for line ends, the unfinished
    event is kept as views of the chunks it came in, and a large data line is copied once, out
    of them. A CRLF split across two chunks stays one line break, and an event (or the
    unfinished one) over ``max_event`` bytes raises ``TargetFailure`` (``response_body_too_large``).
    """
    pieces: list[_Piece] = []  # the unfinished event, line ends normalised to LF
    size = 0  # its length so far (without the chunk being scanned)
    line_at = 0  # where its current line starts
    last_line = 0  # where its last complete line starts
    half_crlf = False  # the previous chunk ended with CR, whose LF may start this one
    async for chunk in chunks:
        if half_crlf and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        half_crlf = False
        if b"\r" in chunk:
            half_crlf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        seg = 0  # the event's bytes in this chunk start here; chunk[i] is at event offset size + i - seg
        pos = seg
        while (nl := chunk.find(b"\n", pos)) >= 0:
            at = size + nl - seg
            if at == line_at:  # an empty line: the event is complete
                if at:
                    pieces.append((chunk, seg, nl))
                    found = _sse_event(pieces, last_line, at - 1)
                    if found is not None:
                        yield found
                pieces, size, line_at, last_line, seg = [], 0, 0, 0, nl + 1
            else:
                last_line, line_at = line_at, at + 1
            pos = nl + 1
        if seg < len(chunk):
            pieces.append((chunk, seg, len(chunk)))
            size += len(chunk) - seg
            if size > max_event:
                raise TargetFailure("protocol", "response_body_too_large")


_Piece = tuple[bytes, int, int]  # bytes[start:stop], not yet copied


def _take(pieces: list[_Piece], a: int, b: int) -> bytes:
    """Bytes a..b of the event held in ``pieces``: one copy, none for a whole piece alone."""
    out: list[bytes] = []
    off = 0
    for buf, start, stop in pieces:
        lo, hi = max(a, off), min(b, off + stop - start)
        if lo < hi:
            lo, hi = start + lo - off, start + hi - off
            out.append(buf if lo == 0 and hi == len(buf) else buf[lo:hi])
        off += stop - start
        if off >= b:
            break
    return out[0] if len(out) == 1 else b"".join(out)


def _sse_event(pieces: list[_Piece], last_line: int, end: int) -> tuple[str, bytes] | None:
    """(event, data) of an event whose lines end with LF, the last one from ``last_line`` to ``end``.

    None for an event with neither (comments only). The earlier lines are few and short; the last
    one, typically ``data: <the JSON-RPC message>``, is copied once, without its field name.
    """
    event = ""
    data: list[bytes] = []
    lines = _take(pieces, 0, last_line)
    pos = 0
    while pos < len(lines):
        stop = lines.find(b"\n", pos)
        event = _sse_field(lines[pos:stop], data) or event
        pos = stop + 1
    name = _take(pieces, last_line, min(end, last_line + 6))
    if name.startswith(b"data:"):
        data.append(_take(pieces, last_line + (6 if name[5:6] == b" " else 5), end))
    else:
        event = _sse_field(_take(pieces, last_line, end), data) or event
    if not data and not event:
        return None
    return event, data[0] if len(data) == 1 else b"\n".join(data)


def _sse_field(line: bytes, data: list[bytes]) -> str:
    """Record a ``data:`` line in ``data``; the name of an ``event:`` line, else ''."""
    if line.startswith(b"data:"):
        data.append(line[6:] if line[5:6] == b" " else line[5:])
    elif line.startswith(b"event:"):
        return line[6:].strip().decode("utf-8", "replace")
    return ""


async def _drain(chunks: AsyncIterator[bytes], budget: float = DRAIN_BUDGET) -> None:
    """Read what is left of a finished stream so the kept-alive connection can be reused."""
    with anyio.move_on_after(budget):
        async for _ in chunks:
            pass


async def _last_sse_message(raw: bytes) -> tuple[Any, bytes | None]:
    """The message of the last event with data in a (small, whole) SSE body; ValueError if none."""
    last: bytes | None = None

    async def one() -> AsyncIterator[bytes]:
        yield raw + b"\n\n"  # a body may end without the blank line

    async for event, data in iter_sse(one()):
        if event in ("", "message") and data.strip():
            last = data
    if last is None:
        raise ValueError("no data")
    return parse_message(last, lenient=True)
