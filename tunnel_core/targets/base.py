"""The Target interface: what the dispatcher needs from an MCP binding."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import field
from typing import Any, Literal, Protocol

from tunnel_core.records import record
from tunnel_core.wire.messages import HeaderMap, JsonRpcCommand, SessionTerminationCommand

ReplyType = Literal[
    "jsonrpc_response", "jsonrpc_notify", "notify_ack", "session_termination_response", "oauth_discovery_response"
]


@record(frozen=True, slots=True)
class Reply:
    """One message back to the control plane: a notification or the terminal answer."""

    resp_type: ReplyType
    code: int
    body: dict[str, Any] | None = None
    headers: HeaderMap = field(default_factory=dict)
    raw: bytes | None = None  # ``body`` as the MCP server wrote it (UTF-8 JSON): posted as is, not re-encoded


# Posts one intermediate notification; returns False once delivery has failed, after
# which the target stops emitting but still produces its terminal reply.
Emit = Callable[[Reply], Awaitable[bool]]

ProbeStatus = Literal["pending", "ok", "auth-required", "timeout", "failed"]


@record(frozen=True, slots=True)
class ProbeResult:
    status: ProbeStatus
    error: str = ""
    lasting: bool = False  # failed in a way that retrying alone will not fix (missing program, crash loop)


class Target(Protocol):
    channel: str
    kind: str  # "http" | "stdio" | "builtin"
    proc_affinity: bool

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        """Forward one JSON-RPC message and return its terminal reply (never raises for target faults)."""
        ...

    async def terminate_session(self, cmd: SessionTerminationCommand) -> Reply: ...

    async def probe(self) -> ProbeResult: ...

    async def aclose(self) -> None: ...
