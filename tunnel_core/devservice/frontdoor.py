"""The MCP front door ``POST|DELETE /v1/mcp/{tunnel_id}``, a raw ASGI handler (see ``answers``).

``POST`` enqueues a ``jsonrpc`` command and answers with JSON, or with SSE carrying each
``jsonrpc_notify`` and then the final message when the caller accepts ``text/event-stream``;
``DELETE`` becomes ``session_termination``; ``GET`` is refused with 405. The caller token has
been checked before this handler runs (``credentials.FrontDoorGuard``).

A caller that disconnects before a client took its command withdraws it (``Broker.forget``);
once a client has it, the command runs to its own deadline. Channel names are checked, bodies
nested deeper than ``max_json_depth`` are refused, and the backend may refuse channels no
client of the tunnel declared. A ``WWW-Authenticate`` header in a relayed answer gets its
``resource_metadata`` pointed at this service's PRMD route for the tunnel
(``rewrite_www_authenticate``). One log line per caller outcome (``_Outcome``), formatted only
when the level is enabled.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.devservice.answers import (
    Reply,
    error_reply,
    header,
    json_reply,
    last,
    query,
    read_body,
    reply,
    unless_gone,
)
from tunnel_core.devservice.broker import Broker, DeliveryError, Pending
from tunnel_core.devservice.config import ServiceConfig
from tunnel_core.devservice.credentials import Gate
from tunnel_core.devservice.jsonbody import JSONBodyError, parse_json
from tunnel_core.devservice.oauth_routes import base_url
from tunnel_core.devservice.runtime import admit_refusal, tunnel_refusal
from tunnel_core.svcserver import DISCONNECT_EXTENSION
from tunnel_core.wire.models import CHANNEL_RE
from tunnel_core.wire.prmd import rewrite_www_authenticate
from tunnel_core.wire.status import status_text

log = logging.getLogger("tunnel_client.tunnelservice")

# Never queued for the tunnel client: framing and hop-by-hop headers of the front-door hop.
_DROP_INBOUND = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
                           "upgrade", "accept-encoding", "proxy-connection"})
_NOT_ALLOWED = {"Allow": "POST, DELETE"}


def duration_ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")


_SECOND: list[Any] = [None, ""]  # (whole second, its "YYYY-MM-DDTHH:MM:SS" text): one formatting per second


def iso(ts: float) -> str:
    """``ts`` as RFC 3339 UTC with milliseconds (``2026-12-06T10:00:00.123Z``), as ``datetime`` writes it."""
    frac, whole = math.modf(ts)  # microseconds as datetime.fromtimestamp rounds them, then truncated to ms
    rest, second = round(frac * 1e6), int(whole)
    if rest >= 1_000_000:
        rest, second = rest - 1_000_000, second + 1
    elif rest < 0:
        rest, second = rest + 1_000_000, second - 1
    if _SECOND[0] != second:
        _SECOND[1] = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND[0] = second
    return f"{_SECOND[1]}.{rest // 1000:03d}Z"


def inbound_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    """The caller's headers as queued for the tunnel client: framing and hop-by-hop ones dropped."""
    # Headers the caller nominated in Connection are hop-by-hop for this hop too (RFC 9110 7.6.1);
    # Connection itself is dropped below, so the tunnel client could no longer tell them apart.
    nominated = {tok.strip().lower() for k, v in raw if k.lower() == b"connection"
                 for tok in v.decode("latin-1").split(",")}
    out: dict[str, list[str]] = {}
    for k, v in raw:
        name = k.decode("latin-1")
        low = name.lower()
        if low not in _DROP_INBOUND and low not in nominated:
            out.setdefault(name, []).append(v.decode("latin-1"))
    return out


def answer_status(code: int) -> int:
    if code < 200 or code > 599:
        return 502
    return code


def json_bytes(message: Any) -> bytes:
    """A relayed JSON-RPC message as sent to the caller: the bytes the tunnel client sent when they
    were kept (``JSONText``), else compact JSON."""
    text = getattr(message, "text", None)
    if text is not None:
        return str(text).encode("utf-8", "surrogatepass")
    return json.dumps(message, separators=(",", ":")).encode()


def _sse(message: Any) -> bytes:
    data = json_bytes(message)
    if b"\n" in data or b"\r" in data:  # JSON whitespace would end the SSE data line
        data = json.dumps(message, separators=(",", ":")).encode()
    return b"event: message\ndata: " + data + b"\n\n"


@dataclass(frozen=True, slots=True)
class _NoAnswer:
    reason: str  # failure source in the service's log: no_poller | client_timeout
    code: str  # API error code for callers that sent no JSON-RPC request
    detail: str


def _timeout_reply(is_request: bool, rpc_id: Any, why: _NoAnswer) -> Reply:
    if not is_request:
        return error_reply(504, f"Gateway Timeout: {why.detail}.", why.code, "invalid_request_error")
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": {
        "code": -32603, "message": f"{status_text(504)}: {why.detail}",
        "data": {"tunnel_service": {"reason": why.reason, "detail": why.detail}}}}
    return json_reply(body, 504)


@dataclass(slots=True)
class _Outcome:
    """What the service logs about one front-door call, once its status is known."""

    tunnel_id: str
    channel: str
    method: str
    rpc_method: str = ""
    started: float = field(default_factory=time.monotonic)

    def log(self, status: int, *, failure: str = "", body: bytes = b"", payload: Any = None) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        admit, dropped = admit_refusal("front_door", status)
        if not admit:
            return
        if not failure and status >= 400:
            failure = _failure_source(body, payload)
        log.info("front door request", extra={
            "status_code": status, "tunnel_id": self.tunnel_id[:64], "channel": self.channel[:64],
            "http_method": self.method, "rpc_method": self.rpc_method,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
            "failure_source": failure, **dropped})


def _failure_source(body: bytes, payload: Any) -> str:
    """The bounded source of a failed answer: tunnel_failure.source, the service's reason, or the API error code."""
    if payload is None and body:
        try:
            payload = json.loads(body)
        except ValueError:
            return "upstream"
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return "upstream"
    data = err.get("data")
    if isinstance(data, dict):
        for key, field_name in (("tunnel_failure", "source"), ("tunnel_service", "reason")):
            inner = data.get(key)
            if isinstance(inner, dict) and isinstance(inner.get(field_name), str):
                return str(inner[field_name])[:64]
    code = err.get("code")
    return code[:64] if isinstance(code, str) else "upstream"


class FrontDoor:
    """The front-door handler: ``await front_door(scope, receive, send, tunnel_id)``."""

    def __init__(self, broker: Broker, gate: Gate, config: ServiceConfig) -> None:
        self.broker = broker
        self.gate = gate
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send, tunnel_id: str) -> None:
        params = query(scope)
        outcome = _Outcome(tunnel_id, last(params, "channel", "main"), scope["method"])
        try:
            answer = await self._serve(scope, receive, tunnel_id, params, outcome)
        except anyio.get_cancelled_exc_class():
            outcome.log(499, failure="caller_gone")
            raise
        except Exception:
            outcome.log(500, failure="service_error")
            raise
        if isinstance(answer, StreamingResponse):
            await answer(scope, receive, send)  # logged when the stream ends
            return
        if answer is None:  # the caller left while sending its body
            outcome.log(499, failure="caller_gone")
            return
        outcome.log(answer.status, body=answer.body)
        await answer.send(send)

    async def _serve(self, scope: Scope, receive: Receive, tunnel_id: str, params: list[tuple[str, str]],
                     outcome: _Outcome) -> Reply | StreamingResponse | None:
        refused = tunnel_refusal(self.broker, self.gate, scope, tunnel_id, runtime=False)
        if refused is not None:
            return refused
        method = scope["method"]
        if method == "GET":
            return reply(405, b"", _NOT_ALLOWED)
        config = self.config
        window = config.client_last_seen_timeout
        q = self.broker.tunnels.get(tunnel_id)
        if window is not None and q is not None and not q.seen_within(window, time.time()):
            return error_reply(503, f"no tunnel-client has polled tunnel {tunnel_id} in the last "
                               f"{format_seconds(window)} (--client-last-seen-timeout); check that it runs and "
                               "reaches this service", "tunnel_client_not_seen")
        channel = outcome.channel
        if not CHANNEL_RE.match(channel):
            return error_reply(400, "channel: use 1-64 lowercase letters, digits, '_' or '-'.", "invalid_channel")
        headers = inbound_headers(scope["headers"])
        if method == "DELETE":
            if "mcp-session-id" not in {k.lower() for k in headers}:
                return error_reply(400, "DELETE requires the Mcp-Session-Id header.", "missing_mcp_session_id")
            command = {"command_type": "session_termination", "channel": channel,
                       "created_at": iso(time.time()), "response_timeout": duration_ms(config.response_timeout),
                       "headers": headers}
            return await self._finish_plain(scope, receive, tunnel_id, command, is_request=False)
        body = await read_body(receive, config.max_body)
        if body is None:
            return None
        if len(body) > config.max_body:
            return error_reply(413, "Request body too large.", "request_body_too_large")
        try:
            message = parse_json(body, config.max_json_depth)
        except JSONBodyError as exc:
            message = exc
        if not isinstance(message, dict):
            why = f" {message}" if isinstance(message, JSONBodyError) else ""
            return error_reply(400, "The MCP request body must be a JSON object." + why, "invalid_json_payload")
        outcome.rpc_method = str(message.get("method") or "")[:64]
        response_timeout = duration_ms(config.response_timeout)
        if config.test_controls is not None and any(k == "response_timeout" for k, _ in params):
            response_timeout = last(params, "response_timeout", "")
        command = {
            "command_type": "jsonrpc",
            "channel": channel,
            "created_at": iso(time.time()),
            "response_timeout": response_timeout,
            "headers": headers,
            "jsonrpc": message,
        }
        is_request = "method" in message and "id" in message
        if is_request and "text/event-stream" in header(scope, b"accept"):
            return await self._finish_sse(scope, receive, tunnel_id, command, message.get("id"), outcome)
        return await self._finish_plain(scope, receive, tunnel_id, command, is_request=is_request,
                                        rpc_id=message.get("id"))

    def _wait_budget(self, command: dict[str, Any]) -> float:
        """How long the front door waits: the command's own deadline plus a second of slack."""
        timeout = parse_response_timeout(command.get("response_timeout"))
        return (self.config.response_timeout if timeout is None else timeout) + 1.0

    async def _wait(self, scope: Scope, receive: Receive, p: Pending, *, terminal: bool) -> dict[str, Any] | None:
        """The first payload for ``p`` (with ``terminal``: the first terminal one); None when the
        budget ran out or the caller disconnected (the caller's ``forget`` then withdraws the command)."""

        async def first() -> dict[str, Any] | None:
            async for payload in p.inbox:
                if not terminal or payload.get("resp_type") != "jsonrpc_notify":
                    return payload
            return None

        budget = self._wait_budget(p.command)
        watch = scope.get("extensions", {}).get(DISCONNECT_EXTENSION)
        if watch is None:
            _, got = await unless_gone(scope, receive, budget, first)
            return got
        # The server tells us when the caller leaves: closing the inbox then (or when the budget
        # runs out) ends the wait, with no task and no cancel scope per call.
        timer = asyncio.get_running_loop().call_later(budget, p.inbox.close)
        unwatch = watch(p.inbox.close)
        try:
            return await first()
        finally:
            timer.cancel()
            unwatch()

    def _answer_headers(self, scope: Scope, tunnel_id: str, final: dict[str, Any], *,
                        drop_type: bool = False) -> dict[str, str]:
        """The relayed answer's headers, with a ``WWW-Authenticate`` pointed at this service's PRMD route."""
        hdrs = {k: ", ".join(v) for k, v in (final.get("resp_headers") or {}).items()
                if not (drop_type and k.lower() == "content-type")}
        if self.config.rewrite_www_authenticate:
            for k, v in hdrs.items():
                if k.lower() == "www-authenticate":
                    hdrs[k] = rewrite_www_authenticate(v, base_url(scope), tunnel_id)
        return hdrs

    async def _finish_plain(self, scope: Scope, receive: Receive, tunnel_id: str, command: dict[str, Any], *,
                            is_request: bool, rpc_id: Any = None) -> Reply:
        try:
            p = await self.broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return error_reply(exc.status, exc.message, exc.code)
        try:
            final = await self._wait(scope, receive, p, terminal=True)
        finally:
            self.broker.forget(tunnel_id, p.request_id)
        if final is None:
            return _timeout_reply(is_request, rpc_id, self._no_answer(tunnel_id, p))
        status = answer_status(int(final.get("resp_code") or 200))
        hdrs = self._answer_headers(scope, tunnel_id, final)
        body = final.get("resp_json")
        if body is None:
            hdrs.pop("Content-Type", None)
            return reply(status, b"", hdrs)
        hdrs["Content-Type"] = "application/json"
        return reply(status, json_bytes(body), hdrs)

    def _no_answer(self, tunnel_id: str, p: Pending) -> _NoAnswer:
        """Why a caller got no answer: nobody took the command, or the client that took it stayed silent."""
        waited = format_seconds(self._wait_budget(p.command) - 1.0)
        if p.polled:
            return _NoAnswer("client_timeout", "tunnel_client_not_connected",
                             f"the tunnel-client took the request but sent no answer within {waited}; "
                             "check its log and its MCP server")
        q = self.broker.tunnels.get(tunnel_id)
        last_poll = q.last_poll if q is not None else 0.0
        seen = "never polled" if not last_poll else f"last poll {format_seconds(max(0.0, time.time() - last_poll))} ago"
        return _NoAnswer("no_poller", "tunnel_client_not_seen",
                         f"no tunnel-client polled tunnel {tunnel_id} within {waited} ({seen}); "
                         "start `tunnel-client run` for this tunnel, or check its /readyz")

    async def _finish_sse(self, scope: Scope, receive: Receive, tunnel_id: str, command: dict[str, Any],
                          rpc_id: Any, outcome: _Outcome) -> Reply | StreamingResponse:
        broker = self.broker
        try:
            p = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return error_reply(exc.status, exc.message, exc.code)
        # Wait for the first message so the status line and session headers are real.
        budget = self._wait_budget(command)
        try:
            first = await self._wait(scope, receive, p, terminal=False)
        except BaseException:
            broker.forget(tunnel_id, p.request_id)
            raise
        if first is None:
            broker.forget(tunnel_id, p.request_id)
            return _timeout_reply(True, rpc_id, self._no_answer(tunnel_id, p))
        status = answer_status(int(first.get("resp_code") or 200))
        hdrs = self._answer_headers(scope, tunnel_id, first, drop_type=True)
        if first.get("resp_type") != "jsonrpc_notify":
            # Nothing to stream: a single JSON answer is valid for an SSE-capable caller too.
            broker.forget(tunnel_id, p.request_id)
            hdrs["Content-Type"] = "application/json"
            return reply(status, json_bytes(first.get("resp_json") or {}), hdrs)

        async def stream() -> AsyncIterator[bytes]:
            last_payload: dict[str, Any] = {}
            try:
                yield _sse(first.get("resp_json") or {})
                with anyio.move_on_after(budget):
                    async for payload in p.receive:
                        last_payload = payload
                        yield _sse(payload.get("resp_json") or {})
                        if payload.get("resp_type") != "jsonrpc_notify":
                            return
            finally:
                broker.forget(tunnel_id, p.request_id)
                if last_payload.get("resp_type", "jsonrpc_notify") == "jsonrpc_notify":
                    outcome.log(200, failure="stream_ended_without_answer")
                else:
                    outcome.log(answer_status(int(last_payload.get("resp_code") or 200)),
                                payload=last_payload.get("resp_json"))

        return StreamingResponse(stream(), status_code=200 if status < 300 else status, headers=hdrs,
                                 media_type="text/event-stream")
