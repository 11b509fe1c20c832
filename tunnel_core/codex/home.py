"""Where Codex keeps its files, and which ``codex`` program to run.

``CODEX_HOME`` defaults to ``~/.codex`` (``$HOME`` from the injected environment first). The
Codex program is ``$TUNNEL_CLIENT_CODEX_APP_SERVER_CMD`` (default ``codex``) looked up on the
injected ``PATH``. Nothing here runs Codex.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from tunnel_core.errors import UsageError

CODEX_CMD_ENV = "TUNNEL_CLIENT_CODEX_APP_SERVER_CMD"
CODEX_ARGS_ENV = "TUNNEL_CLIENT_CODEX_APP_SERVER_ARGS"
CODEX_CWD_ENV = "TUNNEL_CLIENT_CODEX_APP_SERVER_CWD"
DOCS_URL = "https://developers.openai.com/codex/cli"
_MARKETPLACE_BAD = re.compile(r'[/\\"\s]')


def codex_home(env: Mapping[str, str], explicit: str | None = None) -> Path:
    """``--codex-home`` > ``$CODEX_HOME`` > ``$HOME/.codex`` > ``~/.codex``, made absolute."""
    for value in (explicit, env.get("CODEX_HOME")):
        if value and value.strip():
            return Path(os.path.abspath(os.path.expanduser(value.strip())))
    home = (env.get("HOME") or "").strip() or os.path.expanduser("~")
    return Path(os.path.abspath(home)) / ".codex"


def check_marketplace(name: str) -> str:
    """A marketplace name usable as one directory level; raises UsageError naming the rule."""
    name = name.strip()
    if name in ("", ".", "..") or name.startswith("-") or _MARKETPLACE_BAD.search(name):
        raise UsageError(f"--marketplace {name!r} is not usable: it must be one directory name (no /, \\, quotes, "
                         "spaces; not '.', '..' or starting with '-')")
    return name


def find_codex(env: Mapping[str, str]) -> str | None:
    """Absolute path of the Codex program on the injected PATH, or None."""
    cmd = (env.get(CODEX_CMD_ENV) or "codex").strip() or "codex"
    if os.sep in cmd:
        return cmd if os.access(cmd, os.X_OK) and os.path.isfile(cmd) else None
    return shutil.which(cmd, path=env.get("PATH", os.defpath))


def codex_child_env(env: Mapping[str, str], codex_home_dir: Path | None = None) -> dict[str, str]:
    """The environment for a ``codex`` child: ours, with CODEX_HOME pinned when one was chosen."""
    out = dict(env)
    if codex_home_dir is not None:
        out["CODEX_HOME"] = str(codex_home_dir)
    return out
