"""The agent tool server in-process (mcp.Client over memory streams): the catalogue a model pays for,
schemas with their either/or rules, annotations, secrets, errors that name the fix as a tool call,
results written for a model, resources and prompts."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from mcp import Client
from pydantic import ValidationError

from agent_tools.catalogue import model_bytes
from agent_tools.front import load_catalogue
from agent_tools.server import ALL_SPECS, build_server
from tunnel_core.codex.prompts import STARTER_PROMPTS

pytestmark = pytest.mark.anyio

REFERENCE_ARGUMENTS = {  # the reference plugin's six tools and their argument names (issue 13)
    "install_or_select_tunnel_client": {"tunnel_client_bin", "persist_hint", "allow_path_lookup"},
    "create_tunnel_runtime": {"alias", "organization_id", "workspace_id", "admin_profile", "name", "description",
                              "tunnel_client_bin"},
    "connect_stdio_mcp": {"alias", "mcp_command", "tunnel_id", "runtime_api_key", "admin_profile",
                          "organization_id", "workspace_id", "control_plane_base_url", "name", "description",
                          "tunnel_client_bin"},
    "list_runtime_aliases": {"organization_id", "workspace_id", "tenant_id", "admin_profile", "tunnel_client_bin"},
    "runtime_status": {"alias", "tunnel_client_bin"},
    "stop_runtime": {"alias", "tunnel_client_bin"},
}
CATALOGUE_BUDGET = 8 * 1024
SECRET = "sk-" + "Q" * 32


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TUNNEL_CLIENT_STATE_DIR": str(tmp_path / "state"),
            "TUNNEL_CLIENT_PROFILE_DIR": str(tmp_path / "profiles"), "XDG_CONFIG_HOME": str(tmp_path / ".config")}


@pytest.fixture
async def client(env: dict[str, str]) -> AsyncIterator[Client]:
    async with Client(build_server(lambda: env)) as c:
        yield c


async def call(client: Client, tool: str, args: dict[str, Any]) -> tuple[bool, str, Any]:
    result = await client.call_tool(tool, args)
    text = "".join(getattr(c, "text", "") for c in result.content)
    return bool(result.is_error), text, result.structured_content


def _objects(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


async def test_the_catalogue_a_model_pays_for_fits_its_budget(client: Client) -> None:
    tools = (await client.list_tools()).tools
    listed = [t.model_dump(by_alias=True, exclude_none=True) for t in tools]
    size = model_bytes(listed)
    assert size <= CATALOGUE_BUDGET, f"name + description + inputSchema of all tools is {size} bytes"
    assert len(tools) <= 13
    assert size == model_bytes(load_catalogue()["tools"])  # type: ignore[index]


async def test_every_tool_has_a_strict_schema_annotations_and_a_description(client: Client) -> None:
    tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    assert set(REFERENCE_ARGUMENTS) <= names
    for tool in tools:
        assert tool.input_schema["type"] == "object"
        for obj in _objects(tool.input_schema) or [tool.input_schema]:
            assert obj.get("additionalProperties") is False, (tool.name, obj)
        assert "title" not in tool.input_schema
        assert all("title" not in p for p in tool.input_schema["properties"].values()), tool.name
        a = tool.annotations
        assert a is not None and None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint,
                                              a.open_world_hint), tool.name
        assert tool.description and tool.title
        if a.read_only_hint:
            assert not a.destructive_hint
    destructive = {t.name for t in tools if t.annotations and t.annotations.destructive_hint}
    assert destructive == {"remove_runtime", "delete_tunnel"}


async def test_reference_tools_keep_the_reference_argument_names(client: Client) -> None:
    schemas = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    for name, arguments in REFERENCE_ARGUMENTS.items():
        assert arguments <= set(schemas[name]["properties"]), (name, arguments - set(schemas[name]["properties"]))


def _combinations(spec_fields: list[str]) -> list[dict[str, Any]]:
    out = []
    for n in range(len(spec_fields) + 1):
        for combo in itertools.combinations(spec_fields, n):
            out.append(combo)
    return [dict.fromkeys(c, "x") for c in out]


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s.input_model.exactly_one or s.input_model.at_most_one
                                  or s.input_model.at_least_one], ids=lambda s: s.name)
def test_either_or_rules_are_in_the_schema_and_the_validator_alike(spec: Any) -> None:
    """Every combination of the grouped arguments: the published schema and the input model decide alike."""
    model = spec.input_model
    grouped = sorted({f for g in (*model.exactly_one, *model.at_most_one, *model.at_least_one) for f in g})
    schema = spec.input_schema()
    assert {"oneOf", "anyOf", "not", "allOf"} & set(schema)
    required = {f: _sample(schema, f) for f in schema.get("required", [])}
    validator = Draft202012Validator(schema)
    for combo in _combinations(grouped):
        args = {**required, **{f: _sample(schema, f) for f in combo}}
        by_schema = validator.is_valid(args)
        try:
            model.model_validate(args)
            by_model = True
        except ValidationError:
            by_model = False
        assert by_schema == by_model, (spec.name, sorted(combo), by_schema)


def _sample(schema: dict[str, Any], name: str) -> Any:
    prop = schema["properties"][name]
    if "const" in prop:
        return prop["const"]
    if prop.get("type") == "array":
        return ["org_x"]
    if "pattern" in prop:
        return "tunnel_" + "a" * 32
    return "x"


@pytest.mark.parametrize(("tool", "args"), [
    ("connect_stdio_mcp", {"alias": "a", "mcp_command": "srv", "runtime_api_key": SECRET}),
    ("connect_stdio_mcp", {"alias": "a", "mcp_command": "server --token " + "Q" * 20}),
    ("connect_stdio_mcp", {"alias": "a", "mcp_server_url": "http://me:" + "Q" * 12 + "@127.0.0.1/mcp"}),
    ("connect_stdio_mcp", {"alias": "a", "mcp_command": f"srv OPENAI_API_KEY={'Q' * 20}"}),
    ("create_tunnel_runtime", {"alias": "n", "description": f"uses {SECRET}", "organization_id": "o"}),
    ("init_profile", {"tunnel_id": "tunnel_" + "0" * 32, "mcp_command": "srv", "api_key_ref": "Q" * 30}),
    ("set_admin_profile", {"name": "p", "admin_key": "Bearer " + "Q" * 30}),
])
async def test_secrets_are_refused_without_being_echoed(client: Client, tool: str, args: dict[str, Any]) -> None:
    is_error, text, data = await call(client, tool, args)
    assert is_error
    assert "Q" * 12 not in text and "Q" * 12 not in json.dumps(data), "a rejected secret was echoed back"
    assert data["fix"].startswith("pass keys only as env:NAME or file:/path references")


@pytest.mark.parametrize(("tool", "args"), [
    ("connect_stdio_mcp", {"alias": "a", "mcp_command": "srv", "control_plane_base_url": "https://evil.example"}),
    ("set_admin_profile", {"name": "p", "control_plane_base_url": "https://api.openai.com.evil.example"}),
])
async def test_keys_are_only_sent_to_trusted_control_planes(client: Client, tool: str, args: dict[str, Any]) -> None:
    is_error, text, data = await call(client, tool, args)
    assert is_error and "is not trusted" in text and data["field"] == "control_plane_base_url" and data["fix"]


async def test_the_configured_control_plane_is_trusted(env: dict[str, str]) -> None:
    env["CONTROL_PLANE_BASE_URL"] = "http://127.0.0.1:9"
    async with Client(build_server(lambda: env)) as c:
        is_error, text, data = await call(c, "set_admin_profile", {"name": "local", "control_plane_base_url":
                                                                   "http://127.0.0.1:9", "admin_key": "env:ADMIN"})
    assert not is_error, text
    assert (data["control_plane_base_url"], data["admin_key"], data["active"]) == ("http://127.0.0.1:9", "env:ADMIN",
                                                                                   True)


async def test_errors_name_the_argument_and_the_call_that_fixes_them(client: Client) -> None:
    is_error, text, data = await call(client, "runtime_status", {"alias": "demo", "verbose": True})
    assert is_error and data["field"] == "verbose" and "Extra inputs" in data["error"]
    is_error, text, data = await call(client, "runtime_status", {"alias": "ghost"})
    assert is_error and "alias ghost is not known" in data["error"] and data["field"] == "alias"
    assert data["next"] == [{"tool": "list_runtime_aliases", "arguments": {}, "why": "the known aliases"}]
    assert "Next: call list_runtime_aliases {}" in text
    is_error, text, data = await call(client, "runtime_status", {"alias": "x", "tunnel_client_bin": "/usr/bin/true"})
    assert is_error and data["field"] == "tunnel_client_bin"
    is_error, text, data = await call(client, "connect_stdio_mcp", {"alias": "x", "mcp_command": "srv"})
    assert is_error and data["field"] == "runtime_api_key" and "Codex forwards only" in data["fix"]
    is_error, text, data = await call(client, "connect_stdio_mcp", {"alias": "x", "mcp_command": "a",
                                                                   "mcp_server_url": "http://127.0.0.1:9/mcp"})
    assert is_error and "give at most one of mcp_command, mcp_server_url" in data["error"]
    is_error, text, data = await call(client, "runtime_status", {})
    assert is_error and "give exactly one of alias, tunnel_id" in data["error"]
    is_error, text, data = await call(client, "delete_tunnel", {"tunnel_id": "tunnel_x", "confirm": False})
    assert is_error and data["field"] == "confirm"


async def test_an_unknown_admin_profile_is_an_error_not_a_new_profile(client: Client, env: dict[str, str],
                                                                      tmp_path: Path) -> None:
    env["CONTROL_PLANE_API_KEY"] = "rt_" + "k" * 20
    is_error, _, data = await call(client, "connect_stdio_mcp", {"alias": "x", "mcp_command": "srv",
                                                                   "tunnel_id": "tunnel_" + "1" * 32,
                                                                   "admin_profile": "typo"})
    assert is_error and data["field"] == "admin_profile" and "typo is not known" in data["error"]
    assert [n["tool"] for n in data["next"]] == ["install_or_select_tunnel_client", "set_admin_profile"]
    assert not (tmp_path / "state" / "admin_profiles.yaml").exists()
    assert not (tmp_path / "profiles").exists()


async def test_help_the_installation_and_profiles(client: Client, tmp_path: Path) -> None:
    is_error, _, data = await call(client, "help", {})
    assert not is_error and "runtime_status" in " ".join(data["agent_flow"])
    assert data["next"] == [{"tool": "help", "arguments": {"topic": "quickstart"}, "why": "the first-use guide"}]
    is_error, _, data = await call(client, "help", {"topic": "plugin"})
    assert not is_error and data["name"] == "plugin" and "codex plugin install" in data["text"]

    is_error, _, data = await call(client, "install_or_select_tunnel_client", {})
    assert not is_error and data["ok"] is True and data["selection_source"] == "this_installation"
    assert data["keys_available"] == {"CONTROL_PLANE_API_KEY": False, "OPENAI_API_KEY": False,
                                      "OPENAI_ADMIN_KEY": False}
    assert "CONTROL_PLANE_API_KEY" in data["fix"]

    is_error, text, data = await call(client, "init_profile", {"tunnel_id": "tunnel_" + "1" * 32, "profile": "p1",
                                                               "mcp_server_url": "http://127.0.0.1:9/mcp"})
    assert not is_error, text
    assert data["path"] == str(tmp_path / "profiles" / "p1.yaml") and data["api_key_ref"] == "env:CONTROL_PLANE_API_KEY"
    assert data["next"][0]["tool"] == "doctor" and data["next"][0]["arguments"]["profile"] == "p1"
    is_error, _, data = await call(client, "install_or_select_tunnel_client", {})
    assert data["profiles"] == ["p1"]

    is_error, text, data = await call(client, "doctor", {"profile": "p1"})
    assert not is_error and data["result"] == "fail" and data["failed"]
    assert data["next"] == [{"tool": "doctor", "arguments": {"profile": "p1"},
                             "why": "check again after fixing what failed"}]
    assert text.startswith("doctor: FAIL (")
    assert all(not n["tool"].startswith("tunnel-client") for n in data["next"])


async def test_resources_and_prompts(client: Client) -> None:
    resources = await client.list_resources()
    uris = {str(r.uri) for r in resources.resources}
    assert "tunnel-client://help/quickstart" in uris and "tunnel-client://docs/quickstart.md" in uris
    read = await client.read_resource("tunnel-client://help/plugin")
    assert "codex plugin install" in read.contents[0].text  # type: ignore[union-attr]
    prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == [p.name for p in STARTER_PROMPTS] and len(STARTER_PROMPTS) == 5
    got = await client.get_prompt("connect-tunnel")
    assert got.messages[0].content.text == STARTER_PROMPTS[0].text  # type: ignore[union-attr]


async def test_instructions_state_the_supervision_rules(env: dict[str, str]) -> None:
    server = build_server(lambda: env)
    text = server.instructions or ""
    assert "connect_stdio_mcp" in text and "env:NAME" in text and "nohup" in text and "ready or healthy" in text
    assert len(text) < 800
