"""Header rules between the connector, the relay and the MCP target."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from urllib.parse import urlsplit

from tunnel_core.httpio import origin_of
from tunnel_core.records import record
from tunnel_core.wire.messages import HeaderMap

# Never forwarded from the connector to the target: hop-by-hop headers, framing the relay
# owns, client-IP claims, and the tunnel service's own internal auth and routing headers.
BLOCKED_REQUEST_HEADERS = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding",
        "cookie", "expect",
        "forwarded", "via", "x-real-ip", "true-client-ip", "cf-connecting-ip", "x-client-ip",
        "x-cluster-client-ip", "fastly-client-ip", "x-original-forwarded-for",
        "x-tunnel-shard-token", "x-openai-authorization", "openai-organization", "openai-project",
    }
)
BLOCKED_REQUEST_PREFIXES = ("x-forwarded-", "x-openai-internal", "x-tunnel-")

# Only these target response headers go back to the connector.
RESPONSE_HEADER_ALLOWLIST = {
    "access-control-expose-headers": "Access-Control-Expose-Headers",
    "content-type": "Content-Type",
    "last-event-id": "Last-Event-Id",
    "mcp-protocol-version": "Mcp-Protocol-Version",
    "mcp-session-id": "Mcp-Session-Id",
    "www-authenticate": "Www-Authenticate",
}


def request_headers(connector: HeaderMap, *, allow_authorization: bool = True) -> list[tuple[str, str]]:
    """Connector headers safe to send to the target, values kept in order."""
    nominated = {
        tok.strip().lower()
        for key, values in connector.items()
        if key.lower() == "connection"
        for v in values
        for tok in v.split(",")
    }
    out: list[tuple[str, str]] = []
    for key, values in connector.items():
        lk = key.lower()
        if lk in BLOCKED_REQUEST_HEADERS or lk in nominated or lk.startswith(BLOCKED_REQUEST_PREFIXES):
            continue
        if lk == "authorization" and not allow_authorization:
            continue
        out.extend((key, v) for v in values)
    return out


def response_headers(items: Iterable[tuple[str, str]]) -> HeaderMap:
    """Filter target response headers to the protocol allowlist, dropping empties and Connection-nominated names."""
    pairs = list(items)
    nominated = {
        tok.strip().lower() for k, v in pairs if k.lower() == "connection" for tok in v.split(",")
    }
    out: HeaderMap = {}
    for key, value in pairs:
        lk = key.lower()
        canon = RESPONSE_HEADER_ALLOWLIST.get(lk)
        if canon is None or lk in nominated or not value.strip():
            continue
        out.setdefault(canon, []).append(value)
    return out


@record(frozen=True, slots=True)
class StaticHeaders:
    """Operator headers scoped to one MCP server (``--mcp.extra-headers``, ``--mcp.discovery-extra-headers``).

    ``extra`` goes to the exact MCP URL path on the MCP origin, and to discovery/probe
    requests on that origin; ``discovery`` only to OAuth discovery and startup-probe requests
    on the MCP origin. Nothing goes to any other origin (an authorization server elsewhere
    never sees them). Connector headers are applied after these and win.
    """

    mcp_url: str
    extra: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    discovery: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    origin: str = field(init=False, default="")
    path: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", origin_of(self.mcp_url))
        object.__setattr__(self, "path", _path_of(self.mcp_url))

    def __bool__(self) -> bool:
        return bool(self.extra or self.discovery)

    def for_discovery(self, url: str) -> list[tuple[str, str]]:
        """Headers for a discovery or probe request to ``url``."""
        if origin_of(url) != self.origin:
            return []
        names = {k.lower() for k, _ in self.discovery}
        return [*((k, v) for k, v in self.extra if k.lower() not in names), *self.discovery]

    def for_request(self, url: str) -> list[tuple[str, str]]:
        """Headers for an ordinary (non-discovery) request to ``url``: ``extra`` on the exact MCP URL only."""
        if origin_of(url) != self.origin or _path_of(url) != self.path:
            return []
        return list(self.extra)


def _path_of(url: str) -> str:
    return urlsplit(url).path.rstrip("/") or "/"


def with_static(static: Iterable[tuple[str, str]], headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``static`` headers whose names ``headers`` does not already carry, then ``headers`` (which win)."""
    present = {k.lower() for k, _ in headers}
    return [(k, v) for k, v in static if k.lower() not in present] + headers
