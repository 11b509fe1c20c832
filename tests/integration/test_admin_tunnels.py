"""Admin tunnel CRUD end to end: the CLI (in-process and as a subprocess) against a real local tunnel service."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.admin_helpers import (
    Keys,
    Result,
    Service,
    assert_no_secrets,
    base_env,
    cli,
    cli_subprocess,
    tunnel_service,
)

TUNNEL_ID = re.compile(r"^tunnel_[a-z0-9]{32}$")
Run = Callable[..., Result]
ERROR_KEYS = {"message", "method", "path", "status_code", "request_id", "code", "type", "mitigation"}


@pytest.fixture
def outputs() -> list[str]:
    return []


@pytest.fixture
def run(service: Service, keys: Keys, tmp_path: Path, outputs: list[str]) -> Iterator[Run]:
    """``run(*argv, key=..., **env)``: in-process CLI against ``service``; every output is scanned for keys."""

    def call(*argv: str, key: str | None = "admin", subprocess: bool = False, **extra: str) -> Result:
        env = base_env(tmp_path, CONTROL_PLANE_BASE_URL=service.base_url, **extra)
        if key is not None:
            env["OPENAI_ADMIN_KEY"] = {"admin": keys.admin, "scoped": keys.scoped_admin, "runtime": keys.runtime}[key]
        result = cli_subprocess(argv, env) if subprocess else cli(argv, env)
        outputs.extend([result.out, result.err])
        return result

    yield call
    assert_no_secrets(keys, texts=outputs)


def create(run: Run, name: str, *scope: str, key: str = "admin") -> dict[str, object]:
    r = run("admin", "--json", "tunnels", "create", "--name", name, "--description", f"{name} tunnel",
            *(scope or ("--organization-id", "org_main")), key=key)
    assert r.code == 0, r.err + r.out
    data: dict[str, object] = r.json()
    return data


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_create_get_list_update_delete_round_trip(run: Run, service: Service, keys: Keys) -> None:
    made = create(run, "round-trip", "--organization-id", "org_main,org_two", "--workspace-id", "ws_main")
    tid = str(made["id"])
    assert TUNNEL_ID.match(tid)
    assert made["name"] == "round-trip" and made["description"] == "round-trip tunnel"
    assert made["organization_ids"] == ["org_main", "org_two"] and made["workspace_ids"] == ["ws_main"]
    assert str(made["request_id"]).startswith("req_") and str(made["creator"]).startswith("admin_key_")
    assert "tenant_ids" not in made  # empty lists are omitted, as the reference client does

    # created tunnels are pollable at once with the runtime key
    poll = httpx2.get(f"{service.base_url}/v1/tunnels/{tid}/poll?limit=1&timeout_ms=0", headers=auth(keys.runtime),
                      trust_env=False)
    assert poll.status_code == 204

    got = run("admin", "--json", "tunnels", "get", tid).json()
    assert {k: got[k] for k in ("id", "name", "organization_ids", "workspace_ids")} == {
        "id": tid, "name": "round-trip", "organization_ids": ["org_main", "org_two"], "workspace_ids": ["ws_main"]}

    listed = run("admin", "tunnels", "list", "--json", "--organization-id", "org_two").json()
    assert [t["id"] for t in listed["tunnels"]] == [tid] and listed["request_id"].startswith("req_")
    assert run("admin", "--json", "tunnels", "list", "--workspace-id", "ws_none").json()["tunnels"] == []

    renamed = run("admin", "--json", "tunnels", "update", tid, "--name", "renamed").json()
    assert renamed["name"] == "renamed" and renamed["organization_ids"] == ["org_main", "org_two"]
    rescoped = run("admin", "--json", "tunnels", "update", tid, "--organization-id", "org_three").json()
    assert rescoped["organization_ids"] == ["org_three"] and rescoped["workspace_ids"] == ["ws_main"]
    meta = httpx2.get(f"{service.base_url}/v1/tunnels/{tid}", headers=auth(keys.runtime), trust_env=False).json()
    assert meta == {"id": tid, "name": "renamed", "description": "round-trip tunnel"}

    refused = run("admin", "--json", "tunnels", "delete", tid)
    assert refused.code == 1 and refused.json() == {"error": {"message": "refusing to delete without --confirm"}}
    deleted = run("admin", "--json", "tunnels", "delete", tid, "--confirm")
    assert deleted.code == 0 and deleted.json()["id"] == tid
    gone = run("admin", "--json", "tunnels", "get", tid)
    assert gone.code == 1
    err = gone.json()["error"]
    assert (err["status_code"], err["code"], err["method"]) == (404, "tunnel_not_found", "GET")
    assert err["path"] == f"/v1/tunnels/{tid}" and err["request_id"].startswith("req_")
    assert httpx2.get(f"{service.base_url}/v1/tunnels/{tid}/poll?limit=1&timeout_ms=0", headers=auth(keys.runtime),
                      trust_env=False).status_code == 404


def test_text_output_matches_the_reference_layout(run: Run) -> None:
    r = run("admin", "tunnels", "create", "--name", "texty", "--description", "plain words",
            "--organization-id", "org_main", "--workspace-id", "ws_a", "--workspace-id", "ws_b")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert re.fullmatch(r"Tunnel tunnel_[a-z0-9]{32}", lines[0])
    assert lines[1:3] == ["  Name: texty", "  Description: plain words"]
    assert lines[3].startswith("  Creator: admin_key_")
    assert lines[4:] == ["  Organizations: org_main", "  Workspaces: ws_a, ws_b",
                         "Note: wait 25-30 seconds before expecting a newly created tunnel to be active and ready."]


def test_get_falls_back_to_the_runtime_key_and_sees_metadata_only(run: Run, keys: Keys) -> None:
    tid = str(create(run, "lookup")["id"])
    r = run("admin", "--json", "tunnels", "get", tid, key=None, CONTROL_PLANE_API_KEY="unknown_key_value_123")
    assert r.code == 1 and r.json()["error"]["code"] == "invalid_api_key"
    ok = run("admin", "--json", "tunnels", "get", tid, key=None, OPENAI_API_KEY=keys.runtime)
    assert ok.code == 0, ok.out
    assert {k: v for k, v in ok.json().items() if k != "request_id"} == {
        "id": tid, "name": "lookup", "description": "lookup tunnel"}
    missing = run("admin", "--json", "tunnels", "get", tid, key=None)
    assert missing.code == 1 and "requires a runtime or admin key" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("who", "argv", "status", "code"),
    [
        ("runtime", ["create", "--name", "x", "--description", "y", "--organization-id", "org_main"], 403,
         "tunnel_management_permission_required"),
        ("runtime", ["list", "--organization-id", "org_main"], 403, "tunnel_management_permission_required"),
        ("bogus", ["create", "--name", "x", "--description", "y", "--organization-id", "org_main"], 401,
         "invalid_api_key"),
        ("scoped", ["create", "--name", "x", "--description", "y", "--organization-id", "org_main"], 403,
         "tunnel_management_permission_required"),
        ("scoped", ["create", "--name", "x", "--description", "y", "--organization-id", "org_scoped,org_main"], 403,
         "tunnel_management_permission_required"),
        ("scoped", ["list", "--organization-id", "org_main"], 403, "tunnel_management_permission_required"),
    ],
)
def test_permission_errors_are_json_with_exit_1(run: Run, keys: Keys, tmp_path: Path, who: str, argv: list[str],
                                                status: int, code: str) -> None:
    extra = {"BOGUS_KEY": "bogus_" + "k" * 24}
    key_flag = {"runtime": "env:RUNTIME", "bogus": "env:BOGUS_KEY", "scoped": "env:SCOPED"}[who]
    r = run("admin", "--json", "--admin-key", key_flag, "tunnels", *argv, key=None,
            RUNTIME=keys.runtime, SCOPED=keys.scoped_admin, **extra)
    assert r.code == 1 and r.err == ""
    err = r.json()["error"]
    assert set(err) == ERROR_KEYS
    assert (err["status_code"], err["code"]) == (status, code)
    assert err["path"] == "/v1/tunnels" and err["request_id"].startswith("req_") and err["mitigation"]
    assert err["message"].startswith(f"request {err['method']} /v1/tunnels failed: {status} {code}")


def test_a_scoped_admin_key_manages_only_its_organization(run: Run) -> None:
    own = create(run, "scoped-own", "--organization-id", "org_scoped", key="scoped")
    other = create(run, "other-org", "--organization-id", "org_main")
    listed = run("admin", "--json", "tunnels", "list", "--organization-id", "org_scoped", key="scoped").json()
    assert [t["id"] for t in listed["tunnels"]] == [own["id"]]
    hidden = run("admin", "--json", "tunnels", "get", str(other["id"]), key="scoped")
    assert hidden.code == 1 and hidden.json()["error"]["status_code"] == 404
    blocked = run("admin", "--json", "tunnels", "delete", str(other["id"]), "--confirm", key="scoped")
    assert blocked.code == 1 and blocked.json()["error"]["code"] == "tunnel_not_found"
    move = run("admin", "--json", "tunnels", "update", str(own["id"]), "--organization-id", "org_main", key="scoped")
    assert move.json()["error"]["code"] == "tunnel_management_permission_required"
    # the unscoped admin key sees everything
    assert run("admin", "--json", "tunnels", "get", str(own["id"])).code == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "--organization-id", "org_main", "--workspace-id", "ws"],
         "provide exactly one of --organization-id, --workspace-id, or --tenant-id"),
        (["list"], "provide exactly one of --organization-id, --workspace-id, or --tenant-id"),
        (["create", "--name", "x", "--description", "y"], "at least one of --organization-id or --workspace-id is required"),
        (["create", "--description", "y", "--organization-id", "o"], "name is required (set --name)"),
        (["create", "--name", "x", "--organization-id", "o"], "description is required (set --description)"),
        (["create", "--name", "x", "--description", "y", "--organization-id", "o,o"], "duplicate organization-id values: o"),
        (["update", "tunnel_" + "0" * 32], "provide at least one field to update"),
    ],
)
def test_usage_errors_are_json_in_json_mode(run: Run, argv: list[str], message: str) -> None:
    r = run("admin", "--json", "tunnels", *argv)
    assert (r.code, r.json()) == (1, {"error": {"message": message}})
    text = run("admin", "tunnels", *argv)
    assert (text.code, text.out, text.err) == (1, "", f"tunnel-client: {message}\n")


def test_a_literal_admin_key_is_refused_and_not_echoed(run: Run, keys: Keys) -> None:
    r = run("admin", "--json", "--admin-key", keys.admin, "tunnels", "list", "--organization-id", "o", key=None)
    assert (r.code, r.json()) == (1, {"error": {"message": "admin-key must use env: or file: prefixes"}})
    none = run("admin", "tunnels", "list", "--organization-id", "o", key=None)
    assert none.code == 1 and "admin key is required; set --admin-key or OPENAI_ADMIN_KEY" in none.err


def test_subprocess_json_success_and_failure(run: Run, tmp_path: Path, keys: Keys) -> None:
    keyfile = tmp_path / "admin.key"
    keyfile.write_text(keys.admin + "\n")
    keyfile.chmod(0o600)
    made = run("admin", "tunnels", "create", "--json", "--admin-key", f"file:{keyfile}", "--name", "sub",
               "--description", "via subprocess", "--workspace-id", "ws_sub", key=None, subprocess=True)
    assert made.code == 0, made.err
    tid = made.json()["id"]
    assert made.json()["workspace_ids"] == ["ws_sub"]
    bad = run("admin", "--json", "tunnels", "get", "tunnel_" + "f" * 32, subprocess=True)
    assert bad.code == 1 and bad.json()["error"]["code"] == "tunnel_not_found"
    assert run("admin", "--json", "tunnels", "get", tid, subprocess=True).code == 0


def test_service_errors_use_the_envelope_with_a_request_id(service: Service, keys: Keys) -> None:
    client = httpx2.Client(base_url=service.base_url, trust_env=False, timeout=10)
    cases = [
        client.post("/v1/tunnels", content=b"[]", headers=auth(keys.admin)),
        client.post("/v1/tunnels", json={"name": "x", "organization_ids": ["o"], "color": "red"},
                    headers=auth(keys.admin)),
        client.post("/v1/tunnels", json={"name": " ", "organization_ids": ["o"]}, headers=auth(keys.admin)),
        client.post("/v1/tunnels", json={"name": "x", "organization_ids": [f"o{i}" for i in range(11)]},
                    headers=auth(keys.admin)),
        client.get("/v1/tunnels?organization_id=a&workspace_id=b", headers=auth(keys.admin)),
        client.get("/v1/tunnels/tunnel_NOPE", headers=auth(keys.admin)),
        client.delete("/v1/tunnels/" + "tunnel_" + "1" * 32, headers=auth(keys.runtime)),
    ]
    expected = [(400, "invalid_json_payload"), (400, "unknown_parameter"), (400, "invalid_value"),
                (400, "tunnel_principal_limit_exceeded"), (400, "missing_required_parameter"),
                (400, "invalid_tunnel_id_format"), (403, "tunnel_management_permission_required")]
    for resp, (status, code) in zip(cases, expected, strict=True):
        assert resp.status_code == status, resp.text
        body = resp.json()
        assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == code
        assert resp.headers["x-request-id"].startswith("req_")
    ok = client.post("/v1/tunnels", json={"name": "raw", "tenant_ids": ["ten_1"]}, headers=auth(keys.admin))
    assert ok.status_code == 200 and ok.headers["x-request-id"].startswith("req_")
    assert ok.json()["tenant_ids"] == ["ten_1"] and ok.json()["description"] == ""
    client.close()


def test_tunnels_persist_across_service_restarts_with_a_data_dir(tmp_path: Path, keys: Keys) -> None:
    data = tmp_path / "data"
    outputs: list[str] = []

    def admin(svc: Service, *argv: str) -> Result:
        r = cli(["admin", "--json", *argv],
                base_env(tmp_path, CONTROL_PLANE_BASE_URL=svc.base_url, OPENAI_ADMIN_KEY=keys.admin))
        outputs.extend([r.out, r.err])
        return r

    with tunnel_service(tmp_path / "first", keys, data_dir=data) as first:
        kept = admin(first, "tunnels", "create", "--name", "kept", "--description", "survives",
                     "--organization-id", "org_p").json()
        dropped = admin(first, "tunnels", "create", "--name", "dropped", "--description", "goes",
                        "--organization-id", "org_p").json()
        assert admin(first, "tunnels", "delete", dropped["id"], "--confirm").code == 0
        admin(first, "tunnels", "update", kept["id"], "--description", "survives restarts")
    with tunnel_service(tmp_path / "second", keys, data_dir=data) as second:
        again = admin(second, "tunnels", "get", kept["id"]).json()
        assert {k: again[k] for k in ("id", "name", "description", "organization_ids", "creator")} == {
            "id": kept["id"], "name": "kept", "description": "survives restarts", "organization_ids": ["org_p"],
            "creator": kept["creator"]}
        assert [t["id"] for t in admin(second, "tunnels", "list", "--organization-id", "org_p").json()["tunnels"]] == [
            kept["id"]]
        assert admin(second, "tunnels", "get", dropped["id"]).json()["error"]["status_code"] == 404
        poll = httpx2.get(f"{second.base_url}/v1/tunnels/{kept['id']}/poll?limit=1&timeout_ms=0",
                          headers=auth(keys.runtime), trust_env=False)
        assert poll.status_code == 204  # re-registered with the broker at startup
        logs = [first.output(), second.output()]
    assert_no_secrets(keys, texts=outputs + logs, roots=[data])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--admin-api-key", "literal_admin_key_value_0123"], "--admin-api-key: give a reference"),
        (["--admin-api-key", "env:RUNTIME_KEY"], "admin keys must differ from the runtime key"),
        (["--admin-api-key", "env:ADMIN_KEY", "--data-dir", "{blocker}"], "exists and is not a directory; give a directory path"),
    ],
)
def test_tunnel_service_admin_flags_are_checked_before_serving(tmp_path: Path, keys: Keys, args: list[str],
                                                               message: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    env = base_env(tmp_path, ADMIN_KEY=keys.admin, RUNTIME_KEY=keys.runtime)
    argv = ["dev", "tunnel-service", "--listen", "127.0.0.1:0", "--runtime-api-key", "env:RUNTIME_KEY",
            *[a.format(blocker=blocker) for a in args]]
    r = cli_subprocess(argv, env)
    assert r.code == 1 and message in r.err and r.out == ""
    assert "literal_admin_key_value_0123" not in r.err
    assert_no_secrets(keys, texts=[r.out, r.err])
