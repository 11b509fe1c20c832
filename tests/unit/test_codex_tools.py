"""The agent tool server in-process (mcp.Client over memory streams): schemas, annotations, secrets,
errors with a next step, results equal to the CLI's --json, resources and prompts."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agent_tools.server import ALL_SPECS, build_server
from tunnel_core.cli.main import main
from tunnel_core.codex.prompts import STARTER_PROMPTS

pytestmark = pytest.mark.anyio

REFERENCE_TOOLS = {"install_or_select_tunnel_client", "create_tunnel_runtime", "connect_stdio_mcp",
                   "list_runtime_aliases", "runtime_status", "stop_runtime"}
SECRET = "sk-" + "Q" * 32


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TUNNEL_CLIENT_STATE_DIR": str(tmp_path / "state"),
            "TUNNEL_CLIENT_PROFILE_DIR": str(tmp_path / "profiles"), "XDG_CONFIG_HOME": str(tmp_path / ".config")}


@pytest.fixture
async def client(env: dict[str, str]) -> AsyncIterator[Client]:
    async with Client(build_server(lambda: env)) as c:
        yield c


def cli_json(argv: list[str], env: dict[str, str]) -> Any:
    out, err = io.StringIO(), io.StringIO()
    main(argv, env=env, stdout=out, stderr=err)
    return json.loads(out.getvalue())


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


async def test_every_tool_has_a_strict_schema_annotations_and_a_description(client: Client) -> None:
    tools = await client.list_tools()
    names = {t.name for t in tools.tools}
    assert REFERENCE_TOOLS <= names
    assert {"quickstart", "help", "init_profile", "list_profiles", "doctor", "connect_runtime", "list_runtimes",
            "remove_runtime", "admin_tunnels_list", "admin_tunnels_get", "admin_tunnels_create",
            "admin_tunnels_update", "admin_tunnels_delete"} <= names
    for tool in tools.tools:
        assert tool.input_schema["type"] == "object"
        for obj in _objects(tool.input_schema) or [tool.input_schema]:
            assert obj.get("additionalProperties") is False, (tool.name, obj)
        a = tool.annotations
        assert a is not None and None not in (a.read_only_hint, a.destructive_hint, a.idempotent_hint,
                                              a.open_world_hint), tool.name
        assert tool.description and tool.title and tool.output_schema
        if a.read_only_hint:
            assert not a.destructive_hint
    destructive = {t.name for t in tools.tools if t.annotations and t.annotations.destructive_hint}
    assert {"remove_runtime", "admin_tunnels_delete"} <= destructive


def test_reference_tool_inputs_are_accepted() -> None:
    specs = {s.name: s for s in ALL_SPECS}
    expected = {
        "install_or_select_tunnel_client": {"tunnel_client_bin", "persist_hint", "allow_path_lookup"},
        "create_tunnel_runtime": {"alias", "organization_id", "workspace_id", "admin_profile", "control_plane_base_url",
                                  "control_plane_url_path", "name", "description", "tunnel_client_bin"},
        "connect_stdio_mcp": {"alias", "mcp_command", "runtime_api_key", "tunnel_id", "organization_id",
                              "workspace_id", "admin_profile", "control_plane_base_url", "control_plane_url_path",
                              "name", "description", "tunnel_client_bin"},
        "list_runtime_aliases": {"organization_id", "workspace_id", "tenant_id", "admin_profile",
                                 "control_plane_base_url", "control_plane_url_path", "tunnel_client_bin"},
        "runtime_status": {"alias", "tunnel_client_bin"},
        "stop_runtime": {"alias", "tunnel_client_bin"},
    }
    for name, fields in expected.items():
        assert fields <= set(specs[name].input_model.model_fields), name


@pytest.mark.parametrize(("tool", "args"), [
    ("connect_runtime", {"alias": "a", "mcp_command": "srv", "runtime_api_key": SECRET}),
    ("connect_runtime", {"alias": "a", "mcp_command": "srv", "admin_key": "adm_" + "Q" * 30}),
    ("connect_runtime", {"alias": "a", "mcp_command": "server --token " + "Q" * 20}),
    ("connect_runtime", {"alias": "a", "mcp_server_url": "http://me:" + "Q" * 12 + "@127.0.0.1/mcp"}),
    ("connect_stdio_mcp", {"alias": "a", "mcp_command": f"srv OPENAI_API_KEY={'Q' * 20}"}),
    ("admin_tunnels_create", {"name": "n", "description": f"uses {SECRET}", "organization_ids": ["o"]}),
    ("admin_tunnels_list", {"organization_id": "o", "admin_key": "Q" * 30}),
    ("init_profile", {"tunnel_id": "tunnel_" + "0" * 32, "mcp_command": "srv", "api_key_ref": "Q" * 30}),
    ("admin_profile_set", {"name": "p", "admin_key": "Bearer " + "Q" * 30}),
])
async def test_secrets_are_refused_without_being_echoed(client: Client, tool: str, args: dict[str, Any]) -> None:
    is_error, text, _ = await call(client, tool, args)
    assert is_error
    assert "Q" * 12 not in text, "a rejected secret was echoed back"
    assert "Next step: pass keys only as env:NAME or file:/path references" in text


@pytest.mark.parametrize(("tool", "args"), [
    ("connect_runtime", {"alias": "a", "mcp_command": "srv", "control_plane_base_url": "https://evil.example"}),
    ("admin_tunnels_list", {"organization_id": "o", "control_plane_base_url": "http://127.0.0.1:9"}),
    ("admin_profile_set", {"name": "p", "control_plane_base_url": "https://api.openai.com.evil.example"}),
    ("init_profile", {"tunnel_id": "tunnel_" + "0" * 32, "mcp_command": "srv",
                      "control_plane_base_url": "https://attacker.example"}),
])
async def test_keys_are_only_sent_to_trusted_control_planes(client: Client, tool: str, args: dict[str, Any]) -> None:
    is_error, text, _ = await call(client, tool, args)
    assert is_error and "is not trusted" in text and "Next step:" in text


async def test_the_configured_control_plane_is_trusted(env: dict[str, str]) -> None:
    env["CONTROL_PLANE_BASE_URL"] = "http://127.0.0.1:9"
    async with Client(build_server(lambda: env)) as c:
        is_error, text, data = await call(c, "admin_profile_set", {"name": "local", "control_plane_base_url":
                                                                   "http://127.0.0.1:9", "admin_key": "env:ADMIN"})
    assert not is_error, text
    assert data["profile"]["control_plane_base_url"] == "http://127.0.0.1:9"
    assert data["profile"]["admin_key"] == "env:ADMIN"


async def test_unknown_inputs_and_errors_carry_a_next_step(client: Client) -> None:
    is_error, text, _ = await call(client, "runtime_status", {"alias": "demo", "verbose": True})
    assert is_error and "verbose" in text and "Next step:" in text
    is_error, text, _ = await call(client, "runtime_status", {"alias": "ghost"})
    assert is_error and "alias ghost is not known" in text
    assert "Next step: call list_runtimes" in text
    is_error, text, _ = await call(client, "runtime_status", {"alias": "x", "tunnel_client_bin": "/usr/bin/true"})
    assert is_error and "not the tunnel-client this plugin was installed from" in text
    is_error, text, _ = await call(client, "connect_runtime", {"alias": "x", "mcp_command": "srv"})
    assert is_error and "CONTROL_PLANE_API_KEY" in text and "Next step: Codex forwards only" in text
    is_error, text, _ = await call(client, "admin_tunnels_delete", {"tunnel_id": "tunnel_x", "confirm": False})
    assert is_error and "confirm" in text


async def test_results_equal_the_cli_json(client: Client, env: dict[str, str], tmp_path: Path) -> None:
    is_error, text, data = await call(client, "list_runtimes", {})
    assert not is_error and text.startswith("Aliases in ")
    assert data == cli_json(["runtimes", "list", "--json"], env)

    is_error, _, data = await call(client, "help", {"topic": "plugin"})
    assert not is_error and data["topic"] == cli_json(["help", "plugin", "--json"], env)

    is_error, text, data = await call(client, "init_profile", {"tunnel_id": "tunnel_" + "1" * 32, "profile": "p1",
                                                               "mcp_server_url": "http://127.0.0.1:9/mcp",
                                                               "health_listen_addr": "127.0.0.1:0"})
    assert not is_error, text
    assert data["path"] == str(tmp_path / "profiles" / "p1.yaml") and data["api_key_ref"] == "env:CONTROL_PLANE_API_KEY"
    is_error, text, data = await call(client, "list_profiles", {})
    assert [p["name"] for p in data["profiles"]] == ["p1"]
    assert data["profiles"] == cli_json(["profiles", "list", "--json"], env)

    is_error, text, data = await call(client, "doctor", {"profile": "p1"})
    expected = cli_json(["doctor", "--profile", "p1", "--json"], env)
    assert not is_error and data["result"] == expected["result"] == "fail"
    assert [c["id"] for c in data["checks"]] == [c["id"] for c in expected["checks"]]
    assert text.startswith("doctor: FAIL (")


async def test_quickstart_and_select(client: Client) -> None:
    is_error, _, data = await call(client, "quickstart", {})
    assert not is_error and "runtime_status" in " ".join(data["agent_flow"]) and data["text"]
    is_error, _, data = await call(client, "install_or_select_tunnel_client", {})
    assert not is_error and data["selection_source"] == "this_installation"


async def test_resources_and_prompts(client: Client) -> None:
    resources = await client.list_resources()
    uris = {str(r.uri) for r in resources.resources}
    assert "tunnel-client://help/quickstart" in uris and "tunnel-client://docs/quickstart.md" in uris
    read = await client.read_resource("tunnel-client://help/plugin")
    assert "codex plugin install" in read.contents[0].text  # type: ignore[union-attr]
    prompts = await client.list_prompts()
    assert [p.name for p in prompts.prompts] == [p.name for p in STARTER_PROMPTS]
    got = await client.get_prompt("connect-local-server")
    assert got.messages[0].content.text == STARTER_PROMPTS[0].text  # type: ignore[union-attr]


async def test_instructions_state_the_supervision_rules(env: dict[str, str]) -> None:
    server = build_server(lambda: env)
    text = server.instructions or ""
    assert "runtime_status" in text and "env:NAME" in text and "nohup" in text
    assert len(text) < 1200
