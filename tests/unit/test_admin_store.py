"""The tunnel store of the local tunnel service: in memory, or SQLite in a data directory (0600)."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tunnel_core.devservice.store import StoreError, TunnelRecord, TunnelStore


def rec(n: int, **kw: object) -> TunnelRecord:
    return TunnelRecord(id=f"tunnel_{n:032d}", name=f"t{n}", created_at=float(n), **kw)  # type: ignore[arg-type]


def test_memory_store_lists_by_scope_in_creation_order() -> None:
    store = TunnelStore()
    store.put(rec(2, organization_ids=("org_a",)))
    store.put(rec(1, organization_ids=("org_a", "org_b"), workspace_ids=("ws",)))
    store.put(rec(3, tenant_ids=("ten",)))
    assert not store.persistent
    assert [t.name for t in store.list_by("organization_id", "org_a")] == ["t1", "t2"]
    assert [t.name for t in store.list_by("workspace_id", "ws")] == ["t1"]
    assert [t.name for t in store.list_by("tenant_id", "ten")] == ["t3"]
    assert store.delete(rec(3).id) is not None and store.get(rec(3).id) is None
    assert store.delete(rec(3).id) is None


def test_sqlite_store_survives_reopen_and_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = TunnelStore(data)
    first = store.put(rec(1, description="d", creator="admin_key_abc", organization_ids=("org_a",)))
    store.put(rec(2, workspace_ids=("ws_1",)))
    store.put(replace(first, name="renamed", organization_ids=("org_b",)))
    store.delete(rec(2).id)
    store.close()
    db = data / "tunnels.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and stat.S_IMODE(data.stat().st_mode) == 0o700
    reopened = TunnelStore(data)
    assert [t.to_json() for t in reopened.all()] == [{
        "id": rec(1).id, "name": "renamed", "description": "d", "creator": "admin_key_abc",
        "organization_ids": ["org_b"], "workspace_ids": [], "tenant_ids": [],
    }]


def test_unusable_data_directory_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="exists and is not a directory; give a directory path"):
        TunnelStore(blocker)
