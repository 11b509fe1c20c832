"""Failure classification: transport exceptions -> tunnel_failure source and kind, and the envelope.

The table uses library-neutral exceptions (errno-bearing OSErrors, ssl and DNS errors, found
anywhere on the cause chain). How the HTTP stack's own exceptions map is proven end to end in
tests/integration/test_target_failures.py, against real misbehaving sockets.
"""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

from tunnel_core.targets.failures import TargetFailure, classify_exception, synthesized_error
from tunnel_core.wire.models import TunnelFailure
from tunnel_core.wire.status import status_text


class WrappedError(Exception):
    """Stands for an HTTP library's own exception type wrapping the OS-level cause."""


def caused(cause: BaseException, *, implicit: bool = False) -> BaseException:
    outer = WrappedError("request failed")
    if implicit:
        outer.__context__ = cause
    else:
        outer.__cause__ = cause
    return outer


ERRNO_CASES = [
    (errno.ECONNREFUSED, "connect", "connection_refused"),
    (errno.ENETUNREACH, "connect", "network_unreachable"),
    (errno.EHOSTUNREACH, "connect", "host_unreachable"),
    (errno.ENOENT, "connect", "dial"),
    (errno.ECONNRESET, "transport_closed", "connection_reset"),
    (errno.EPIPE, "transport_closed", "closed_pipe"),
    (errno.ECONNABORTED, "transport_closed", "connection_aborted"),
]


@pytest.mark.parametrize(("code", "source", "kind"), ERRNO_CASES, ids=[errno.errorcode[c[0]] for c in ERRNO_CASES])
@pytest.mark.parametrize("shape", ["bare", "explicit-cause", "implicit-context"])
def test_os_error_is_classified_by_errno_anywhere_on_the_cause_chain(
    code: int, source: str, kind: str, shape: str
) -> None:
    os_error = OSError(code, "x")
    exc = os_error if shape == "bare" else caused(os_error, implicit=shape == "implicit-context")
    failure = classify_exception(exc)
    assert (failure.source, failure.kind, failure.status, failure.upstream_status) == (source, kind, 502, None)


@pytest.mark.parametrize(
    ("exc", "source", "kind"),
    [
        pytest.param(caused(ssl.SSLCertVerificationError("certificate verify failed")), "tls", "tls", id="cert"),
        pytest.param(caused(ssl.SSLError("wrong version number")), "tls", "tls", id="handshake"),
        pytest.param(caused(socket.gaierror(socket.EAI_NONAME, "Name or service not known")), "dns", "dns",
                     id="gaierror"),
        pytest.param(TimeoutError(), "timeout", "timeout", id="timeout"),
        pytest.param(caused(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), "connect", "connection_refused",
                     id="refused-subclass"),
        pytest.param(RuntimeError("surprise"), "client_internal", "unknown", id="anything-else"),
        pytest.param(caused(ValueError("odd")), "client_internal", "unknown", id="unknown-cause"),
    ],
)
def test_exception_is_classified_by_source_and_kind(exc: BaseException, source: str, kind: str) -> None:
    failure = classify_exception(exc)
    assert (failure.source, failure.kind) == (source, kind)


def test_classification_survives_a_cyclic_cause_chain() -> None:
    a, b = WrappedError("a"), WrappedError("b")
    a.__cause__, b.__cause__ = b, a
    assert classify_exception(a).source == "client_internal"


def test_connect_failure_envelope_has_provenance_and_no_upstream_status() -> None:
    env = TargetFailure("connect", "connection_refused").envelope("rpc-7")
    assert env == {
        "jsonrpc": "2.0",
        "id": "rpc-7",
        "error": {
            "code": -32603,
            "message": "Bad Gateway",
            "data": {"tunnel_failure": {"version": 1, "source": "connect", "transport_error_kind": "connection_refused",
                                        "upstream_response_received": False}},
        },
    }


def test_target_http_failure_envelope_carries_the_upstream_status() -> None:
    env = TargetFailure("target_http", "malformed_json", 503, 503).envelope(9)
    assert env["id"] == 9
    assert env["error"]["message"] == "Service Unavailable"
    assert env["error"]["data"]["tunnel_failure"] == {
        "version": 1, "source": "target_http", "transport_error_kind": "malformed_json",
        "upstream_response_received": True, "upstream_status": 503,
    }


def test_envelope_without_failure_has_no_data() -> None:
    assert synthesized_error(None, 504, None) == {
        "jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "Gateway Timeout"}}


@pytest.mark.parametrize(("code", "text"), [(502, "Bad Gateway"), (404, "Not Found"), (503, "Service Unavailable"),
                                            (599, "Bad Gateway"), (799, "Bad Gateway")])
def test_status_text_uses_the_http_phrase_or_bad_gateway(code: int, text: str) -> None:
    assert status_text(code) == text


def test_failure_wire_omits_absent_optional_fields() -> None:
    assert TunnelFailure(source="timeout").wire() == {
        "version": 1, "source": "timeout", "upstream_response_received": False}
