"""OAuth discovery as a relay component: the startup run and ``oauth_discovery`` commands.

Both run the same :class:`~tunnel_core.oauth.discovery.Discoverer` against the main MCP
URL, record the result in :class:`~tunnel_core.oauth.state.DiscoveryState` and publish the
discovered URLs (``publish``, Harpoon auto-registration). A command is answered with
``oauth_discovery_response`` carrying the raw PRMD body, its status and its headers; the
tunnel service rewrites ``resource`` before a hosted client sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tunnel_core.oauth.discovery import Discoverer, DiscoveryResult
from tunnel_core.oauth.state import DiscoveryState
from tunnel_core.targets.base import Reply
from tunnel_core.wire.messages import MAIN_CHANNEL, HeaderMap, OAuthDiscoveryCommand

log = logging.getLogger("tunnel_client.oauth")

_JSON = {"Content-Type": ["application/json"]}
# Framing of the PRMD response itself; everything else is passed on as received.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"})


class OAuthDiscovery:
    """Owns discovery for the main channel; ``publish`` receives each result (may be a no-op)."""

    def __init__(self, discoverer: Discoverer | None, state: DiscoveryState,
                 publish: Callable[[DiscoveryResult], None] | None = None) -> None:
        self._discoverer = discoverer
        self.state = state
        self._publish = publish

    async def run(self) -> DiscoveryResult | None:
        """One discovery run; the result is recorded and published. None when discovery does not apply."""
        if self._discoverer is None:
            return None
        self.state.start()
        result = await self._discoverer.discover()
        self.state.record(result)
        fields = {"mcp_url": result.mcp_url, "oauth_discovery_urls": [f"{i + 1}:{u}" for i, u in
                                                                      enumerate(result.candidates)]}
        if result.ok:
            log.info("OAuth discovery ProtectedResourceMetaData fetched",
                     extra={**fields, "status_code": result.status_code, "metadata_url": result.url,
                            "metadata_source": result.metadata_source,
                            "issuer_mismatch": bool(result.auth_server and result.auth_server.issuer_mismatch)})
        elif result.optional:
            log.info("OAuth discovery: no protected resource metadata advertised (OAuth is optional)", extra=fields)
        else:
            log.warning("OAuth discovery failed", extra={**fields, "error": result.error})
        if self._publish is not None and result.ok:
            try:
                self._publish(result)
            except Exception:  # publishing is best effort; discovery itself succeeded
                log.exception("OAuth discovery URL publishing failed")
        return result

    async def handle(self, cmd: OAuthDiscoveryCommand) -> Reply:
        """The terminal reply of one ``oauth_discovery`` command."""
        if cmd.channel != MAIN_CHANNEL:
            return _error(400, f'Bad Request: unsupported channel "{cmd.channel}"', "unsupported_channel")
        result = await self.run()
        if result is None:
            return _error(404, "OAuth discovery is not available for this target", "oauth_discovery_unavailable")
        return discovery_reply(result)


def discovery_reply(result: DiscoveryResult) -> Reply:
    if result.ok and result.prmd is not None:
        headers: HeaderMap = {}
        for k, v in result.headers:
            if k.lower() not in _FRAMING:
                headers.setdefault(k, []).append(v)
        return Reply("oauth_discovery_response", result.status_code or 200, result.prmd, headers or dict(_JSON))
    if result.optional:
        return _error(404, "The MCP server does not advertise OAuth protected resource metadata.",
                      "oauth_metadata_not_advertised")
    return _error(502, result.error or "OAuth discovery failed", "oauth_discovery_failed", "server_error")


def _error(status: int, message: str, code: str, typ: str = "invalid_request_error") -> Reply:
    return Reply("oauth_discovery_response", status,
                 {"error": {"message": message, "type": typ, "code": code}}, dict(_JSON))
