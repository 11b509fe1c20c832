"""The runtime routes the tunnel client calls on every command: ``GET /v1/tunnels/{id}/poll`` and
``POST /v1/tunnels/{id}/response`` (raw ASGI, see ``answers``), and the tunnel check every
tunnel route starts with (``tunnel_refusal``).

A poll whose client disconnects stops waiting at once, so it takes no command that nobody
would receive and does not hold up the server's shutdown. A response payload is checked
against the wire model before it is routed; payloads in the shape the tunnel client sends
are recognised without building the pydantic model, anything else is left to the model, so
what is accepted and refused is exactly what ``TunnelResponsePayload`` accepts.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from tunnel_core.devservice.answers import (
    Reply,
    error_reply,
    header,
    json_reply,
    query,
    read_body,
    unless_gone,
)
from tunnel_core.devservice.backends.base import poller_from_headers
from tunnel_core.devservice.broker import Broker, DeliveryError
from tunnel_core.devservice.credentials import Gate
from tunnel_core.devservice.jsonbody import JSONText, parse_members
from tunnel_core.logs import LogThrottle
from tunnel_core.wire.models import CHANNEL_RE, TUNNEL_ID_RE, TunnelResponsePayload

log = logging.getLogger("tunnel_client.tunnelservice")
MAX_POLL_CHANNELS = 64  # channel parameters one poll may name
# Refusals are what anonymous or hostile input produces: their log lines are throttled per status
# (see LogThrottle), answers and failures of served calls are always logged.
_REFUSALS = frozenset({400, 401, 403, 404, 405, 408, 413, 415, 429, 431})
_refusal_log = LogThrottle()
_NO_CONTENT = Reply(204, [], b"")
_OK = b'{"status":"ok"}'


def admit_refusal(route: str, status: int) -> tuple[bool, dict[str, Any]]:
    """Whether to log this refusal, and the field that reports lines dropped before it."""
    if status not in _REFUSALS:
        return True, {}
    dropped = _refusal_log.admit(f"{route}:{status}")
    if dropped is None:
        return False, {}
    return True, ({"suppressed_similar": dropped} if dropped else {})


def bearer(scope: Scope) -> str:
    auth = header(scope, b"authorization")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def tunnel_refusal(broker: Broker, gate: Gate, scope: Scope, tunnel_id: str, *, runtime: bool) -> Reply | None:
    """The answer refusing a request for ``tunnel_id`` (malformed id, runtime key missing, invalid or of
    another tunnel, tunnel not served), or None when it may go on. Runtime refusals are logged here;
    front-door ones with the caller's outcome."""
    refused: tuple[int, str, str, str] | None = None
    if not TUNNEL_ID_RE.match(tunnel_id):
        refused = (400, "The tunnel ID is not a tunnel_<32 lowercase alphanumeric> value.",
                   "invalid_tunnel_id_format", "invalid_request_error")
    verdict = gate.runtime(bearer(scope), tunnel_id) if runtime and refused is None else "ok"
    if verdict == "invalid":
        refused = (401, "Missing or invalid runtime API key.", "invalid_api_key", "invalid_request_error")
    elif verdict == "forbidden":
        refused = (403, "This runtime API key is not bound to this tunnel; use the key issued for it.",
                   "tunnel_use_forbidden", "permission_error")
    elif refused is None and tunnel_id not in broker.tunnels:
        refused = (404, f"Tunnel {tunnel_id} not found.", "tunnel_not_found", "invalid_request_error")
    if refused is None:
        return None
    if runtime and log.isEnabledFor(logging.INFO):
        admit, dropped = admit_refusal("runtime", refused[0])
        if admit:
            log.info("runtime request refused", extra={
                "status_code": refused[0], "error_code": refused[2], "tunnel_id": tunnel_id[:64],
                "http_method": scope["method"], "path": scope["path"][:200], **dropped})
    return error_reply(refused[0], refused[1], refused[2], typ=refused[3])


_PAYLOAD_FIELDS = frozenset({"request_id", "channel", "resp_json", "resp_headers", "resp_code", "resp_type"})
_RESP_TYPES = frozenset({"jsonrpc_response", "jsonrpc_notify", "notify_ack", "session_termination_response",
                         "oauth_discovery_response"})


def plainly_valid(raw: Any) -> bool:
    """True when ``raw`` is a response payload in the exact types the tunnel client sends; every such
    payload is one ``TunnelResponsePayload`` accepts. False means: let the model decide."""
    if type(raw) is not dict or not _PAYLOAD_FIELDS.issuperset(raw) or type(raw.get("request_id")) is not str:
        return False
    channel = raw.get("channel", "")
    if type(channel) is not str:
        return False
    body = raw.get("resp_json")
    if body is not None and type(body) is not dict:
        return False
    code = raw.get("resp_code", 200)
    if type(code) is not int or raw.get("resp_type", "jsonrpc_response") not in _RESP_TYPES:
        return False
    headers = raw.get("resp_headers")
    if headers is None:
        return True
    if type(headers) is not dict:
        return False
    for values in headers.values():
        if type(values) is not list:
            return False
        for v in values:
            if type(v) is not str:
                return False
    return True


def valid_payload(raw: Any) -> bool:
    """Does ``TunnelResponsePayload`` accept ``raw``?"""
    if plainly_valid(raw):
        return True
    try:
        TunnelResponsePayload.model_validate(raw)
    except ValidationError:
        return False
    return True


class RuntimeRoutes:
    """``poll`` and ``response``, raw ASGI handlers called with the tunnel id from the path."""

    def __init__(self, broker: Broker, gate: Gate, *, max_poll_timeout: float, max_body: int) -> None:
        self.broker = broker
        self.gate = gate
        self.max_poll_timeout = max_poll_timeout
        self.max_body = max_body

    async def poll(self, scope: Scope, receive: Receive, send: Send, tunnel_id: str) -> None:
        answer = tunnel_refusal(self.broker, self.gate, scope, tunnel_id, runtime=True)
        if answer is None:
            answer = await self._poll(scope, receive, tunnel_id)
        await answer.send(send)

    async def _poll(self, scope: Scope, receive: Receive, tunnel_id: str) -> Reply:
        params = query(scope)
        limit_s, timeout_s, names = "1", "30000", []
        for k, v in params:
            if k == "limit":
                limit_s = v
            elif k == "timeout_ms":
                timeout_s = v
            elif k == "channel":
                names.append(v)
        try:
            limit = int(limit_s)
            timeout_ms = int(timeout_s)
        except ValueError:
            return error_reply(400, "limit and timeout_ms must be integers.", None)
        if not 1 <= limit <= 25:
            return error_reply(400, "limit must be between 1 and 25.", None)
        channels = set(names) or None
        if channels is not None and (len(channels) > MAX_POLL_CHANNELS
                                     or not all(CHANNEL_RE.match(c) for c in channels)):
            return error_reply(400, f"channel: give at most {MAX_POLL_CHANNELS} channel names of 1-64 lowercase "
                               "letters, digits, '_' or '-'.", "invalid_channel")
        timeout = min(max(timeout_ms, 0) / 1000, self.max_poll_timeout)
        key = bearer(scope)
        gate = self.gate
        poller = poller_from_headers(header(scope, b"x-tunnel-client-instance-id") or None,
                                     header(scope, b"x-tunnel-mcp-server-info") or None)

        async def take() -> list[dict[str, Any]]:
            return await self.broker.poll(tunnel_id, limit, timeout, channels, poller=poller,
                                          allowed=lambda: gate.runtime(key, tunnel_id) == "ok")

        try:
            # A poller whose client has gone stops waiting: it would take commands that nobody receives.
            _, commands = await unless_gone(scope, receive, math.inf, take)
        except DeliveryError as exc:  # the queue backend is unavailable
            return error_reply(exc.status, exc.message, exc.code, headers={"Retry-After": "1"})
        if not commands:
            return _NO_CONTENT
        return json_reply({"commands": commands})

    async def response(self, scope: Scope, receive: Receive, send: Send, tunnel_id: str) -> None:
        answer = tunnel_refusal(self.broker, self.gate, scope, tunnel_id, runtime=True)
        if answer is None:
            answer = await self._response(scope, receive, tunnel_id)
            if answer is None:
                return  # the client left while sending its body
        await answer.send(send)

    async def _response(self, scope: Scope, receive: Receive, tunnel_id: str) -> Reply | None:
        shard = header(scope, b"x-tunnel-shard-token")
        if not shard:
            return error_reply(400, "X-Tunnel-Shard-Token header is required.", None)
        body = await read_body(receive, self.max_body)
        if body is None:
            return None
        if len(body) > self.max_body:
            return error_reply(413, "Response body too large.", "request_body_too_large")
        try:
            # The client is authenticated: only the parser's own nesting limit applies.
            raw, answer_text = parse_members(body, "resp_json")
        except (ValueError, RecursionError):
            raw = answer_text = None
        if raw is None or not valid_payload(raw):
            return error_reply(400, "The response payload is not a valid TunnelResponsePayload.",
                               "invalid_json_payload")
        if answer_text is not None and type(raw.get("resp_json")) is dict:
            # The answer keeps the bytes the client sent (the MCP server's own, when the client
            # spliced them in): the front door passes them on instead of encoding them again.
            raw["resp_json"] = JSONText(raw["resp_json"], answer_text)
        try:
            await self.broker.respond(tunnel_id, shard, raw)
        except DeliveryError as exc:
            return error_reply(exc.status, exc.message, exc.code)
        # The waiting caller's answer goes out first: one turn of the loop lets its front door write
        # it before this 200 to the tunnel client, which nobody is waiting for as urgently.
        await asyncio.sleep(0)
        return Reply(200, [(b"content-length", b"15"), (b"content-type", b"application/json")], _OK)
