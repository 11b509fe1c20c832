"""The plugin bundle files against their models, and against the code they describe (drift tests)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent_tools.front import CATALOGUE_PATH
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


def test_help_plugin_shows_every_starter_prompt() -> None:
    from tunnel_core.ops.help_topics import get_topic

    text = " ".join(get_topic("plugin").text.split())
    for p in STARTER_PROMPTS:
        assert p.text in text, p.name


def test_the_front_and_the_bundle_name_the_server_alike() -> None:
    from agent_tools.listing import SERVER_NAME

    assert SERVER_NAME == bundle.MCP_SERVER_NAME


def test_mcp_json_forwards_exactly_the_documented_variables() -> None:
    server = load_bundle().mcp.mcp_servers["tunnel-client"]
    assert server.env_vars == list(FORWARDED_ENV)
    assert (server.command, server.args) == ("tunnel-client", ["codex", "mcp-server"])


def test_read_only_tool_list_matches_the_tool_annotations() -> None:
    assert set(READ_ONLY_TOOLS) == {s.name for s in ALL_SPECS if s.read_only}
    catalogue = json.loads(Path(CATALOGUE_PATH).read_text())
    assert set(READ_ONLY_TOOLS) == {t["name"] for t in catalogue["tools"] if t["annotations"]["readOnlyHint"]}


TOOL_CALL = re.compile(r"`([a-z_]+) \{([^}`]*)\}`")
ARGUMENT_VALUE = re.compile(r"`([a-z_]+): [^`]+`")
IDENTIFIER = re.compile(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`")  # snake_case: tool, argument and field names
CALL_ARGUMENT = re.compile(r"(?:^|[,|{]\s*)([a-z_]+)")
# Words of the results (fields and values) the skill may name; a tool argument or tool name that
# does not exist is not here, so naming one fails the drift test.
RESULT_VOCABULARY = {
    "state", "ready", "healthy", "starting", "stopped", "failed", "reason", "cause", "next", "cli", "fix",
    "launched", "already_running", "process_running", "control_plane", "ui_url", "mcp_url", "log_excerpt",
    "tunnel_not_found", "unauthorized", "forbidden", "launch_failed", "exited", "tunnel_activating",
    "runtime_state", "classification", "live_runtime", "valid_profile", "missing_profile", "stale_alias",
    "keys_available", "why", "quickstart", "plugin", "troubleshooting",
    "env_vars",  # the .mcp.json key
    "tunnel_management_permission_required",  # a service error code quoted in a failure
}
DOCTOR_CHECKS = set(re.findall(r'id="([a-z_]+)"', "".join(
    p.read_text() for p in (Path(bundle.__file__).parents[1] / "ops").glob("doctor*.py"))))


def _skill_texts() -> dict[str, str]:
    root = source_root("skills") / "tunnel-client"
    texts = {"SKILL.md": (root / "SKILL.md").read_text()}
    texts |= {f"references/{r}": (root / "references" / r).read_text() for r in SKILL_REFERENCES}
    texts["plugin_manifest/README.md"] = (source_root("plugin_manifest") / "README.md").read_text()
    return texts


def test_skill_names_every_reference_and_only_real_tools_and_arguments() -> None:
    """Drift: a tool or an argument the skill (or the plugin README) names must exist in the tool server."""
    text = (source_root("skills") / "tunnel-client" / "SKILL.md").read_text()
    skill, body = parse_front_matter(text, "SKILL.md")
    for ref in SKILL_REFERENCES:
        assert f"references/{ref}" in body
    assert "runtime_status" in body and "healthy" in skill.description
    arguments = {s.name: set(s.input_schema()["properties"]) for s in ALL_SPECS}
    all_arguments = set().union(*arguments.values())
    problems = []
    for source, content in _skill_texts().items():
        for tool, args in TOOL_CALL.findall(content):
            if tool not in arguments:
                problems.append(f"{source}: `{tool} {{...}}` is not a tool")
                continue
            for arg in CALL_ARGUMENT.findall("{" + args):
                if arg not in arguments[tool]:
                    problems.append(f"{source}: {tool} has no argument {arg}")
        for arg in ARGUMENT_VALUE.findall(content):
            if arg not in all_arguments:
                problems.append(f"{source}: `{arg}: ...` is not an argument of any tool")
        for word in IDENTIFIER.findall(TOOL_CALL.sub("", content)):
            if word not in TOOL_NAMES | all_arguments | RESULT_VOCABULARY | DOCTOR_CHECKS:
                problems.append(f"{source}: `{word}` is neither a tool, an argument nor a result word")
    assert not problems, "\n".join(problems)


def test_the_drift_test_catches_an_argument_that_does_not_exist() -> None:
    arguments = {s.name: set(s.input_schema()["properties"]) for s in ALL_SPECS}
    stale = "`runtime_status {alias, include_details}`"
    tool, args = TOOL_CALL.findall(stale)[0]
    assert [a for a in CALL_ARGUMENT.findall("{" + args) if a not in arguments[tool]] == ["include_details"]
    assert "include_details" not in TOOL_NAMES | set().union(*arguments.values()) | RESULT_VOCABULARY


def test_readme_lists_every_tool() -> None:
    readme = (source_root("plugin_manifest") / "README.md").read_text()
    assert TOOL_NAMES <= set(re.findall(r"`([a-z_]+)`", readme))


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
