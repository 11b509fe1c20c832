"""Logging setup: ``json`` or ``struct-text`` records with stable field names, secrets redacted."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}

_REDACTIONS = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [REDACTED]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-[REDACTED]"),
    (re.compile(r"(?i)((?:api_key|access_token|refresh_token|id_token|client_secret|password|secret)=)[^&\s]+"),
     r"\1[REDACTED]"),
)
_SECRET_FIELD = re.compile(r"(?i)(authorization|cookie|token|secret|password|api_key|apikey)")


def redact(text: str) -> str:
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STD_ATTRS or key.startswith("_"):
            continue
        if _SECRET_FIELD.search(key) and key not in ("tunnel_request_id",):
            value = "[REDACTED]"
        elif isinstance(value, str):
            value = redact(value)
        out[key] = value
    return out


class _Context(logging.Filter):
    """Adds process-wide fields (tunnel_id, client_instance_id) to every record."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in self.fields.items():
            if not hasattr(record, k):
                setattr(record, k, v)
        if not hasattr(record, "component"):
            name = record.name
            record.component = name.rsplit(".", 1)[-1] if name.startswith("tunnel_client.") else name
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.replace("WARNING", "WARN"),
            "msg": redact(record.getMessage()),
        }
        data.update(_fields(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["error_type"] = getattr(record.exc_info[0], "__name__", "Exception")
        return json.dumps(data, default=str, ensure_ascii=False)


def _quote(v: Any) -> str:
    s = str(v)
    return json.dumps(s, ensure_ascii=False) if (not s or any(c in s for c in ' ="\n')) else s


class StructTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"time={ts}", f"level={record.levelname.replace('WARNING', 'WARN')}",
                 f"msg={_quote(redact(record.getMessage()))}"]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        return " ".join(parts)


def setup_logging(
    *, level: str = "info", fmt: str = "struct-text", file: str = "", context: dict[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once for the process."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if file:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8", buffering=1))
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else StructTextFormatter())
    handler.addFilter(_Context(context or {}))
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore", "mcp", "uvicorn.error", "sse_starlette"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
