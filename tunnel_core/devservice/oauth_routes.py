"""The tunnel service's OAuth behaviour (what the hosted service does for tunnelled servers).

- ``GET /.well-known/oauth-protected-resource/v1/mcp/{tunnel_id}``: sends an
  ``oauth_discovery`` command to the tunnel client, which fetches the private server's
  Protected Resource Metadata from inside the network; the answer is returned with
  ``resource`` rewritten to this service's front-door URL for the same tunnel.
- Every front-door answer (``/v1/mcp/{tunnel_id}``) carrying ``WWW-Authenticate`` gets its
  Bearer ``resource_metadata`` rewritten to that well-known URL, so an MCP client that got a
  401 discovers metadata through the tunnel, never at the private address
  (``ServiceConfig.rewrite_www_authenticate``, on by default; ``--oauth-passthrough`` turns it off).
  The front door does it while it builds such an answer (``frontdoor``), using ``base_url``.

The public base URL is the one the caller used (scheme and ``Host`` of the request).
"""

from __future__ import annotations

import datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from tunnel_core.devservice.broker import Broker, DeliveryError
from tunnel_core.wire.models import TUNNEL_ID_RE
from tunnel_core.wire.prmd import PRMD_PREFIX, rewrite_prmd

# Headers of the private server's PRMD answer worth passing on; framing is the service's own.
_PASS_HEADERS = ("cache-control", "etag", "last-modified", "vary")


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": code}}, status_code=status)


def base_url(scope: Scope) -> str:
    """The public base URL the caller used: scheme and ``Host`` of the request."""
    host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def oauth_routes(broker: Broker, *, response_timeout: float) -> list[Route]:
    """The well-known PRMD route, answered by the tunnel client through an ``oauth_discovery`` command."""

    async def protected_resource(request: Request) -> Response:
        tunnel_id = request.path_params["tunnel_id"]
        if not TUNNEL_ID_RE.match(tunnel_id):
            return _error(400, "The tunnel ID is not a tunnel_<32 lowercase alphanumeric> value.",
                          "invalid_tunnel_id_format")
        if tunnel_id not in broker.tunnels:
            return _error(404, f"Tunnel {tunnel_id} not found.", "tunnel_not_found")
        command = {
            "command_type": "oauth_discovery",
            "channel": "main",
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "response_timeout": f"{round(response_timeout * 1000)}ms",
            "headers": {},
        }
        try:
            pending = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return _error(exc.status, exc.message, exc.code)
        final: dict[str, Any] | None = None
        try:
            with anyio.move_on_after(response_timeout + 1.0):
                async for payload in pending.receive:
                    if payload.get("resp_type") != "jsonrpc_notify":
                        final = payload
                        break
        finally:
            broker.forget(tunnel_id, pending.request_id)
        if final is None:
            return _error(504, "The tunnel client did not answer the OAuth discovery request in time.",
                          "tunnel_client_not_connected")
        status = int(final.get("resp_code") or 200)
        if not 200 <= status <= 599:
            status = 502
        body = final.get("resp_json")
        if not isinstance(body, dict):
            return _error(502, "The tunnel client returned no protected resource metadata.",
                          "oauth_discovery_failed")
        if status == 200 and isinstance(body.get("resource"), str):
            body = rewrite_prmd(body, base_url(request.scope), tunnel_id)
        headers = {k: ", ".join(v) for k, v in (final.get("resp_headers") or {}).items()
                   if k.lower() in _PASS_HEADERS and isinstance(v, list)}
        return JSONResponse(body, status_code=status, headers=headers)

    return [Route(PRMD_PREFIX + "/v1/mcp/{tunnel_id}", protected_resource, methods=["GET"])]
