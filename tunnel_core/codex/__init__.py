"""Codex integration: the plugin bundle, its installer, status checks and ``codex assistant``.

home        CODEX_HOME resolution, the Codex CLI on PATH, marketplace name rules
bundle      models of the plugin files (plugin.json, .mcp.json, SKILL.md) and where the bundle lives
tomledit    byte-preserving edits of config.toml (tomllib reads; text edits write)
install     ``codex plugin install|uninstall|export`` and the official marketplace route
status      ``codex status`` and ``codex_plugin_state`` (plugin facts from files, for the operator UI too)
diagnose    ``codex diagnose``: plugin, installation, state directories and one runtime
packages    ``codex install|upgrade|uninstall``: the package-manager commands to run
appserver   a small JSON-RPC client for ``codex app-server`` (stdio, newline-delimited)
prompts     the prompt pack: assistant instructions, MCP server instructions, starter prompts
passages    the docs and help topics cut into cited sections; their commands and prose
vocabulary  index terms, phrases and the thesaurus of this domain
ranking     BM25F over the sections (generic)
knowledge   the ranked knowledge base over the docs, help topics and skill references
answer      the offline answer composed from the ranked sections
assistant   ``codex assistant``: one question (or a REPL) answered through app-server, or offline
"""
