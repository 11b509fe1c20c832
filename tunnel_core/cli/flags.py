"""Flag groups and flag parsers shared by several commands (``run``, ``doctor``, ``dev``, ``serve``)."""

from __future__ import annotations

import argparse

from tunnel_core.config.specs import SPECS


def add_config_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("config file selection (mutually exclusive)")
    g.add_argument("--config", metavar="PATH", help="YAML config file (TUNNEL_CLIENT_CONFIG)")
    g.add_argument("--profile", metavar="NAME", help="profile name in the profile directory (TUNNEL_CLIENT_PROFILE)")
    g.add_argument("--profile-file", metavar="PATH", help="profile file <name>.yaml (TUNNEL_CLIENT_PROFILE_FILE)")
    g.add_argument("--profile-dir", metavar="DIR", help="profile directory (TUNNEL_CLIENT_PROFILE_DIR)")


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """Every runtime setting of the table, with its canonical flag and hidden aliases."""
    g = p.add_argument_group("runtime settings (flag > env > YAML > default)")
    for spec in SPECS:
        env = f" [{spec.env}]" if spec.env else ""
        default = "" if spec.default in (None, "") else f" (default {spec.default})"
        g.add_argument(
            spec.flag, dest=spec.dest, action="append" if spec.repeat else "store", metavar=spec.metavar,
            help=f"{spec.help}{env}{default}",
            nargs="?" if spec.boolean else None, const="true" if spec.boolean else None,
        )
        for alias in spec.aliases:
            g.add_argument(alias, dest=spec.dest + "__alias", action="append" if spec.repeat else "store",
                           help=argparse.SUPPRESS)
    add_config_selection(p)


def merge_aliases(ns: argparse.Namespace) -> dict[str, object]:
    """Flags as a dict by Spec.dest, hidden aliases applied only where the canonical flag is unset."""
    flags = vars(ns).copy()
    for spec in SPECS:
        alias = flags.pop(spec.dest + "__alias", None)
        if flags.get(spec.dest) is None and alias is not None:
            flags[spec.dest] = alias
    return flags


def duration_flag(value: str, flag: str) -> float:
    """Seconds from a duration flag value (``30s``, ``2m``); a ConfigError naming the flag otherwise."""
    from tunnel_core.config.durations import parse_duration
    from tunnel_core.errors import ConfigError

    try:
        return parse_duration(value)
    except ValueError:
        raise ConfigError(f"{flag}: invalid duration {value!r}; use forms like 30s or 2m") from None
