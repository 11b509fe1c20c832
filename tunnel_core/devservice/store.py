"""Tunnels and tunnel credentials managed through the local tunnel service's admin API.

In memory by default; with a data directory they are also kept in SQLite
(``<data_dir>/tunnels.sqlite3``, 0600) so they survive restarts. The in-memory maps are the
read path; every change is written through under a lock, so calls may come from worker
threads. Key values are never stored: ``creator`` is a short fingerprint of the admin key, and
runtime keys and caller tokens are kept as SHA-256 digests only (``CredentialRecord``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DB_NAME = "tunnels.sqlite3"
SCHEMA_VERSION = 2  # 2: credentials
SCOPES = ("organization_id", "workspace_id", "tenant_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tunnels (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    creator TEXT NOT NULL DEFAULT '',
    organization_ids TEXT NOT NULL,
    workspace_ids TEXT NOT NULL,
    tenant_ids TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    digest TEXT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    tunnel_id TEXT NOT NULL,
    creator TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
"""
KINDS = ("runtime_key", "caller_token")


@dataclass(frozen=True, slots=True)
class TunnelRecord:
    id: str
    name: str
    description: str = ""
    creator: str = ""
    organization_ids: tuple[str, ...] = ()
    workspace_ids: tuple[str, ...] = ()
    tenant_ids: tuple[str, ...] = ()
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The management API's tunnel object."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description}
        if self.creator:
            out["creator"] = self.creator
        out["organization_ids"] = list(self.organization_ids)
        out["workspace_ids"] = list(self.workspace_ids)
        out["tenant_ids"] = list(self.tenant_ids)
        return out

    def in_scope(self, scope: str, value: str) -> bool:
        ids = {"organization_id": self.organization_ids, "workspace_id": self.workspace_ids,
               "tenant_id": self.tenant_ids}[scope]
        return value in ids


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A runtime key or caller token bound to one tunnel; only the SHA-256 digest of the secret is kept."""

    id: str
    kind: str  # one of KINDS
    tunnel_id: str
    digest: str = field(repr=False)
    creator: str = ""
    created_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The admin API's credential object (never the secret, which only the create answer carries)."""
        return {"object": f"tunnel.{self.kind}", "id": self.id, "tunnel_id": self.tunnel_id,
                "created_at": int(self.created_at), "creator": self.creator}

    def dump(self) -> str:
        """JSON for a shared registry (the digest included, never the secret)."""
        return json.dumps({"id": self.id, "kind": self.kind, "tunnel_id": self.tunnel_id, "digest": self.digest,
                           "creator": self.creator, "created_at": self.created_at}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str) -> CredentialRecord:
        d = json.loads(raw)
        return cls(id=d["id"], kind=d["kind"], tunnel_id=d["tunnel_id"], digest=d["digest"],
                   creator=d.get("creator", ""), created_at=float(d.get("created_at", 0.0)))


class StoreError(Exception):
    """The data directory or its database cannot be used."""


class TunnelStore:
    def __init__(self, data_dir: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._tunnels: dict[str, TunnelRecord] = {}
        self._credentials: dict[str, CredentialRecord] = {}  # digest -> record
        self._db: sqlite3.Connection | None = None
        self.path: Path | None = None
        if data_dir is not None:
            self._open(data_dir)

    def _open(self, data_dir: Path) -> None:
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path = data_dir / DB_NAME
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer tunnel-client (schema {row[0]})")
            for r in self._db.execute("SELECT id, name, description, creator, organization_ids, workspace_ids, "
                                      "tenant_ids, created_at, updated_at FROM tunnels ORDER BY created_at"):
                self._tunnels[r[0]] = TunnelRecord(
                    id=r[0], name=r[1], description=r[2], creator=r[3], organization_ids=tuple(json.loads(r[4])),
                    workspace_ids=tuple(json.loads(r[5])), tenant_ids=tuple(json.loads(r[6])), created_at=r[7],
                    updated_at=r[8],
                )
            for r in self._db.execute("SELECT digest, id, kind, tunnel_id, creator, created_at FROM credentials"):
                self._credentials[r[0]] = CredentialRecord(id=r[1], kind=r[2], tunnel_id=r[3], digest=r[0],
                                                           creator=r[4], created_at=r[5])
            if row is not None and int(row[0]) < SCHEMA_VERSION:
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except FileExistsError:
            raise StoreError(f"{data_dir} exists and is not a directory; give a directory path") from None
        except OSError as exc:
            words = exc.strerror or str(exc)
            raise StoreError(f"data directory {data_dir}: {words[:1].lower() + words[1:]}") from None
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"data directory {data_dir}: cannot use its database ({exc})") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection | None]:
        with self._lock:
            if self._db is None:
                yield None
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def persistent(self) -> bool:
        return self._db is not None

    def all(self) -> list[TunnelRecord]:
        return sorted(self._tunnels.values(), key=lambda t: (t.created_at, t.id))

    def get(self, tunnel_id: str) -> TunnelRecord | None:
        return self._tunnels.get(tunnel_id)

    def list_by(self, scope: str, value: str) -> list[TunnelRecord]:
        return [t for t in self.all() if t.in_scope(scope, value)]

    def put(self, record: TunnelRecord) -> TunnelRecord:
        """Insert or replace a tunnel (write-through when persistent)."""
        record = replace(record, updated_at=time.time())
        with self._tx() as db:
            if db is not None:
                db.execute(
                    "INSERT OR REPLACE INTO tunnels (id, name, description, creator, organization_ids, workspace_ids, "
                    "tenant_ids, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.name, record.description, record.creator,
                     json.dumps(list(record.organization_ids)), json.dumps(list(record.workspace_ids)),
                     json.dumps(list(record.tenant_ids)), record.created_at, record.updated_at),
                )
            self._tunnels[record.id] = record
        return record

    def delete(self, tunnel_id: str) -> TunnelRecord | None:
        """Delete a tunnel and every credential bound to it."""
        with self._tx() as db:
            if db is not None:
                db.execute("DELETE FROM tunnels WHERE id = ?", (tunnel_id,))
                db.execute("DELETE FROM credentials WHERE tunnel_id = ?", (tunnel_id,))
            for digest in [d for d, c in self._credentials.items() if c.tunnel_id == tunnel_id]:
                del self._credentials[digest]
            return self._tunnels.pop(tunnel_id, None)

    def credentials(self) -> list[CredentialRecord]:
        return list(self._credentials.values())

    def add_credential(self, record: CredentialRecord) -> None:
        with self._tx() as db:
            if db is not None:
                db.execute("INSERT INTO credentials (digest, id, kind, tunnel_id, creator, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (record.digest, record.id, record.kind, record.tunnel_id,
                                                         record.creator, record.created_at))
            self._credentials[record.digest] = record

    def revoke_credential(self, kind: str, tunnel_id: str, credential_id: str) -> CredentialRecord | None:
        with self._tx() as db:
            found = next((c for c in self._credentials.values()
                          if c.id == credential_id and c.kind == kind and c.tunnel_id == tunnel_id), None)
            if found is None:
                return None
            if db is not None:
                db.execute("DELETE FROM credentials WHERE digest = ?", (found.digest,))
            del self._credentials[found.digest]
            return found

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
