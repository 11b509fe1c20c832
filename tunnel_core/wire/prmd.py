"""Tunnel-service side of OAuth: point discovery at the tunnel, not at the private server.

A hosted client only knows the tunnel URL ``<base>/v1/mcp/<tunnel_id>``. The service
therefore rewrites, for the same ``tunnel_id``:

- the PRMD ``resource`` to ``<base>/v1/mcp/<tunnel_id>`` (so RFC 8707 resource checks match
  the URL the client called), and
- the ``resource_metadata`` parameter of a relayed 401 ``WWW-Authenticate`` to
  ``<base>/.well-known/oauth-protected-resource/v1/mcp/<tunnel_id>``, which the service
  answers by sending an ``oauth_discovery`` command to the tunnel client.

Everything else (``authorization_servers``, scopes, the authorization server's own
metadata) is passed through unchanged.
"""

from __future__ import annotations

from typing import Any

from tunnel_core.wire.challenge import replace_resource_metadata

PRMD_PREFIX = "/.well-known/oauth-protected-resource"


def front_door_url(base_url: str, tunnel_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1/mcp/{tunnel_id}"


def prmd_url(base_url: str, tunnel_id: str) -> str:
    return f"{base_url.rstrip('/')}{PRMD_PREFIX}/v1/mcp/{tunnel_id}"


def rewrite_prmd(document: dict[str, Any], base_url: str, tunnel_id: str) -> dict[str, Any]:
    """A copy of ``document`` whose ``resource`` is the tunnel's front-door URL."""
    out = dict(document)
    out["resource"] = front_door_url(base_url, tunnel_id)
    return out


def rewrite_www_authenticate(value: str, base_url: str, tunnel_id: str) -> str:
    """``value`` with each Bearer ``resource_metadata`` pointing at the tunnel's PRMD URL."""
    return replace_resource_metadata(value, prmd_url(base_url, tunnel_id))
