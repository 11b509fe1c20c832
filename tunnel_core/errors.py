"""The exception tree of tunnel-client.

TunnelClientError            base; carries the process exit code for the CLI
├── ConfigError              a setting is missing or invalid (exit 1); message names the setting and the fix
│   └── ConfigErrors         several at once (config.settings): str() is the first, .errors all of them
├── UsageError               a command line that cannot be acted on (exit 1)
└── CheckFailed              a check ran and reported failure (exit 2), output already printed

Target-side failures (the MCP server could not be reached or answered badly) are not
exceptions here: targets return a synthesized JSON-RPC failure, see
``tunnel_core.targets.failures``.
"""

from __future__ import annotations


class TunnelClientError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class ConfigError(TunnelClientError):
    """Raised when configuration cannot be loaded; the message is one line naming the setting and the fix.

    ``setting`` is the YAML key (or group, such as ``mcp.target``) the error belongs to, when known.
    """

    setting: str = ""


class UsageError(TunnelClientError):
    """Raised for a command line that cannot be acted on."""


class CheckFailed(TunnelClientError):
    """Raised when a check (doctor, health, connect) reports failure after printing its result."""

    exit_code = 2
