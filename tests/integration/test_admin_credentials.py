"""``tunnel-client admin runtime-keys|caller-tokens create|list|revoke``: the CLI against a real tunnel service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.admin_helpers import Keys, Result, Service, assert_no_secrets, base_env, cli

Run = Callable[..., Result]


@pytest.fixture
def run(service: Service, keys: Keys, tmp_path: Path) -> Iterator[Run]:
    """In-process CLI against ``service``; no admin or runtime key may appear in any output."""
    outputs: list[str] = []

    def call(*argv: str, key: str = "admin") -> Result:
        env = base_env(tmp_path, CONTROL_PLANE_BASE_URL=service.base_url,
                       OPENAI_ADMIN_KEY={"admin": keys.admin, "scoped": keys.scoped_admin}[key])
        result = cli(argv, env)
        outputs.extend([result.out, result.err])
        return result

    yield call
    assert_no_secrets(keys, texts=outputs)


def _tunnel(run: Run, org: str = "org_main", key: str = "admin") -> str:
    r = run("admin", "--json", "tunnels", "create", "--name", "creds", "--description", "d", "--organization-id", org,
            key=key)
    assert r.code == 0, r.out + r.err
    return str(r.json()["id"])


def test_runtime_keys_create_list_revoke_in_json_and_the_key_works_only_until_revoked(
    run: Run, service: Service,
) -> None:
    tunnel = _tunnel(run)
    created = run("admin", "--json", "runtime-keys", "create", "--tunnel-id", tunnel)
    assert created.code == 0, created.out + created.err
    key = created.json()
    assert list(key)[:3] == ["id", "key", "tunnel_id"]  # decisive fields first
    assert key["id"].startswith("rk_") and key["key"].startswith("tcrk_") and key["tunnel_id"] == tunnel
    assert key["object"] == "tunnel.runtime_key" and key["request_id"].startswith("req_")
    poll = f"{service.base_url}/v1/tunnels/{tunnel}/poll?timeout_ms=0"
    assert httpx2.get(poll, headers={"Authorization": f"Bearer {key['key']}"}, trust_env=False).status_code == 204

    listed = run("admin", "--json", "runtime-keys", "list", "--tunnel-id", tunnel).json()
    assert [k["id"] for k in listed["runtime_keys"]] == [key["id"]]
    assert "key" not in listed["runtime_keys"][0] and key["key"] not in str(listed)
    text = run("admin", "runtime-keys", "list", "--tunnel-id", tunnel)
    assert text.out.startswith(key["id"] + "\tcreated ") and key["key"] not in text.out

    revoked = run("admin", "--json", "runtime-keys", "revoke", key["id"], "--tunnel-id", tunnel).json()
    assert revoked["revoked"] is True and revoked["id"] == key["id"]
    assert httpx2.get(poll, headers={"Authorization": f"Bearer {key['key']}"}, trust_env=False).status_code == 401
    again = run("admin", "--json", "runtime-keys", "revoke", key["id"], "--tunnel-id", tunnel)
    err = again.json()["error"]
    assert again.code == 1 and (err["status_code"], err["code"]) == (404, "runtime_key_not_found")
    assert "runtime-keys list" in err["mitigation"]


def test_caller_tokens_in_text_mode_print_the_token_once(run: Run) -> None:
    tunnel = _tunnel(run)
    created = run("admin", "caller-tokens", "create", "--tunnel-id", tunnel)
    assert created.code == 0, created.err
    lines = created.out.splitlines()
    assert lines[0].startswith("Caller token ct_") and tunnel in lines[0]
    token = lines[1].rsplit(" ", 1)[-1]
    assert token.startswith("tcct_") and "X-Tunnel-Caller-Token" in created.out
    token_id = lines[0].split()[2]
    listed = run("admin", "caller-tokens", "list", "--tunnel-id", tunnel)
    assert listed.out.startswith(token_id) and token not in listed.out
    revoked = run("admin", "caller-tokens", "revoke", token_id, "--tunnel-id", tunnel)
    assert revoked.out.strip() == f"Caller token {token_id} of tunnel {tunnel} revoked"


def test_a_scoped_admin_key_cannot_mint_for_another_organisations_tunnel(run: Run) -> None:
    other = _tunnel(run, "org_main")
    refused = run("admin", "--json", "runtime-keys", "create", "--tunnel-id", other, key="scoped")
    err = refused.json()["error"]
    assert refused.code == 1 and (err["status_code"], err["code"]) == (404, "tunnel_not_found")
    own = _tunnel(run, "org_scoped", key="scoped")
    assert run("admin", "--json", "caller-tokens", "create", "--tunnel-id", own, key="scoped").code == 0


def test_a_missing_tunnel_id_is_a_usage_error(run: Run) -> None:
    r = run("admin", "--json", "runtime-keys", "create")
    assert (r.code, r.json()) == (1, {"error": {"message": "tunnel id is required (set --tunnel-id)"}})
