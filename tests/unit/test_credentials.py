"""Credential scoping (devservice.credentials) and the local registry's storage (digests only)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tunnel_core.devservice.credentials import (
    CALLER_TOKEN,
    RUNTIME_KEY,
    FrontDoorPolicy,
    Gate,
    digest,
    mint,
)
from tunnel_core.devservice.registry import LocalRegistry
from tunnel_core.devservice.store import CredentialRecord, TunnelRecord, TunnelStore

X, Y, Z = ("tunnel_" + c * 32 for c in "xyz")


def _registry(tmp: Path | None = None) -> LocalRegistry:
    return LocalRegistry(TunnelStore(tmp))


def _minted(registry: LocalRegistry, kind: str, tunnel_id: str, *, static: bool = True) -> str:
    cred_id, secret, dig = mint(kind)
    stored = anyio.run(lambda: registry.add_credential(
        CredentialRecord(id=cred_id, kind=kind, tunnel_id=tunnel_id, digest=dig), static_tunnel=static))
    assert stored
    return secret


@pytest.mark.parametrize(("key", "tunnel", "verdict"), [
    ("bound-x", X, "ok"), ("bound-x", Y, "forbidden"), ("unbound", X, "ok"), ("unbound", Y, "ok"),
    ("unbound", Z, "forbidden"), ("nobody", X, "invalid"), ("", X, "invalid"), ("caller-x", X, "invalid"),
])
def test_static_runtime_keys_are_scoped_to_their_tunnels(key: str, tunnel: str, verdict: str) -> None:
    gate = Gate(_registry(), unbound_runtime_keys={"unbound"}, unbound_tunnels=frozenset({X, Y}),
                bound_runtime_keys=[(X, "bound-x")], caller_tokens=[(X, "caller-x")])
    assert gate.runtime(key, tunnel) == verdict


def test_an_unbound_key_of_dev_tunnel_service_opens_every_tunnel() -> None:
    gate = Gate(_registry(), unbound_runtime_keys={"dev"}, unbound_tunnels=None)
    assert gate.runtime("dev", X) == gate.runtime("dev", Z) == "ok"


def test_minted_keys_open_their_tunnel_only_and_stop_when_revoked() -> None:
    registry = _registry()
    gate = Gate(registry)
    key = _minted(registry, RUNTIME_KEY, X)
    token = _minted(registry, CALLER_TOKEN, X)
    assert (gate.runtime(key, X), gate.runtime(key, Y), gate.runtime(token, X)) == ("ok", "forbidden", "invalid")
    assert gate.is_runtime_key(key) and not gate.is_runtime_key(token)
    listed = registry.credentials_of(RUNTIME_KEY, X)
    assert [c.tunnel_id for c in listed.values()] == [X]
    cred_id = next(iter(listed.values())).id
    assert anyio.run(registry.revoke_credential, CALLER_TOKEN, X, cred_id) is None  # wrong kind: untouched
    assert anyio.run(registry.revoke_credential, RUNTIME_KEY, Y, cred_id) is None  # wrong tunnel: untouched
    assert anyio.run(registry.revoke_credential, RUNTIME_KEY, X, cred_id) is not None
    assert gate.runtime(key, X) == "invalid"


@pytest.mark.parametrize(("policy", "tunnel", "token", "allowed"), [
    (FrontDoorPolicy(default=True), X, "", False),
    (FrontDoorPolicy(default=True), X, "caller-x", True),
    (FrontDoorPolicy(default=True), Y, "caller-x", False),  # a token of another tunnel
    (FrontDoorPolicy(default=True), X, "wrong", False),
    (FrontDoorPolicy(default=True, open_tunnels=frozenset({Y})), Y, "", True),
    (FrontDoorPolicy(default=False), X, "", True),
    (FrontDoorPolicy(default=False, closed_tunnels=frozenset({X})), X, "", False),
    (FrontDoorPolicy(default=False, closed_tunnels=frozenset({X})), Y, "", True),
])
def test_front_door_policy_and_caller_tokens(policy: FrontDoorPolicy, tunnel: str, token: str, allowed: bool) -> None:
    gate = Gate(_registry(), caller_tokens=[(X, "caller-x")], policy=policy)
    assert gate.caller_allowed(token, tunnel) is allowed


@pytest.mark.parametrize(("policy", "described"), [
    (FrontDoorPolicy(default=True), "token"), (FrontDoorPolicy(default=False), "none"),
    (FrontDoorPolicy(default=True, open_tunnels=frozenset({X})), "mixed"),
    (FrontDoorPolicy(default=False, closed_tunnels=frozenset({X})), "mixed"),
])
def test_the_policy_describes_itself_for_healthz(policy: FrontDoorPolicy, described: str) -> None:
    assert policy.describe() == described


def test_edge_admits_only_requests_whose_credential_is_valid() -> None:
    gate = Gate(_registry(), bound_runtime_keys=[(X, "rk-x")], caller_tokens=[(X, "ct-x")],
                policy=FrontDoorPolicy(default=True))
    assert gate.admits("front_door", [(b"x-tunnel-caller-token", b"ct-x")], X)
    assert not gate.admits("front_door", [], X)
    assert gate.admits("poll", [(b"authorization", b"Bearer rk-x")], X)
    assert not gate.admits("poll", [(b"authorization", b"Bearer rk-x")], Y)
    assert not gate.admits("poll", [(b"authorization", b"Basic rk-x")], X)


def test_minted_secrets_are_random_urlsafe_and_only_their_digest_is_stored(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    tunnel = anyio.run(registry.put_tunnel, TunnelRecord(id=X, name="x", organization_ids=("org_a",)))
    key = _minted(registry, RUNTIME_KEY, tunnel.id, static=False)
    token = _minted(registry, CALLER_TOKEN, tunnel.id, static=False)
    assert key.startswith("tcrk_") and token.startswith("tcct_") and len(key) >= 40 and key != token
    assert all(c.isalnum() or c in "_-" for c in key + token)  # what a runtime key may contain
    raw = (tmp_path / "tunnels.sqlite3").read_bytes()
    assert key.encode() not in raw and token.encode() not in raw
    assert digest(key).encode() in raw
    # Survives a restart, and deleting the tunnel deletes its credentials.
    again = _registry(tmp_path)
    assert Gate(again).runtime(key, X) == "ok"
    anyio.run(again.delete_tunnel, X)
    with sqlite3.connect(tmp_path / "tunnels.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM credentials").fetchone() == (0,)
    assert Gate(_registry(tmp_path)).runtime(key, X) == "invalid"


def test_a_credential_for_a_deleted_admin_tunnel_is_not_stored() -> None:
    registry = _registry()
    cred_id, _, dig = mint(RUNTIME_KEY)
    record = CredentialRecord(id=cred_id, kind=RUNTIME_KEY, tunnel_id=Y, digest=dig)
    assert anyio.run(lambda: registry.add_credential(record, static_tunnel=False)) is False
    assert registry.credentials_of(RUNTIME_KEY, Y) == {}


def test_a_schema_1_database_is_upgraded_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "tunnels.sqlite3") as db:
        db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "INSERT INTO meta VALUES ('schema_version', '1');"
                         "CREATE TABLE tunnels (id TEXT PRIMARY KEY, name TEXT NOT NULL, description TEXT NOT NULL,"
                         " creator TEXT NOT NULL DEFAULT '', organization_ids TEXT NOT NULL, workspace_ids TEXT"
                         " NOT NULL, tenant_ids TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);"
                         f"INSERT INTO tunnels VALUES ('{X}', 'old', '', '', '[\"org_a\"]', '[]', '[]', 1, 1);")
    registry = _registry(tmp_path)
    assert list(registry.tunnels) == [X]
    _minted(registry, RUNTIME_KEY, X, static=False)
    with sqlite3.connect(tmp_path / "tunnels.sqlite3") as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
