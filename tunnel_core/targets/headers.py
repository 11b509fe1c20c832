"""Header rules between the connector, the relay and the MCP target."""

from __future__ import annotations

from collections.abc import Iterable

from tunnel_core.wire.models import HeaderMap

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
