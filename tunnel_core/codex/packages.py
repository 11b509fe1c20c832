"""``codex install|upgrade|uninstall``: the official package-manager commands for the Codex CLI.

tunnel-client never installs Codex itself; it prints the commands. Preferred method: Homebrew
on macOS when ``brew`` is on PATH, else npm when ``npm`` is on PATH, else Homebrew on macOS,
else npm.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel

from tunnel_core.codex.home import DOCS_URL


class InstallMethod(BaseModel):
    name: Literal["homebrew", "npm"]
    install_command: str
    upgrade_command: str
    uninstall_command: str


class InstallMethods(BaseModel):
    preferred: InstallMethod
    methods: list[InstallMethod]


class PackageCommands(BaseModel):
    """``tunnel-client codex install|upgrade|uninstall --json``."""

    action: Literal["install", "upgrade", "uninstall"]
    docs_url: str
    preferred_method: str
    command: str
    methods: list[InstallMethod]


HOMEBREW = InstallMethod(name="homebrew", install_command="brew install codex", upgrade_command="brew upgrade codex",
                         uninstall_command="brew uninstall codex")
NPM = InstallMethod(name="npm", install_command="npm install -g @openai/codex",
                    upgrade_command="npm install -g @openai/codex@latest",
                    uninstall_command="npm uninstall -g @openai/codex")


def install_methods(env: Mapping[str, str], platform: str = sys.platform) -> InstallMethods:
    path = env.get("PATH", os.defpath)
    mac = platform == "darwin"
    has_brew = shutil.which("brew", path=path) is not None
    has_npm = shutil.which("npm", path=path) is not None
    if mac and has_brew:
        preferred = HOMEBREW
    elif has_npm:
        preferred = NPM
    elif mac:
        preferred = HOMEBREW
    else:
        preferred = NPM
    return InstallMethods(preferred=preferred, methods=[HOMEBREW, NPM])


def package_commands(action: Literal["install", "upgrade", "uninstall"], env: Mapping[str, str],
                     platform: str = sys.platform) -> PackageCommands:
    methods = install_methods(env, platform)
    command = getattr(methods.preferred, f"{action}_command")
    return PackageCommands(action=action, docs_url=DOCS_URL, preferred_method=methods.preferred.name,
                           command=command, methods=methods.methods)
