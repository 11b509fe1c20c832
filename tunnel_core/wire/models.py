"""Pydantic models of the tunnel control-plane wire contract (shared/reference/openapi.json).

The shapes the relay itself reads and sends live in :mod:`tunnel_core.wire.messages` (plain
classes, so a plain ``run`` never loads pydantic) and are re-exported here. This module adds
the strict validators the tunnel service applies to what it receives, and the API error shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tunnel_core.wire.messages import (
    CHANNEL_RE,
    EXTENDED_RESP_TYPES,
    KNOWN_COMMAND_TYPES,
    MAIN_CHANNEL,
    TUNNEL_ID_RE,
    CommandDecodeError,
    FailureSource,
    HeaderMap,
    JsonRpcCommand,
    MCPServerInfo,
    OAuthDiscoveryCommand,
    PolledCommand,
    ResponsePayload,
    RespType,
    ServerInfoChannel,
    SessionTerminationCommand,
    TunnelClientMetadata,
    TunnelFailure,
    commands_from_poll_body,
    decode_command,
    header_value,
)

__all__ = [
    "CHANNEL_RE", "EXTENDED_RESP_TYPES", "KNOWN_COMMAND_TYPES", "MAIN_CHANNEL", "TUNNEL_ID_RE", "APIErrorBody",
    "APIErrorResponse", "CommandDecodeError", "FailureSource", "HeaderMap", "JsonRpcCommand", "MCPServerInfo",
    "OAuthDiscoveryCommand", "PolledCommand", "PolledCommandList", "RespType", "ResponsePayload",
    "ServerInfoChannel", "SessionTerminationCommand", "TunnelClientMetadata", "TunnelFailure", "TunnelResponseAck",
    "TunnelResponsePayload", "commands_from_poll_body", "decode_command", "header_value",
]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolledCommandList(_Tolerant):
    commands: list[dict[str, Any]] = Field(default_factory=list)


class TunnelResponsePayload(_Strict):
    """Body of POST /v1/tunnels/{id}/response, validated strictly by the tunnel service.

    The relay builds the same shape with :class:`~tunnel_core.wire.messages.ResponsePayload`.
    """

    request_id: str
    channel: str = MAIN_CHANNEL
    resp_json: dict[str, Any] | None = None
    resp_headers: HeaderMap | None = None
    resp_code: int = 200
    resp_type: RespType | Literal["oauth_discovery_response"] = "jsonrpc_response"

    def wire(self) -> dict[str, Any]:
        """The same JSON object the relay's ResponsePayload sends."""
        return ResponsePayload(**self.model_dump()).wire()

    @property
    def terminal(self) -> bool:
        return self.resp_type != "jsonrpc_notify"


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
