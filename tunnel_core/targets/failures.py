"""Synthesized JSON-RPC failures with ``error.data.tunnel_failure`` provenance.

A target failure never copies the target's raw body, URL or exception text into the
envelope: only a status text and the bounded provenance fields below. The one exception is
``detail``, set only by the stdio target: why its server is not running (exit code and the
last lines of its stderr, bounded and redacted), which the operator's own server wrote.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any

from tunnel_core.httpconn import (
    ConnectError,
    DNSError,
    InvalidURL,
    PayloadError,
    ProtocolError,
    ServerDisconnected,
    TLSError,
)
from tunnel_core.records import record
from tunnel_core.wire.messages import FailureSource, HeaderMap, TunnelFailure
from tunnel_core.wire.status import status_text


@record
class TargetFailure(Exception):
    """A classified failure to get a usable answer from a target."""

    source: FailureSource
    kind: str
    status: int = 502
    upstream_status: int | None = None
    headers: HeaderMap | None = None  # allow-listed upstream headers to relay (target_http only)
    detail: str | None = None  # why, in words (stdio start failures only)

    def envelope(self, rpc_id: Any) -> dict[str, Any]:
        failure = TunnelFailure(
            source=self.source,
            transport_error_kind=self.kind,
            upstream_response_received=self.upstream_status is not None,
            upstream_status=self.upstream_status,
            detail=self.detail,
        )
        return synthesized_error(rpc_id, self.status, failure)


def synthesized_error(rpc_id: Any, status: int, failure: TunnelFailure | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": -32603, "message": status_text(status)}
    if failure is not None:
        error["data"] = {"tunnel_failure": failure.wire()}
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify_exception(exc: BaseException) -> TargetFailure:
    """Map a transport exception to its failure source and kind (a lookup on the cause chain)."""
    if isinstance(exc, DNSError):
        return TargetFailure("dns", "dns")
    if isinstance(exc, TLSError):
        return TargetFailure("tls", "tls")
    if isinstance(exc, TimeoutError):  # connect and read timeouts of the pool included
        return TargetFailure("timeout", "timeout")
    cause = exc.__cause__
    if isinstance(exc, (ServerDisconnected, PayloadError)) and isinstance(cause, OSError) and cause.errno in _ERRNO:
        source, kind = _ERRNO[cause.errno]  # reset or broken pipe rather than a plain close
        return TargetFailure(source, kind)
    if isinstance(exc, ServerDisconnected):
        return TargetFailure("transport_closed", "unexpected_eof")
    if isinstance(exc, PayloadError):
        return TargetFailure("transport_closed", "connection_closed")
    if isinstance(exc, ProtocolError):
        return TargetFailure("protocol", "invalid_protocol_response")
    if isinstance(exc, InvalidURL):
        return TargetFailure("connect", "dial")
    chain = _chain(exc)
    if isinstance(exc, ConnectError) and exc.os_error is not None:
        chain.insert(1, exc.os_error)
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return TargetFailure("tls", "tls")
        if isinstance(e, socket.gaierror):
            return TargetFailure("dns", "dns")
        if isinstance(e, OSError) and e.errno in _ERRNO:
            source, kind = _ERRNO[e.errno]
            return TargetFailure(source, kind)
    if isinstance(exc, ConnectError):
        return TargetFailure("connect", "dial")
    if isinstance(exc, ConnectionError):
        return TargetFailure("transport_closed", "connection_closed")
    return TargetFailure("client_internal", "unknown")


_ERRNO: dict[int, tuple[FailureSource, str]] = {
    errno.ECONNREFUSED: ("connect", "connection_refused"),
    errno.ENETUNREACH: ("connect", "network_unreachable"),
    errno.EHOSTUNREACH: ("connect", "host_unreachable"),
    errno.ECONNRESET: ("transport_closed", "connection_reset"),
    errno.EPIPE: ("transport_closed", "closed_pipe"),
    errno.ECONNABORTED: ("transport_closed", "connection_aborted"),
    errno.ENOENT: ("connect", "dial"),
}
