"""The tunnel-client agent tool server: an MCP server (stdio) that Codex starts from the plugin.

``python -m agent_tools`` (and ``tunnel-client codex mcp-server``) is the stdio front: standard
library only, it answers the handshake and the listings in milliseconds and runs the ``mcp``
SDK server (``python -m agent_tools.server``) as its child for everything else. Each tool calls
``tunnel_core`` in-process and returns structured content written for a model.

front          the stdio front (start-up, relay, child restarts)
listing        server identity, prompts and resources, shared by the front and the SDK server
catalogue      catalogue.json: the SDK server's tools/list, recorded for the front (drift-checked)
toolkit        ToolSpec -> MCP tool: strict inputs, either/or rules, annotations, results, errors
common         shared checks: trusted control-plane URLs, the tunnel-client in use, key references
setup_tools    help, install_or_select_tunnel_client, init_profile, doctor
runtime_tools  connect_stdio_mcp, create_tunnel_runtime, runtime_status, list_runtime_aliases,
               stop_runtime, remove_runtime (the reference plugin's names, one tool per job)
admin_tools    update_tunnel, delete_tunnel, set_admin_profile
server         the SDK server's composition root: tools, resources, prompts, instructions
"""
