"""User-visible operations, one module each, shared by the CLI and the agent tool server.

Every operation takes plain arguments (flags already parsed, the environment as a
mapping) and returns a pydantic model; that model's JSON is the command's ``--json``
output and the MCP tool's structured content. Bad input raises a ``ConfigError`` or
``UsageError`` (exit 1) whose one-line message names the field and the fix.

help_topics   help texts shipped as package data
samples       built-in starter profiles and their rendering
profiles      list / add / edit profiles in the profile directory
preflight     can a stdio MCP command be started at all?
init_profile  write a first profile from a sample
doctor        pre-start checks of a configuration (doctor_checks: the individual probes)
health        probe a running daemon's operator endpoints
"""
