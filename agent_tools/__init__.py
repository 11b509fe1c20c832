"""The tunnel-client agent tool server: an MCP server (stdio) that Codex starts from the plugin.

Each tool calls ``tunnel_core`` in-process and returns the same pydantic payload as the
matching ``tunnel-client ... --json`` command as structured content, with a one-line text
summary. Start it with ``tunnel-client codex mcp-server`` or ``python -m agent_tools``.

toolkit        ToolSpec -> MCP tool: strict inputs, annotations, results, errors with a next step
common         shared checks: trusted control-plane URLs, the tunnel-client in use, key references
setup_tools    quickstart, help, init_profile, list_profiles, doctor
runtime_tools  connect/status/list/stop/remove/cleanup runtimes, and the reference plugin's tool names
admin_tools    admin tunnels list/get/create/update/delete, admin profiles
server         the composition root: tools, resources (docs, help topics), prompts, instructions
"""
