"""``admin-profiles list|set|activate|delete`` through the CLI: references only, 0600, text and JSON."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from tests.support.admin_helpers import base_env, cli, cli_subprocess


def test_admin_profiles_cli_round_trip(tmp_path: Path) -> None:
    env = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"))
    empty = cli(["admin-profiles", "list"], env)
    assert empty.code == 0 and empty.out == f"No admin profiles found in {tmp_path / 'state' / 'admin_profiles.yaml'}\n"

    saved = cli(["admin-profiles", "set", "prod", "--control-plane-base-url", "https://cp.example.com",
                 "--admin-key", "env:PROD_ADMIN_KEY"], env)
    assert (saved.code, saved.out) == (0, "Saved admin profile prod (https://cp.example.com)\n")
    staged = cli(["admin-profiles", "--json", "set", "Staging", "--activate=false", "--control-plane-url-path", "/x"],
                 env).json()
    assert set(staged) == {"profile", "active_profile", "path", "state_root"}
    assert staged["profile"] == {
        "name": "staging", "control_plane_base_url": "https://api.openai.com", "control_plane_url_path": "/x",
        "admin_key": "env:OPENAI_ADMIN_KEY", "updated_at": staged["profile"]["updated_at"], "path": staged["path"],
        "active": False}
    assert staged["active_profile"] == "prod" and staged["state_root"] == str(tmp_path / "state")

    listed = cli(["admin-profiles", "list"], env)
    assert listed.out == "prod\thttps://cp.example.com\t(active)\nstaging\thttps://api.openai.com\n"
    assert cli(["admin-profiles", "activate", "staging"], env).out == "Activated admin profile staging\n"
    assert cli(["admin-profiles", "list", "--json"], env).json()["active_profile"] == "staging"
    assert cli(["admin-profiles", "delete", "prod"], env).out == "Deleted admin profile prod\n"

    path = tmp_path / "state" / "admin_profiles.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(json.loads(path.read_text())["profiles"]) == ["staging"]


def test_admin_profiles_refuse_literal_keys_and_unknown_names(tmp_path: Path) -> None:
    env = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"))
    literal = "sk-" + "admin-literal-0123456789abcdef"  # built at run time: a fake key, not a secret
    r = cli_subprocess(["admin-profiles", "set", "p", "--admin-key", literal], env)
    assert r.code == 1 and "must be an env:NAME or file:/path reference" in r.err
    assert literal not in r.err + r.out
    assert not (tmp_path / "state" / "admin_profiles.yaml").exists()
    missing = cli(["admin-profiles", "activate", "ghost"], env)
    assert missing.code == 1 and "admin profile ghost is not known" in missing.err
    assert cli(["admin-profiles", "delete", "ghost"], env).code == 1
