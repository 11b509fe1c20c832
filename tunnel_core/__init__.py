"""tunnel-client: the customer-run agent of a Secure MCP Tunnel."""

from __future__ import annotations

__version__ = "0.1.0"

CLIENT_NAME = "oai-tunnel-client"
USER_AGENT = f"{CLIENT_NAME}/{__version__}"
