"""Loaded by bench/critical_path.py into the relay and the tunnel service (via PYTHONPATH) only.

Records a monotonic timestamp and the first bytes of every read and write of the relay's HTTP
connections and of the tunnel service's, and writes them out at exit. Not part of the product:
it adds a few microseconds per read and write and imports the service's HTTP protocol at start.
"""

from __future__ import annotations

import atexit
import os
import time

_OUT = os.environ.get("CRITICAL_PATH_TRACE", "")
_events: list[tuple[int, str, bytes]] = []


def _record(tag: str, data: bytes) -> None:
    _events.append((time.monotonic_ns(), tag, bytes(data[:24])))


def _dump() -> None:
    with open(f"{_OUT}.{os.getpid()}", "w", encoding="utf-8") as f:
        for t, tag, data in _events:
            f.write(f"{t} {tag} {data.hex()}\n")


class _Recorded:
    """The service's transport, recording each write."""

    def __init__(self, transport: object) -> None:
        self._t = transport

    def write(self, data: bytes) -> None:
        _record("service-out", data)
        self._t.write(data)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._t, name)


def _install() -> None:
    from tunnel_core import httpconn, svcserver

    conn_read, conn_start = httpconn.Connection.data_received, httpconn.Connection.start
    service_made, service_read = svcserver._Connection.connection_made, svcserver._Connection.data_received

    def relay_in(self, data):  # type: ignore[no-untyped-def]
        _record("relay-in", data)
        return conn_read(self, data)

    def relay_out(self, data, **kw):  # type: ignore[no-untyped-def]
        _record("relay-out", data[0])
        return conn_start(self, data, **kw)

    def service_connected(self, transport):  # type: ignore[no-untyped-def]
        return service_made(self, _Recorded(transport))

    def service_in(self, data):  # type: ignore[no-untyped-def]
        _record("service-in", data)
        return service_read(self, data)

    httpconn.Connection.data_received = relay_in  # type: ignore[method-assign]
    httpconn.Connection.start = relay_out  # type: ignore[method-assign]
    svcserver._Connection.connection_made = service_connected  # type: ignore[method-assign]
    svcserver._Connection.data_received = service_in  # type: ignore[method-assign]
    atexit.register(_dump)


if _OUT:
    _install()
