"""The tunnel-client agent tool server (MCP, stdio). Built out in issue 7."""
