"""The wire messages the relay reads and sends, as plain slotted classes (no pydantic).

Polled commands are tolerant readers: unknown fields are kept in ``extra`` and an unknown
``command_type`` is refused with a stable reason so the poller can log and skip it. What
the relay sends (:class:`ResponsePayload`, the ``X-Tunnel-MCP-Server-Info`` value) is built
here and checked against ``shared/reference/openapi.json`` by the tests; the tunnel service
validates what it receives with the strict pydantic models of ``wire/models.py``.

The classes are slotted records (``tunnel_core.records``: dataclasses whose ``__repr__`` and
``__eq__`` are not compiled at import) that are not frozen (treat them as read-only): a frozen
dataclass costs twice as much to define at import (generated ``__setattr__``, ``__delattr__``
and ``__hash__``) and sets each field through ``object.__setattr__`` when built, once per
command. Why not pydantic here: a plain ``run`` would load it only for these few shapes, and it costs
about 14 MB of resident memory and a third of the start time; decoding a command by hand is
also several times cheaper (see docs/performance.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import field
from typing import Any, Literal

from tunnel_core.records import record

HeaderMap = dict[str, list[str]]

CHANNEL_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
TUNNEL_ID_RE = re.compile(r"^tunnel_[a-z0-9]{32}$")
MAIN_CHANNEL = "main"

RespType = Literal["jsonrpc_response", "jsonrpc_notify", "notify_ack", "session_termination_response"]
EXTENDED_RESP_TYPES = ("oauth_discovery_response",)
FailureSource = Literal[
    "target_http", "dns", "tls", "connect", "transport_closed", "timeout", "protocol", "client_internal"
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------------------------- polled commands


@record(slots=True, kw_only=True)
class _Polled:
    request_id: str
    shard_token: str
    channel: str = MAIN_CHANNEL
    created_at: str = ""
    # Kept raw: the grammar is checked by config.durations, which fails open on bad values.
    response_timeout: Any = None
    headers: HeaderMap = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not know, kept


@record(slots=True, kw_only=True)
class JsonRpcCommand(_Polled):
    command_type: Literal["jsonrpc"] = "jsonrpc"
    jsonrpc: dict[str, Any]


@record(slots=True, kw_only=True)
class SessionTerminationCommand(_Polled):
    command_type: Literal["session_termination"] = "session_termination"


@record(slots=True, kw_only=True)
class OAuthDiscoveryCommand(_Polled):
    """Not in the OpenAPI file: produced by older service paths and the dev proxy."""

    command_type: Literal["oauth_discovery"] = "oauth_discovery"


PolledCommand = JsonRpcCommand | SessionTerminationCommand | OAuthDiscoveryCommand

_CLASSES: dict[str, type[PolledCommand]] = {
    "jsonrpc": JsonRpcCommand, "session_termination": SessionTerminationCommand,
    "oauth_discovery": OAuthDiscoveryCommand,
}
KNOWN_COMMAND_TYPES = frozenset(_CLASSES)
_KNOWN_FIELDS = frozenset({"request_id", "shard_token", "channel", "created_at", "response_timeout", "headers",
                           "command_type", "jsonrpc"})


class CommandDecodeError(ValueError):
    """A polled command that cannot be processed; ``reason`` is a stable metric label."""

    def __init__(self, reason: str, detail: str, request_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.request_id = request_id


def _is_headers(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(vs, list) and all(isinstance(v, str) for v in vs)
        for k, vs in value.items()
    )


def decode_command(raw: Any) -> PolledCommand:
    """Decode one polled command or raise CommandDecodeError (never forwards anything malformed)."""
    if not isinstance(raw, dict):
        raise CommandDecodeError("invalid_command", "command is not a JSON object")
    request_id = raw.get("request_id")
    rid = request_id if isinstance(request_id, str) else None
    ctype = raw.get("command_type", "jsonrpc")
    cls = _CLASSES.get(ctype) if isinstance(ctype, str) else None
    if cls is None:
        raise CommandDecodeError("invalid_command_type", f"unknown command_type {ctype!r}", rid)
    channel = raw.get("channel")
    channel = (channel if isinstance(channel, str) else "").strip().lower() or MAIN_CHANNEL
    if not CHANNEL_RE.match(channel):
        raise CommandDecodeError("invalid_channel", f"invalid channel {channel!r}", rid)
    shard_token, created_at = raw.get("shard_token"), raw.get("created_at", "")
    headers = raw.get("headers", {})
    bad = [name for name, ok in (
        ("request_id", isinstance(request_id, str) and request_id != ""),
        ("shard_token", isinstance(shard_token, str) and shard_token != ""),
        ("created_at", isinstance(created_at, str)),
        ("headers", _is_headers(headers)),
        ("jsonrpc", cls is not JsonRpcCommand or isinstance(raw.get("jsonrpc"), dict)),
    ) if not ok]
    if bad:
        raise CommandDecodeError("invalid_command", f"invalid fields: {','.join(bad)}", rid)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN_FIELDS}
    common: dict[str, Any] = {
        "request_id": request_id, "shard_token": shard_token, "channel": channel, "created_at": created_at,
        "response_timeout": raw.get("response_timeout"), "headers": headers, "extra": extra,
    }
    if cls is JsonRpcCommand:
        jsonrpc = raw["jsonrpc"]
        if jsonrpc.get("jsonrpc") != "2.0":
            raise CommandDecodeError("invalid_jsonrpc", "jsonrpc payload is not JSON-RPC 2.0", rid)
        return JsonRpcCommand(jsonrpc=jsonrpc, **common)
    if cls is SessionTerminationCommand:
        if not header_value(headers, "mcp-session-id"):
            raise CommandDecodeError("missing_session_id", "session_termination without Mcp-Session-Id", rid)
        return SessionTerminationCommand(**common)
    return OAuthDiscoveryCommand(**common)


def header_value(headers: HeaderMap, name: str) -> str | None:
    """First value of a header, matched case-insensitively."""
    lname = name.lower()
    for key, values in headers.items():
        if key.lower() == lname and values:
            return values[0]
    return None


def commands_from_poll_body(body: bytes) -> list[Any]:
    """The raw command objects of a 200 poll body; ValueError when the body is not JSON at all.

    A JSON body of the wrong shape yields no commands rather than an error: each command is
    validated on its own by ``decode_command`` so one bad entry never hides the others.
    """
    data = json.loads(body) if body else {}
    commands = data.get("commands") if isinstance(data, dict) else None
    return commands if isinstance(commands, list) else []


# ------------------------------------------------------------------------------- what the relay sends


@record(slots=True, kw_only=True)
class ResponsePayload:
    """Body of POST /v1/tunnels/{id}/response as the relay builds it. Empty optional parts are omitted."""

    request_id: str
    channel: str = MAIN_CHANNEL
    resp_json: dict[str, Any] | None = None
    resp_headers: HeaderMap | None = None
    resp_code: int = 200
    resp_type: RespType | Literal["oauth_discovery_response"] = "jsonrpc_response"
    resp_raw: bytes | None = None  # resp_json's own JSON text, when the relay has it: spliced in as is

    def encode(self) -> bytes:
        """The POST body. ``resp_raw`` goes in byte for byte (last): the payload is forwarded, not re-encoded."""
        wire = self.wire()
        if self.resp_raw is None or "resp_json" not in wire:
            return _dumps(wire)
        del wire["resp_json"]
        return b"".join((_dumps(wire)[:-1], b',"resp_json":', self.resp_raw, b"}"))

    def wire(self) -> dict[str, Any]:
        """The JSON object sent to the control plane (empty parts omitted, as the reference does)."""
        out: dict[str, Any] = {"request_id": self.request_id, "channel": self.channel}
        if self.resp_json:
            out["resp_json"] = self.resp_json
        if self.resp_headers:
            out["resp_headers"] = self.resp_headers
        if self.resp_code:
            out["resp_code"] = self.resp_code
        out["resp_type"] = self.resp_type
        return out

    @property
    def terminal(self) -> bool:
        return self.resp_type != "jsonrpc_notify"


@record(slots=True, kw_only=True)
class TunnelFailure:
    """Provenance of a synthesized -32603 failure, at resp_json.error.data.tunnel_failure."""

    version: int = 1
    source: FailureSource
    transport_error_kind: str | None = None
    upstream_response_received: bool = False
    upstream_status: int | None = None
    # Why, in words, when the client knows (a stdio server that cannot start: its exit code and last
    # stderr lines). An extension member: the schema allows additional properties.
    detail: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": self.version, "source": self.source}
        if self.transport_error_kind is not None:
            out["transport_error_kind"] = self.transport_error_kind
        out["upstream_response_received"] = self.upstream_response_received
        if self.upstream_status is not None:
            out["upstream_status"] = self.upstream_status
        if self.detail:
            out["detail"] = self.detail
        return out


@record(slots=True)
class ServerInfoChannel:
    name: str
    proc_affinity: bool | None = None


@record(slots=True)
class MCPServerInfo:
    """Value of the X-Tunnel-MCP-Server-Info header (version 1)."""

    channels: list[ServerInfoChannel]
    version: int = 1

    def header(self) -> str:
        channels = [{"name": c.name} if c.proc_affinity is None else {"name": c.name, "proc_affinity": c.proc_affinity}
                    for c in self.channels]
        return json.dumps({"version": self.version, "channels": channels}, separators=(",", ":"))


@record(slots=True)
class TunnelClientMetadata:
    """GET /v1/tunnels/{id}: id, name, description, and whatever else the service adds (kept)."""

    id: str
    name: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: bytes | str) -> TunnelClientMetadata:
        """Decode the metadata answer; ValueError when it is not an object with string id/name/description."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("tunnel metadata is not a JSON object")
        known = {"id": data.get("id"), "name": data.get("name", ""), "description": data.get("description", "")}
        bad = [k for k, v in known.items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"tunnel metadata: invalid fields: {','.join(bad)}")
        return cls(known["id"], known["name"], known["description"],
                   {k: v for k, v in data.items() if k not in known})

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, **self.extra}
