"""The plugin bundle files against their models, and against the code they describe (drift tests)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent_tools.server import ALL_SPECS
from tunnel_core import __version__
from tunnel_core.codex import bundle
from tunnel_core.codex.bundle import (
    BUNDLE_FILES,
    FORWARDED_ENV,
    READ_ONLY_TOOLS,
    SKILL_REFERENCES,
    McpConfig,
    PluginManifest,
    SkillFrontMatter,
    load_bundle,
    parse_front_matter,
    source_root,
    stray_files,
)
from tunnel_core.codex.prompts import STARTER_PROMPTS
from tunnel_core.errors import ConfigError

TOOL_NAMES = {s.name for s in ALL_SPECS}


def test_every_source_file_is_listed_and_valid() -> None:
    assert stray_files() == []
    b = load_bundle()
    assert set(b.files) == {f.dest for f in BUNDLE_FILES}
    assert b.manifest.name == "tunnel-client" and b.manifest.version == __version__


def test_default_prompts_are_the_first_starter_prompts() -> None:
    assert load_bundle().manifest.interface.default_prompt == [p.text for p in STARTER_PROMPTS[:3]]


def test_mcp_json_forwards_exactly_the_documented_variables() -> None:
    server = load_bundle().mcp.mcp_servers["tunnel-client"]
    assert server.env_vars == list(FORWARDED_ENV)
    assert (server.command, server.args) == ("tunnel-client", ["codex", "mcp-server"])


def test_read_only_tool_list_matches_the_tool_annotations() -> None:
    assert set(READ_ONLY_TOOLS) == {s.name for s in ALL_SPECS if s.read_only}


def test_skill_names_every_reference_and_only_real_tools() -> None:
    text = (source_root("skills") / "tunnel-client" / "SKILL.md").read_text()
    skill, body = parse_front_matter(text, "SKILL.md")
    for ref in SKILL_REFERENCES:
        assert f"references/{ref}" in body
    mentioned = set(re.findall(r"`([a-z_]+)`", body + "".join(
        (source_root("skills") / "tunnel-client" / "references" / r).read_text() for r in SKILL_REFERENCES)))
    tool_like = {m for m in mentioned if "_" in m and (m.startswith(("admin_", "list_", "connect_", "runtime_",
                                                                        "stop_", "remove_", "cleanup_", "create_",
                                                                        "init_", "install_")))}
    fields = {f for s in ALL_SPECS for m in (s.input_model, s.output_model) for f in m.model_fields}
    assert tool_like <= TOOL_NAMES | fields, tool_like - TOOL_NAMES - fields
    assert "runtime_status" in skill.description or "healthy" in skill.description


def test_readme_lists_every_tool() -> None:
    readme = (source_root("plugin_manifest") / "README.md").read_text()
    names = set(re.findall(r"`([a-z_]+)`", readme))
    names |= {f"admin_tunnels_{v}" for v in ("list", "get", "create", "update", "delete")} if \
        "admin_tunnels_{list,get,create,update,delete}" in readme else set()
    assert TOOL_NAMES <= names | {"runtime_status", "stop_runtime"}, TOOL_NAMES - names


def test_installed_mcp_json_starts_this_interpreter() -> None:
    rendered = json.loads(load_bundle().render()[".mcp.json"])
    server = rendered["mcpServers"]["tunnel-client"]
    assert server["command"] == sys.executable and server["args"] == ["-m", "agent_tools"]
    assert server["cwd"] == "." and server["env_vars"] == list(FORWARDED_ENV)


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((source_root("plugin_manifest") / ".codex-plugin" / "plugin.json").read_text())
    return data


@pytest.mark.parametrize(("path", "value"), [
    (("name",), "-bad"),
    (("version",), "1.0 beta"),
    (("skills",), "skills/"),
    (("mcpServers",), "../.mcp.json"),
    (("interface", "defaultPrompt"), ["x" * 129]),
    (("interface", "defaultPrompt"), ["a", "b", "c", "d"]),
    (("interface", "brandColor"), "green"),
    (("interface", "capabilities"), ["Teleport"]),
    (("unexpected",), True),
])
def test_manifest_model_rejects(path: tuple[str, ...], value: Any) -> None:
    data = _manifest()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValidationError):
        PluginManifest.model_validate(data)


@pytest.mark.parametrize("entry", [
    {"command": "", "args": [], "env_vars": [], "startup_timeout_sec": 1, "tool_timeout_sec": 1},
    {"command": "x", "args": [], "env_vars": ["NOT-A-NAME"], "startup_timeout_sec": 1, "tool_timeout_sec": 1},
    {"command": "x", "args": [], "env_vars": [], "startup_timeout_sec": 0, "tool_timeout_sec": 1},
    {"command": "x", "args": [], "env_vars": [], "startup_timeout_sec": 1, "tool_timeout_sec": 1, "url": "http://x"},
])
def test_mcp_config_model_rejects(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        McpConfig.model_validate({"mcpServers": {"tunnel-client": entry}})


@pytest.mark.parametrize("text", [
    "no front matter",
    "---\nname: x\n",
    "---\nname: tunnel-client\ndescription: too short\n---\nbody",
    "---\nname: " + "n" * 65 + "\ndescription: " + "d" * 300 + "\n---\n",
])
def test_skill_front_matter_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_front_matter(text, "SKILL.md")


def test_front_matter_model_limits() -> None:
    SkillFrontMatter(name="tunnel-client", description="d" * 1024)
    with pytest.raises(ValidationError):
        SkillFrontMatter(name="tunnel-client", description="d" * 1025)


def test_a_stray_file_fails_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("plugin_manifest", "skills"):
        src = source_root(name)  # type: ignore[arg-type]
        for p in src.rglob("*"):
            if p.is_file():
                dest = tmp_path / name / p.relative_to(src)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(p.read_bytes())
    (tmp_path / "skills" / "tunnel-client" / "references" / "extra.md").write_text("# not listed\n")
    monkeypatch.setattr(bundle, "source_root", lambda name: tmp_path / name)
    with pytest.raises(ConfigError, match=r"extra\.md"):
        load_bundle()
