"""The top-level commands: who registers each one, and the line ``tunnel-client --help`` shows for it.

``cli/main.py`` registers only the command being run (or none, for the root ``--help``) and
lists the others from this table, so no command pays for importing and building the flags
of the rest; the full tree is built only where it is shown whole (``help COMMAND``,
``completion``). Each command's module takes its help line from here: one text, two uses.
"""

from __future__ import annotations

# (name, "module:function" that registers it, help line or None for a hidden command), in --help order.
# Names that share a function are registered together.
COMMANDS: tuple[tuple[str, str, str | None], ...] = (
    ("run", "runcmd:register", "run the tunnel client in the foreground"),
    ("dev", "devcmd:register", "local development helpers (no account needed)"),
    ("serve", "servecmd:register", "run the tunnel service in production mode (self-hosted relay; scales out on Redis)"),
    ("profiles", "profilescmd:register", "list, add and edit profiles; show the built-in samples"),
    ("init", "opscmd:register_init", "write a first profile from a sample and print the next commands"),
    ("doctor", "opscmd:register_doctor", "check a configuration before run (exit 2 when a check fails)"),
    ("health", "opscmd:register_health", "probe a running daemon's /healthz and /readyz (exit 2 if not ok)"),
    ("help", "opscmd:register_help", "show a help topic (see below) or a command's help"),
    ("admin", "admincmd:register", "administrative operations for the tunnel control plane"),
    ("admin-profiles", "admincmd:register",
     "manage admin profiles used by runtimes commands (key references only)"),
    ("runtimes", "runtimescmd:register", "manage long-lived local runtimes by alias"),
    ("codex", "codexcmd:register", "Codex plugin, status, assistant and agent tool server"),
    ("plugin", "codexcmd:register", None),
    ("completion", "completioncmd:register", "print a shell completion script (bash, zsh or fish)"),
)

HELP: dict[str, str] = {name: text for name, _, text in COMMANDS if text is not None}
