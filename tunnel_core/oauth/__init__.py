"""OAuth for tunnelled MCP servers: discovery inside the network, rewriting at the tunnel service.

- :mod:`tunnel_core.oauth.discovery`: PRMD and authorization-server metadata discovery (client side)
- :mod:`tunnel_core.oauth.state`: discovery state behind /readyz and /api/oauth
- :mod:`tunnel_core.oauth.challenge`: ``WWW-Authenticate`` ``resource_metadata`` parsing and replacement
- :mod:`tunnel_core.oauth.rewrite`: tunnel-service rewriting of ``resource`` and ``resource_metadata``
- :mod:`tunnel_core.oauth.devserver`: the demo authorization server of ``dev mcp-stub``
"""
