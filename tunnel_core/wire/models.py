"""Pydantic models of the tunnel control-plane wire contract (shared/reference/openapi.json).

This module is the only place JSON shapes of the contract live. Polled commands are
tolerant readers (unknown fields kept, unknown ``command_type`` values decoded as
``UnknownCommand`` so the poller can log and skip them); what we send is strict.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

HeaderMap = dict[str, list[str]]

CHANNEL_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
TUNNEL_ID_RE = re.compile(r"^tunnel_[a-z0-9]{32}$")
MAIN_CHANNEL = "main"


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PolledBase(_Tolerant):
    request_id: Annotated[str, Field(min_length=1)]
    shard_token: Annotated[str, Field(min_length=1)]
    channel: str = MAIN_CHANNEL
    created_at: str = ""
    # Kept raw: the grammar is checked by relay.deadlines, which fails open on bad values.
    response_timeout: Any = None
    headers: HeaderMap = Field(default_factory=dict)


class JsonRpcCommand(_PolledBase):
    command_type: Literal["jsonrpc"] = "jsonrpc"
    jsonrpc: dict[str, Any]


class SessionTerminationCommand(_PolledBase):
    command_type: Literal["session_termination"]


class OAuthDiscoveryCommand(_PolledBase):
    """Not in the OpenAPI file: produced by older service paths and the dev proxy."""

    command_type: Literal["oauth_discovery"]


PolledCommand = JsonRpcCommand | SessionTerminationCommand | OAuthDiscoveryCommand

_COMMAND_ADAPTER: TypeAdapter[PolledCommand] = TypeAdapter(
    Annotated[PolledCommand, Field(discriminator="command_type")]
)

KNOWN_COMMAND_TYPES = frozenset({"jsonrpc", "session_termination", "oauth_discovery"})


class CommandDecodeError(ValueError):
    """A polled command that cannot be processed; ``reason`` is a stable metric label."""

    def __init__(self, reason: str, detail: str, request_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.request_id = request_id


def decode_command(raw: Any) -> PolledCommand:
    """Decode one polled command or raise CommandDecodeError (never forwards anything malformed)."""
    if not isinstance(raw, dict):
        raise CommandDecodeError("invalid_command", "command is not a JSON object")
    request_id = raw.get("request_id") if isinstance(raw.get("request_id"), str) else None
    ctype = raw.get("command_type", "jsonrpc")
    if not isinstance(ctype, str) or ctype not in KNOWN_COMMAND_TYPES:
        raise CommandDecodeError("invalid_command_type", f"unknown command_type {ctype!r}", request_id)
    data = dict(raw)
    data["command_type"] = ctype
    channel = data.get("channel")
    channel = (channel if isinstance(channel, str) else "").strip().lower() or MAIN_CHANNEL
    if not CHANNEL_RE.match(channel):
        raise CommandDecodeError("invalid_channel", f"invalid channel {channel!r}", request_id)
    data["channel"] = channel
    try:
        cmd = _COMMAND_ADAPTER.validate_python(data)
    except ValidationError as exc:
        fields = ",".join(".".join(str(p) for p in e["loc"][1:]) or "command" for e in exc.errors())
        raise CommandDecodeError("invalid_command", f"invalid fields: {fields}", request_id) from None
    if isinstance(cmd, JsonRpcCommand) and cmd.jsonrpc.get("jsonrpc") != "2.0":
        raise CommandDecodeError("invalid_jsonrpc", "jsonrpc payload is not JSON-RPC 2.0", request_id)
    if isinstance(cmd, SessionTerminationCommand) and not header_value(cmd.headers, "mcp-session-id"):
        raise CommandDecodeError("missing_session_id", "session_termination without Mcp-Session-Id", request_id)
    return cmd


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
    import json

    data = json.loads(body) if body else {}
    commands = data.get("commands") if isinstance(data, dict) else None
    return commands if isinstance(commands, list) else []


class PolledCommandList(_Tolerant):
    commands: list[dict[str, Any]] = Field(default_factory=list)


RespType = Literal["jsonrpc_response", "jsonrpc_notify", "notify_ack", "session_termination_response"]
EXTENDED_RESP_TYPES = ("oauth_discovery_response",)


class TunnelResponsePayload(_Strict):
    """Body of POST /v1/tunnels/{id}/response. Empty optional parts are omitted on the wire."""

    request_id: str
    channel: str = MAIN_CHANNEL
    resp_json: dict[str, Any] | None = None
    resp_headers: HeaderMap | None = None
    resp_code: int = 200
    resp_type: RespType | Literal["oauth_discovery_response"] = "jsonrpc_response"

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


FailureSource = Literal[
    "target_http", "dns", "tls", "connect", "transport_closed", "timeout", "protocol", "client_internal"
]


class TunnelFailure(_Strict):
    """Provenance of a synthesized -32603 failure, at resp_json.error.data.tunnel_failure."""

    version: int = 1
    source: FailureSource
    transport_error_kind: str | None = None
    upstream_response_received: bool = False
    upstream_status: int | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TunnelClientMetadata(_Tolerant):
    id: str
    name: str = ""
    description: str = ""


class APIErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    message: str = ""
    type: str = ""
    param: str | None = None
    code: str | None = None


class APIErrorResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    error: APIErrorBody


class TunnelResponseAck(BaseModel):
    status: Literal["ok"] = "ok"


class ServerInfoChannel(_Strict):
    name: str
    proc_affinity: bool | None = None


class MCPServerInfo(_Strict):
    """Value of the X-Tunnel-MCP-Server-Info header (version 1)."""

    version: int = 1
    channels: list[ServerInfoChannel]

    def header(self) -> str:
        return self.model_dump_json(exclude_none=True)
