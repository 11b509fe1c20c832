"""Wiring of OAuth discovery and Harpoon for one relay (called from the composition root).

Discovery applies when ``main`` is a Streamable HTTP target and is polled; it runs over
main's own pool (proxy, CA bundle, client certificate scoped to the MCP origin) with the
discovery static headers. Each successful result is published to the Harpoon registry,
whose first target makes the ``harpoon`` channel routable.
"""

from __future__ import annotations

from collections.abc import Mapping

import anyio

from tunnel_core.config.settings import HARPOON_CHANNEL, Settings
from tunnel_core.httpio import origin_of
from tunnel_core.netconfig import TLSContexts, harpoon_pool
from tunnel_core.oauth.discovery import Discoverer, DiscoveryResult, discovered_urls
from tunnel_core.oauth.service import OAuthDiscovery
from tunnel_core.oauth.state import DiscoveryState
from tunnel_core.records import record
from tunnel_core.relay.state import RuntimeState
from tunnel_core.targets.base import Target
from tunnel_core.targets.harpoon import HarpoonServer
from tunnel_core.targets.harpoon_registry import HarpoonTarget, HostClassifier, Registry, register_discovered
from tunnel_core.targets.http import HTTPTarget
from tunnel_core.wire.messages import MAIN_CHANNEL

# How long startup discovery waits for main's startup probe when --mcp.startup-wait-timeout is set.
PROBE_SETTLE_SLACK = 3.0


@record(slots=True)
class OAuthParts:
    discovery: OAuthDiscovery
    harpoon: HarpoonServer | None
    registry: Registry

    async def aclose(self) -> None:
        if self.harpoon is not None:
            await self.harpoon.aclose()


def build_oauth(settings: Settings, targets: Mapping[str, Target], tls: TLSContexts,
                state: RuntimeState) -> OAuthParts:
    registry = Registry(on_change=state.touch)
    for spec in settings.harpoon.targets:
        registry.register(HarpoonTarget(spec.label, spec.url, spec.description, unix_socket=spec.unix_socket,
                                        inclusion_reason="configured"))
    polls_harpoon = settings.poll_channels is None or HARPOON_CHANNEL in settings.poll_channels
    harpoon = (HarpoonServer(registry, settings.harpoon, lambda sock: harpoon_pool(settings, tls, sock))
               if polls_harpoon else None)

    main = targets.get(MAIN_CHANNEL)
    polls_main = settings.poll_channels is None or MAIN_CHANNEL in settings.poll_channels
    discoverer = None
    if isinstance(main, HTTPTarget) and polls_main:
        discoverer = Discoverer(main.url, main.http, main.static)
    oauth_state = DiscoveryState(enabled=discoverer is not None, on_change=state.touch)
    state.oauth = oauth_state

    classifier = HostClassifier.from_settings(settings.harpoon)
    binding = settings.binding(MAIN_CHANNEL)
    socket_origin = origin_of(binding.url) if binding is not None and binding.unix_socket else ""

    def unix_socket_for(url: str) -> str:
        return binding.unix_socket if binding is not None and socket_origin and origin_of(url) == socket_origin else ""

    def publish(result: DiscoveryResult) -> None:
        if harpoon is not None and main is not None and isinstance(main, HTTPTarget):
            register_discovered(registry, discovered_urls(result, main.url), classifier, unix_socket_for)

    return OAuthParts(OAuthDiscovery(discoverer, oauth_state, publish), harpoon, registry)


async def startup_discovery(parts: OAuthParts, settings: Settings, state: RuntimeState) -> None:
    """Run discovery once at startup; with a startup wait, first let main's probe settle (bounded)."""
    if not parts.discovery.state.enabled:
        return
    parts.discovery.state.start()
    if settings.startup_wait_timeout > 0:
        with anyio.move_on_after(settings.startup_wait_timeout + PROBE_SETTLE_SLACK):
            while state.probes.get(MAIN_CHANNEL) is not None and state.probes[MAIN_CHANNEL].status == "pending":
                await state.changed.wait()
    await parts.discovery.run()
