"""Admin client logic: key resolution, scope flags, proxy choice, error rendering (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnel_core.controlplane.admin import (
    AdminRequestError,
    AdminTunnel,
    AdminTunnelList,
    clean_ids,
    connection_from_flags,
    mitigation_for,
    proxy_from_env,
    read_only_key,
    resolve_admin_key,
)
from tunnel_core.devservice.admin import AdminKey, split_admin_key_spec
from tunnel_core.errors import ConfigError, UsageError

ADMIN = "adm_unit_0123456789abcdef"


def test_admin_key_comes_from_a_reference_or_openai_admin_key(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text(ADMIN + "\n")
    assert resolve_admin_key(f"file:{keyfile}", {}) == ADMIN
    assert resolve_admin_key("env:MINE", {"MINE": ADMIN}) == ADMIN
    assert resolve_admin_key("", {"OPENAI_ADMIN_KEY": ADMIN}) == ADMIN
    with pytest.raises(ConfigError, match="admin-key must use env: or file: prefixes") as info:
        resolve_admin_key(ADMIN, {})
    assert ADMIN not in str(info.value)
    with pytest.raises(ConfigError, match="OPENAI_ADMIN_KEY must be non-empty"):
        resolve_admin_key("", {"OPENAI_ADMIN_KEY": " "})
    with pytest.raises(ConfigError, match="admin key is required; set --admin-key or OPENAI_ADMIN_KEY"):
        resolve_admin_key("", {})
    with pytest.raises(ConfigError, match="MISSING"):
        resolve_admin_key("env:MISSING", {})


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ("", {"OPENAI_ADMIN_KEY": "adminkey"}, "adminkey"),
        ("", {"CONTROL_PLANE_API_KEY": "runtimekey", "OPENAI_API_KEY": "openaikey"}, "runtimekey"),
        ("", {"OPENAI_API_KEY": "openaikey"}, "openaikey"),
        ("env:OPENAI_ADMIN_KEY", {"CONTROL_PLANE_API_KEY": "runtimekey"}, "runtimekey"),
        ("env:OTHER", {"OTHER": "otherkey", "CONTROL_PLANE_API_KEY": "runtimekey"}, "otherkey"),
    ],
)
def test_read_only_get_falls_back_to_runtime_keys(flag: str, env: dict[str, str], expected: str) -> None:
    assert read_only_key(flag, env) == expected


def test_read_only_get_without_any_key_names_every_option() -> None:
    with pytest.raises(ConfigError, match="CONTROL_PLANE_API_KEY, OPENAI_API_KEY, OPENAI_ADMIN_KEY, or --admin-key"):
        read_only_key("", {})


def test_ids_split_commas_trim_and_reject_duplicates() -> None:
    assert clean_ids(["org_a, org_b", " org_c "], "organization-id") == ["org_a", "org_b", "org_c"]
    assert clean_ids(None, "organization-id") == []
    with pytest.raises(UsageError, match="duplicate organization-id values: org_a"):
        clean_ids(["org_a", "org_a,org_b"], "organization-id")


def test_connection_flags_beat_environment() -> None:
    env = {"CONTROL_PLANE_BASE_URL": "https://env.example.com/", "CONTROL_PLANE_URL_PATH": "/envpath",
           "CA_BUNDLE": "/env/ca.pem"}
    conn = connection_from_flags(env, base_url=None, url_path=None, ca_bundle=None, key="k")
    assert (conn.base_url, conn.url_path, conn.ca_bundle) == ("https://env.example.com", "/envpath", "/env/ca.pem")
    conn = connection_from_flags(env, base_url="http://127.0.0.1:5", url_path="/", ca_bundle="", key=ADMIN)
    assert (conn.base_url, conn.url_path, conn.ca_bundle) == ("http://127.0.0.1:5", "", "")
    assert ADMIN not in repr(conn)
    with pytest.raises(ConfigError, match=r"control-plane\.base-url"):
        connection_from_flags({}, base_url="api.openai.com", url_path=None, ca_bundle=None, key="k")
    with pytest.raises(ConfigError, match="url-path"):
        connection_from_flags({}, base_url=None, url_path="nope", ca_bundle=None, key="k")


@pytest.mark.parametrize(
    ("url", "env", "expected"),
    [
        ("https://api.openai.com", {"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ("https://api.openai.com", {"https_proxy": "http://p:1", "NO_PROXY": "openai.com"}, None),
        ("http://127.0.0.1:8080", {"HTTP_PROXY": "http://proxy:3128"}, None),
        ("http://svc.internal", {"HTTP_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ("http://svc.internal", {"HTTPS_PROXY": "http://proxy:3128"}, None),
    ],
)
def test_proxy_comes_from_the_injected_environment(url: str, env: dict[str, str], expected: str | None) -> None:
    assert proxy_from_env(url, env) == expected


def _err(**kw: object) -> AdminRequestError:
    base: dict[str, object] = {"method": "POST", "path": "/v1/tunnels", "status_code": 403, "body": "",
                               "request_id": "req_1", "code": "tunnel_management_permission_required",
                               "error_type": "permission_error", "message": "no permission"}
    base.update(kw)
    return AdminRequestError(**base)  # type: ignore[arg-type]


def test_request_error_text_and_json_object() -> None:
    err = _err()
    assert str(err) == ("request POST /v1/tunnels failed: 403 tunnel_management_permission_required: no permission "
                        f"mitigation: {mitigation_for('tunnel_management_permission_required')} (x-request-id: req_1)")
    assert err.json_error() == {"error": {
        "message": str(err), "method": "POST", "path": "/v1/tunnels", "status_code": 403, "request_id": "req_1",
        "code": "tunnel_management_permission_required", "type": "permission_error",
        "mitigation": mitigation_for("tunnel_management_permission_required"),
    }}
    bare = _err(code="", error_type="", message="", request_id="", body="upstream exploded", status_code=500)
    assert str(bare) == "request POST /v1/tunnels failed: 500 upstream exploded"
    assert set(bare.json_error()["error"]) == {"message", "method", "path", "status_code"}


def test_delete_not_exposed_gets_its_own_hint() -> None:
    err = _err(method="DELETE", path="/v1/tunnels/tunnel_x", status_code=404, code="", message="",
               body='{"detail":"Invalid URL (DELETE /v1/tunnels/tunnel_x)"}', request_id="")
    assert "delete is not exposed on this control-plane base URL yet" in str(err)


def test_tunnel_output_omits_empty_fields_like_the_reference() -> None:
    t = AdminTunnel(id="tunnel_1", name="n", description="d", organization_ids=["org"], workspace_ids=[],
                    request_id="req_9")
    assert t.output() == {"id": "tunnel_1", "name": "n", "description": "d", "organization_ids": ["org"],
                          "request_id": "req_9"}
    listed = AdminTunnelList(tunnels=[t], request_id="req_10").output()
    assert listed == {"tunnels": [{"id": "tunnel_1", "name": "n", "description": "d", "organization_ids": ["org"]}],
                      "request_id": "req_10"}


def test_admin_key_specs_of_the_tunnel_service() -> None:
    assert split_admin_key_spec("env:ADMIN") == (None, "env:ADMIN")
    assert split_admin_key_spec("org_1=env:ADMIN") == ("org_1", "env:ADMIN")
    assert split_admin_key_spec("org_1=file:/k=v") == ("org_1", "file:/k=v")
    assert split_admin_key_spec("file:/a=b") == (None, "file:/a=b")
    key = AdminKey(ADMIN, "org_1")
    assert ADMIN not in repr(key) and ADMIN not in key.fingerprint


def test_an_unreadable_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    from tunnel_core.controlplane.admin import AdminClient

    conn = connection_from_flags({}, base_url="https://cp.example.com", url_path=None,
                                 ca_bundle=str(tmp_path / "missing.pem"), key=ADMIN)
    with pytest.raises(ConfigError, match="--ca-bundle: cannot load"):
        AdminClient(conn)
