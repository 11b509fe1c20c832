"""The support bundle behind ``/api/logs/export``: one redacted tar.gz an operator can attach to a ticket.

Contents (reference names): ``manifest.json``, ``README.txt``, ``tunnel-client.runtime.yaml``
(redacted argv, the relevant environment, client version, the config file and the effective
settings), ``tunnel-client.logs.ndjson`` (the ring buffer's events in the window),
``tunnel-client.metrics.prom`` (a /metrics snapshot) and ``admin/status.json``,
``admin/system.json``, ``admin/oauth.json``, ``admin/harpoon.json``; plus ``admin/traffic.json`` (recent calls,
no payloads).
Every value passes through :func:`tunnel_core.logs.redact_value` on its way in.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import tarfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tunnel_core import CLIENT_NAME, USER_AGENT, __version__
from tunnel_core.logs import REDACTED, is_secret_key, ndjson, redact, redact_value

DEFAULT_MINUTES = 30
MAX_MINUTES = 24 * 60
RUNTIME_FILE = "tunnel-client.runtime.yaml"
METRICS_FILE = "tunnel-client.metrics.prom"
LOGS_FILE = "tunnel-client.logs.ndjson"

_RELEVANT_ENV = frozenset({
    "ALLOW_REMOTE_UI", "CA_BUNDLE", "HEALTH_LISTEN_ADDR", "HEALTH_UNIX_SOCKET", "HEALTH_URL_FILE", "HTTP_PROXY",
    "HTTPS_PROXY", "NO_PROXY", "OPENAI_API_KEY", "OPEN_WEB_UI", "PID_FILE", "PROXY_CHECK_INTERVAL",
})
_RELEVANT_PREFIXES = ("ADMIN_UI_", "CLOUDFLARED_", "CONTROL_PLANE_", "HARPOON_", "LOG_", "MCP_", "OPENAI_TUNNEL_",
                      "TUNNEL_", "OTEL_")
_ENV_REF = re.compile(r"(?i)\benv:([A-Za-z_][A-Za-z0-9_]*)")
_REFERENCE = re.compile(r"^(env|file):\S+$", re.IGNORECASE)
# Proxy URLs and OTLP headers may carry credentials inline; their values are always masked.
_ALWAYS_MASKED_ENV = frozenset({"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"})

README = """tunnel-client support bundle

Made by the operator UI (/api/logs/export). Everything in it was redacted before it was
written: credentials in messages, headers, URLs, query strings, config values and environment
variables are replaced by [REDACTED].

  manifest.json                  index of the files, the time window and the runtime summary
  tunnel-client.runtime.yaml     redacted argv, relevant environment, client version,
                                 the config file as read, and the effective settings
  tunnel-client.logs.ndjson      log events from the in-memory buffer, one JSON object a line
  tunnel-client.metrics.prom     a /metrics snapshot taken when the bundle was made
  admin/status.json              /api/status at export time
  admin/system.json              /api/system at export time
  admin/oauth.json               /api/oauth at export time
  admin/harpoon.json             /api/harpoon at export time (status, targets, recent calls)
  admin/traffic.json             recent relayed calls (time, channel, method, status, latency; no payloads)
"""


def window_minutes(raw: str | None) -> int:
    """``?minutes=`` as a whole number in 1..1440; missing or invalid values mean 30."""
    try:
        value = int(raw or "")
    except ValueError:
        return DEFAULT_MINUTES
    if value <= 0:
        return DEFAULT_MINUTES
    return min(value, MAX_MINUTES)


def go_duration(seconds: int) -> str:
    """Format like Go's time.Duration.String() for whole seconds (``30m0s``, ``1h0m0s``)."""
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ---------------------------------------------------------------------------- runtime snapshot


def _redact_arg(flag: str, value: str) -> str:
    if is_secret_key(flag.lstrip("-")) and not _REFERENCE.match(value.strip()):
        return REDACTED
    return redact(value)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """argv with secret-named flag values masked (references like env:NAME kept) and text scrubbed."""
    out: list[str] = []
    pending = ""
    for arg in argv:
        if pending:
            out.append(_redact_arg(pending, arg))
            pending = ""
            continue
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if eq:
                out.append(f"{name}={_redact_arg(name, value)}")
                continue
            out.append(arg)
            if is_secret_key(name.lstrip("-")):
                pending = name
            continue
        out.append(redact(arg))
    return out


def relevant_environment(environ: Mapping[str, str], referenced: set[str]) -> dict[str, str]:
    """The environment variables that shape the client, secrets masked.

    ``referenced``: variables named by ``env:NAME`` references; those hold secrets by
    construction and are listed with their value masked.
    """
    out: dict[str, str] = {}
    for key in sorted(environ):
        upper = key.upper()
        if not (upper in _RELEVANT_ENV or upper.startswith(_RELEVANT_PREFIXES) or key in referenced):
            continue
        value = environ[key]
        if key in referenced or upper in _ALWAYS_MASKED_ENV or is_secret_key(key) or upper.endswith("_KEY"):
            out[key] = REDACTED if value else ""
        else:
            out[key] = redact(value)
    return out


def _config_contents(value: Any, key: str = "") -> Any:
    """Redact a parsed YAML config: secret-named values masked unless they are env:/file: references."""
    if key and is_secret_key(key):
        if isinstance(value, str) and _REFERENCE.match(value.strip()):
            return value
        return REDACTED if value not in (None, "") else value
    if isinstance(value, Mapping):
        return {str(k): _config_contents(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_config_contents(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def runtime_snapshot(settings: Any, argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``runtime`` section of the manifest and ``tunnel-client.runtime.yaml``."""
    import yaml

    referenced = {m.group(1) for a in argv for m in _ENV_REF.finditer(a)}
    source = str(getattr(settings, "api_key_source", ""))
    referenced |= {m.group(1) for m in _ENV_REF.finditer(source)}
    actual: dict[str, Any] | None = None
    path = str(getattr(settings, "profile_path", "") or "")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
            referenced |= {m.group(1) for m in _ENV_REF.finditer(text)}
            try:
                contents: Any = _config_contents(yaml.safe_load(text))
            except yaml.YAMLError as exc:
                contents = {"parse_error": redact(str(exc).splitlines()[0] if str(exc) else "invalid YAML")}
        except OSError as exc:
            contents = {"read_error": redact(exc.strerror or "unreadable")}
        actual = {"path": redact(path), "contents": contents}
    snap: dict[str, Any] = {
        "argv": redact_argv(argv),
        "environment": relevant_environment(environ, referenced),
        "client": {"client_name": CLIENT_NAME, "semantic_version": __version__, "version": __version__,
                   "user_agent": USER_AGENT},
    }
    if actual is not None:
        snap["actual_config"] = actual
    snap["effective_config"] = effective_config(settings)
    return snap


def _plain(value: Any) -> Any:
    """Settings values as YAML/JSON-safe data: dataclasses to mappings, sequences to lists, the rest str."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.name != "api_key" and f.repr}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def effective_config(settings: Any) -> dict[str, Any]:
    """Every setting as resolved at start-up; the API key (and any field hidden from repr) never included."""
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return {}
    data: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        if f.name == "api_key" or not f.repr:
            continue
        value = getattr(settings, f.name)
        if f.name == "bindings":
            value = [{"channel": b.channel, "kind": b.kind, "target": b.target} for b in value]
        data[f.name] = _plain(value)
    result: dict[str, Any] = redact_value(data)
    return result


# ---------------------------------------------------------------------------- archive


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False).encode() + b"\n"


def build_bundle(
    *,
    events: Sequence[Mapping[str, Any]],
    now: float,
    minutes: int,
    log_buffer_capacity: int,
    runtime: Mapping[str, Any],
    metrics_text: bytes,
    admin: Mapping[str, Any],
) -> bytes:
    """The tar.gz bytes; ``admin`` maps a name (status, system, oauth, traffic, harpoon) to its API body."""
    import yaml

    window = minutes * 60
    runtime = redact_value(runtime)
    admin_files = {f"admin/{name}.json": redact_value(body) for name, body in admin.items()}
    files = ["manifest.json", "README.txt", RUNTIME_FILE, LOGS_FILE, METRICS_FILE, *admin_files]
    manifest = {
        "generated_at": _rfc3339(now),
        "window_start": _rfc3339(now - window),
        "window_end": _rfc3339(now),
        "window": go_duration(window),
        "event_count": len(events),
        "log_buffer_capacity": log_buffer_capacity,
        "metrics_bytes": len(metrics_text),
        "redacted": True,
        "files": files,
        "runtime": runtime,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "manifest.json", _json(manifest), now)
        _add(tar, "README.txt", README.encode(), now)
        _add(tar, RUNTIME_FILE, yaml.safe_dump(dict(runtime), sort_keys=False, allow_unicode=True).encode(), now)
        _add(tar, LOGS_FILE, ndjson(redact_value(list(events))), now)
        _add(tar, METRICS_FILE, metrics_text, now)
        for name, body in admin_files.items():
            _add(tar, name, _json(body), now)
    return buf.getvalue()


def bundle_filename(now: float) -> str:
    return "tunnel-client-logs-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + ".tar.gz"
