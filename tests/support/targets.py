"""Handles on the in-process MCP targets the relay forwards to."""

from __future__ import annotations

from dataclasses import dataclass

from tests.support.mcp_app import Gates
from tests.support.odd_app import OddState
from tests.support.servers import BackgroundLoop, RunningServer


@dataclass(slots=True)
class MCPTarget:
    server: RunningServer
    gates: Gates
    loop: BackgroundLoop

    @property
    def url(self) -> str:
        return f"{self.server.url}/mcp"

    def open_gate(self, name: str) -> None:
        self.loop.call(self.gates.open, name)


@dataclass(slots=True)
class OddTarget:
    server: RunningServer
    state: OddState

    @property
    def url(self) -> str:
        return f"{self.server.url}/mcp"
