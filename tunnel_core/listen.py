"""Listening addresses: where an empty host binds, and whether a bound address is loopback-only.

``HOST:PORT`` with an empty host means "all interfaces" for the operator listener, as in the
reference (Go's ``:8080``): it binds the IPv6 wildcard in dual-stack mode, so IPv4 clients
reach it too, or the IPv4 wildcard where IPv6 is unavailable. Stdlib only: ``doctor`` uses
it without loading the server stack.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

ALL_INTERFACES = ""
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def bind_host(host: str) -> str:
    """The address to bind for ``host`` ("" = every interface)."""
    if host != ALL_INTERFACES:
        return host
    return "::" if socket.has_ipv6 and _ipv6_usable() else "0.0.0.0"


def _ipv6_usable() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
    except OSError:
        return False
    return True


def dual_stack(sock: socket.socket, host: str) -> None:
    """Let an IPv6 wildcard socket accept IPv4 clients too (before bind)."""
    if sock.family == socket.AF_INET6 and host == "::" and hasattr(socket, "IPV6_V6ONLY"):
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        except OSError:
            pass


def is_loopback_bind(host: str) -> bool:
    """True when a socket bound to ``host`` is reachable from this machine only."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def display_host(host: str) -> str:
    """The host to put in a URL for a socket bound to ``host`` (a wildcard is reached on loopback)."""
    return "127.0.0.1" if host in WILDCARDS else host


def connection_addresses(transport: Any) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
    """The peer's address and ours for an accepted connection, as an ASGI scope's ``client`` and
    ``server``; None for each on a Unix socket (it has no address, as uvicorn reports it)."""
    peer = transport.get_extra_info("peername")
    sock = transport.get_extra_info("sockname")
    return ((str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None,
            (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None)
