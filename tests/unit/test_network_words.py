"""Network failures described in words: what was tried (the URL, without query or credentials) and what happened."""

from __future__ import annotations

import errno
import socket
import ssl

import anyio
import pytest

from tunnel_core.httpconn import (
    ConnectError,
    ConnectTimeout,
    DNSError,
    PayloadError,
    ReadTimeout,
    ServerDisconnected,
    TLSError,
)
from tunnel_core.httpio import HTTPPool, describe_network_error, display_url

URL = "https://user:pw@cp.example:8443/v1/tunnels/tunnel_x/poll?limit=25&timeout_ms=30000"
WHERE = "https://cp.example:8443/v1/tunnels/tunnel_x/poll"


def test_a_real_refusal_through_the_relays_pool_reads_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: refused
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1/tunnels/t/poll?limit=1"

        async def attempt() -> BaseException:
            pool = HTTPPool()
            try:
                await pool.request("GET", url, headers=[])
            except Exception as exc:
                return exc
            finally:
                await pool.aclose()
            raise AssertionError("the connection was not refused")

        exc = anyio.run(attempt)
    assert describe_network_error(exc, url) == f"cannot connect to {url.split('?')[0]}: connection refused"


def test_display_url_drops_query_and_userinfo() -> None:
    assert display_url(URL) == WHERE


def _verify_error() -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    err.verify_message = "self-signed certificate"
    return err


@pytest.mark.parametrize(("exc", "words"), [
    (ConnectError("x", ConnectionRefusedError(errno.ECONNREFUSED, "refused")), f"cannot connect to {WHERE}: connection refused"),
    (ConnectError("x", OSError(errno.EHOSTUNREACH, "No route to host")), f"cannot connect to {WHERE}: host unreachable"),
    (ConnectError("x", OSError("Multiple exceptions: [Errno 111] Connect call failed, [Errno 99] Cannot assign")),
     f"cannot connect to {WHERE}: connection refused"),
    (ConnectError("the proxy refused CONNECT cp.example:8443: HTTP 407"),
     f"cannot connect to {WHERE}: the proxy refused CONNECT cp.example:8443: HTTP 407"),
    (DNSError("x", socket.gaierror(-2, "Name or service not known")),
     f"cannot resolve the host of {WHERE}: name or service not known"),
    (TLSError("x", _verify_error()), f"TLS certificate of {WHERE} not accepted: self-signed certificate"),
    (ConnectTimeout("x"), f"cannot connect to {WHERE}: timed out"),
    (ReadTimeout("x"), f"no answer from {WHERE} within 35s"),
    (ServerDisconnected("x"), f"{WHERE} closed the connection before answering"),
    (PayloadError("x"), f"the answer from {WHERE} was cut off"),
    (ValueError("Expecting value"), f"{WHERE} answered with a body that is not the expected JSON"),
])
def test_failures_in_words(exc: BaseException, words: str) -> None:
    assert describe_network_error(exc, URL, timeout=35) == words
    assert "Error" not in words and "pw" not in words
