"""State root precedence, the JSON state files (atomic, 0600), admin profiles, history and the state lock."""

from __future__ import annotations

import json
import re
import stat
import threading
import time
from pathlib import Path

import pytest

from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.state.admin_profiles import (
    activate_admin_profile,
    delete_admin_profile,
    list_admin_profiles,
    resolve_admin_profile,
    set_admin_profile,
)
from tunnel_core.state.history import append_history, history_line
from tunnel_core.state.lock import state_lock
from tunnel_core.state.records import (
    AliasRecord,
    ProcessRecord,
    load_aliases,
    load_processes,
    save_aliases,
    save_processes,
)
from tunnel_core.state.root import resolve_state_root


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_root_precedence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    explicit = tmp_path / "explicit"
    assert resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(explicit), "HOME": str(home)}).path == explicit
    assert resolve_state_root({"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "xdg")}).path == (
        tmp_path / "xdg" / "tunnel-client")
    default = resolve_state_root({"HOME": str(home)}).path
    assert str(default).startswith(str(home)) and default.name == "tunnel-client"
    legacy = home / ".tunnel-client"
    legacy.mkdir()
    assert resolve_state_root({"HOME": str(home), "XDG_STATE_HOME": str(tmp_path / "xdg")}).path == legacy
    codex = tmp_path / "codex" / "tunnel-mcp"
    codex.mkdir(parents=True)
    assert resolve_state_root({"HOME": str(home), "CODEX_HOME": str(tmp_path / "codex")}).path == codex
    assert resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(explicit), "CODEX_HOME": str(tmp_path / "codex")}
                              ).path == explicit


def test_records_round_trip_sorted_0600_and_tolerate_unknown_fields(tmp_path: Path) -> None:
    root = resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(tmp_path / "s")})
    root.ensure_dirs()
    save_aliases(root, {
        "zeta": AliasRecord(alias="zeta", tunnel_id="tunnel_" + "z" * 32),
        "alpha": AliasRecord(alias="alpha", tunnel_id="tunnel_" + "a" * 32, organization_ids=["org_1"]),
    })
    assert mode(root.aliases_path) == 0o600
    raw = json.loads(root.aliases_path.read_text())
    assert list(raw) == ["alpha", "zeta"]
    raw["alpha"]["future_field"] = 1
    root.aliases_path.write_text(json.dumps(raw))
    loaded = load_aliases(root)
    assert loaded["alpha"].organization_ids == ["org_1"] and loaded["zeta"].tunnel_id.endswith("z" * 32)
    save_processes(root, {"alpha": ProcessRecord(alias="alpha", mode="process", pid=42, pid_start_time="1.5")})
    assert load_processes(root)["alpha"].active and mode(root.processes_path) == 0o600
    assert [p.name for p in root.path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"a": 3}'])
def test_corrupt_state_files_are_one_line_errors(tmp_path: Path, content: str) -> None:
    root = resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(tmp_path)})
    root.aliases_path.write_text(content)
    with pytest.raises(ConfigError, match=re.escape(str(root.aliases_path))):
        load_aliases(root)


def test_admin_profiles_store_references_only(tmp_path: Path) -> None:
    env = {"TUNNEL_CLIENT_STATE_DIR": str(tmp_path), "CONTROL_PLANE_BASE_URL": "http://127.0.0.1:9"}
    saved = set_admin_profile(env, "Prod_EU", admin_key="env:PROD_ADMIN_KEY")
    assert saved.profile.name == "prod-eu" and saved.active_profile == "prod-eu"
    assert saved.profile.control_plane_base_url == "http://127.0.0.1:9"
    assert saved.profile.admin_key == "env:PROD_ADMIN_KEY"
    path = Path(saved.path)
    assert mode(path) == 0o600 and json.loads(path.read_text())["active_profile"] == "prod-eu"
    with pytest.raises(ConfigError, match="env:NAME or file:/path"):
        set_admin_profile(env, "bad", admin_key="sk-" + "literal-admin-key-123")
    assert "sk-literal" not in path.read_text()

    second = set_admin_profile(env, "staging", base_url="https://staging.example.com/", url_path="/tunnel",
                               activate=False)
    assert second.active_profile == "prod-eu" and second.profile.admin_key == "env:OPENAI_ADMIN_KEY"
    assert second.profile.control_plane_base_url == "https://staging.example.com"
    listed = list_admin_profiles(env)
    assert [(p.name, p.active) for p in listed.profiles] == [("prod-eu", True), ("staging", False)]
    assert activate_admin_profile(env, "staging").active_profile == "staging"
    with pytest.raises(UsageError, match="not known"):
        activate_admin_profile(env, "nope")
    deleted = delete_admin_profile(env, "staging")
    assert deleted.deleted_profile == "staging" and deleted.active_profile == "prod-eu"


def test_admin_profile_in_use_by_an_alias_cannot_be_deleted(tmp_path: Path) -> None:
    env = {"TUNNEL_CLIENT_STATE_DIR": str(tmp_path)}
    set_admin_profile(env, "team")
    root = resolve_state_root(env)
    save_aliases(root, {"svc": AliasRecord(alias="svc", admin_profile="team")})
    with pytest.raises(UsageError, match="still referenced by alias svc"):
        delete_admin_profile(env, "team")


def test_resolve_admin_profile_precedence_and_persistence(tmp_path: Path) -> None:
    env = {"TUNNEL_CLIENT_STATE_DIR": str(tmp_path), "TUNNEL_MCP_ADMIN_PROFILE": "from-env",
           "CONTROL_PLANE_BASE_URL": "http://127.0.0.1:1"}
    root = resolve_state_root(env)
    root.ensure_dirs()
    eff = resolve_admin_profile(root, env)
    assert (eff.name, eff.base_url, eff.admin_key) == ("from-env", "http://127.0.0.1:1", "env:OPENAI_ADMIN_KEY")
    eff = resolve_admin_profile(root, env, fallback_name="previous", admin_key="file:/k")
    assert (eff.name, eff.admin_key) == ("previous", "file:/k")
    eff = resolve_admin_profile(root, env, requested="explicit", fallback_name="previous")
    assert eff.name == "explicit"
    again = resolve_admin_profile(root, {**env, "CONTROL_PLANE_BASE_URL": "http://other:2"}, fallback_name="previous")
    assert again.base_url == "http://127.0.0.1:1" and again.admin_key == "file:/k"  # stored beats env
    assert list_admin_profiles(env).active_profile == "explicit"
    with pytest.raises(ConfigError):
        resolve_admin_profile(root, env, admin_key="literal-key")


def test_history_lines(tmp_path: Path) -> None:
    root = resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(tmp_path)})
    append_history(root, "connect", "demo", "tunnel_" + "a" * 32, "mode=process\npid=1")
    append_history(root, "rm", "demo", "")
    lines = root.history_path.read_text().splitlines()
    assert re.fullmatch(r"- \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ action=connect alias=demo tunnel_id=tunnel_a{32} "
                        r"detail=mode=process pid=1", lines[0])
    assert lines[1].endswith("action=rm alias=demo tunnel_id=-")
    assert mode(root.history_path) == 0o600
    assert history_line("stop", "x", "t").endswith("tunnel_id=t")


def test_state_lock_serialises_holders_and_times_out(tmp_path: Path) -> None:
    root = resolve_state_root({"TUNNEL_CLIENT_STATE_DIR": str(tmp_path)})
    order: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with state_lock(root):
            order.append("first")
            held.set()
            release.wait(10)
            order.append("first-releasing")

    t = threading.Thread(target=holder)
    t.start()
    assert held.wait(10)
    with pytest.raises(ConfigError, match="held by another"):
        with state_lock(root, timeout=0.05):
            pass
    release.set()
    started = time.monotonic()
    with state_lock(root, timeout=10):
        order.append("second")
    t.join(10)
    assert order == ["first", "first-releasing", "second"]
    assert time.monotonic() - started < 10
