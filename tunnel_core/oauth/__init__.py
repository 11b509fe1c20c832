"""OAuth for tunnelled MCP servers, client side: discovery inside the network.

- :mod:`tunnel_core.oauth.discovery`: PRMD and authorization-server metadata discovery (client side)
- :mod:`tunnel_core.oauth.state`: discovery state behind /readyz and /api/oauth
- :mod:`tunnel_core.oauth.devserver`: the demo authorization server of ``dev mcp-stub``

What the client and the tunnel service share lives beside the wire models:
:mod:`tunnel_core.wire.challenge` (``WWW-Authenticate`` ``resource_metadata`` parsing and replacement)
and :mod:`tunnel_core.wire.prmd` (the service's rewriting of ``resource`` and ``resource_metadata``).
"""
