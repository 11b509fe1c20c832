"""``aliases.yaml`` (alias -> remote tunnel and local profile) and ``processes.yaml`` (alias -> launched runtime).

Both are JSON objects keyed by normalised alias. Unknown fields are ignored on read so files
written by other versions load; records are rewritten sorted by alias.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tunnel_core.errors import ConfigError
from tunnel_core.state.jsonfile import load_json_object, save_json
from tunnel_core.state.root import StateRoot, utc_now

Mode = Literal["process", "tmux", "stopped", ""]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AliasRecord(_Record):
    alias: str
    tunnel_id: str = ""
    name: str = ""
    admin_profile: str = ""
    description: str = ""
    organization_ids: list[str] = []
    workspace_ids: list[str] = []
    tenant_ids: list[str] = []
    config_path: str = ""
    profile_name: str = ""
    profile_dir: str = ""
    profile_path: str = ""
    health_url_file: str = ""
    updated_at: str = ""


class ProcessRecord(_Record):
    alias: str
    tunnel_id: str = ""
    config_path: str = ""
    health_url_file: str = ""
    target_kind: str = ""  # server_url | command
    target_value: str = ""
    command: str = ""
    started_at: str = ""
    admin_profile: str = ""
    profile_name: str = ""
    profile_dir: str = ""
    profile_path: str = ""
    mode: Mode = ""
    session_name: str = ""
    pid: int = 0
    # Identity of ``pid`` at launch: a live process with another start time is a reused pid, not ours.
    pid_start_time: str = ""
    pid_executable: str = ""
    restart_policy: Literal["no", "on-failure"] = "no"
    log_path: str = ""

    @property
    def active(self) -> bool:
        """The record says a runtime was launched and not stopped since."""
        return self.mode not in ("", "stopped")


R = TypeVar("R", bound=_Record)


def _load(path: Path, model: type[R]) -> dict[str, R]:
    out: dict[str, R] = {}
    for key, raw in load_json_object(path).items():
        if not isinstance(raw, dict):
            raise ConfigError(f"state file {path}: entry {key!r} is not an object; repair or remove it")
        try:
            out[key] = model.model_validate({"alias": key, **raw})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"state file {path}: entry {key!r} field {field}: {err['msg']}; repair or remove it") from None
    return out


def _save(path: Path, records: dict[str, Any]) -> None:
    save_json(path, {k: records[k].model_dump(mode="json") for k in sorted(records)})


def load_aliases(root: StateRoot) -> dict[str, AliasRecord]:
    return _load(root.aliases_path, AliasRecord)


def save_aliases(root: StateRoot, records: dict[str, AliasRecord]) -> None:
    _save(root.aliases_path, records)


def load_processes(root: StateRoot) -> dict[str, ProcessRecord]:
    return _load(root.processes_path, ProcessRecord)


def save_processes(root: StateRoot, records: dict[str, ProcessRecord]) -> None:
    _save(root.processes_path, records)


def stamp(record: AliasRecord) -> AliasRecord:
    return record.model_copy(update={"updated_at": utc_now()})
