"""Logging: ``json`` or ``struct-text`` records with stable field names, secrets redacted everywhere.

Every record carries the process-wide fields (``tunnel_id``, ``client_instance_id``) and a
``component`` derived from the logger name (``tunnel_client.dispatcher`` -> ``dispatcher``).
The same redaction (:func:`redact`, :func:`redact_value`) is applied to log lines, to the
in-memory ring buffer the operator UI reads (:class:`LogBuffer`), to the UI's JSON APIs and
to the support bundle, so a secret that slips into a message is masked on every surface.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

_STD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
# Levels an operator may switch to at run time (reference: /api/log-level supported_levels).
RUNTIME_LEVELS = ("debug", "info", "warn")
REDACTED = "[REDACTED]"
# Third-party loggers that stay at WARNING or above whatever the relay's own level is.
NOISY_LOGGERS = ("httpx2", "httpcore2", "httpx", "httpcore", "mcp", "uvicorn.error", "sse_starlette")

# ---------------------------------------------------------------------------- throttling


class LogThrottle:
    """At most ``rate`` lines a second per key (bursts up to ``burst``), so a flood of refused requests
    cannot flood the log; each line let through says how many like it were dropped before it.

    Keys must come from a small closed set (a status code, a route name): the table is capped anyway.
    """

    MAX_KEYS = 64

    def __init__(self, rate: float = 2.0, burst: int = 20) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float, int]] = {}  # key -> (tokens, stamp, suppressed)

    def admit(self, key: str, now: float | None = None) -> int | None:
        """None when this line should be dropped; otherwise how many lines of this key were dropped since the last."""
        now = time.monotonic() if now is None else now
        tokens, stamp, dropped = self._buckets.get(key, (self.burst, now, 0))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1.0:
            if key in self._buckets or len(self._buckets) < self.MAX_KEYS:
                self._buckets[key] = (tokens, now, dropped + 1)
            return None
        if key in self._buckets or len(self._buckets) < self.MAX_KEYS:
            self._buckets[key] = (tokens - 1.0, now, 0)
        return dropped


# ---------------------------------------------------------------------------- redaction

_SECRET_WORDS = r"api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|id[_-]?token|client[_-]?secret|password|secret"
# (pattern, replacement), compiled on the first redaction: a relay that logs nothing before it is
# ready does not compile them at start.
_REDACTION_RULES: tuple[tuple[str, str], ...] = (
    # Header lines as they appear in raw dumps or error text: keep the name, drop the value.
    (r"(?i)\b(x-tunnel-shard-token|set-cookie|cookie|proxy-authorization|authorization|x-api-key)"
     r"(\s*:\s*)[^\r\n]+", r"\1\2" + REDACTED),
    (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}", r"\1 " + REDACTED),
    (r"\bsk-[A-Za-z0-9_-]{8,}", "sk-" + REDACTED),
    # JSON or Python-repr members with a secret name and a quoted value.
    (r"(?i)([\"'](?:" + _SECRET_WORDS + r"|code|authorization|cookie|set-cookie|x-tunnel-shard-token"
     r"|shard[_-]?token)[\"']\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2", r"\1\2" + REDACTED + r"\2"),
    # Query strings and form bodies: ?access_token=..., &code=..., password=...
    (r"(?i)\b((?:" + _SECRET_WORDS + r"|code|token)\s*=\s*)[^&\s\"'<>,;]+", r"\1" + REDACTED),
    # URL userinfo: scheme://user:password@host or scheme://token@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"']+@", r"\1" + REDACTED + "@"),
)
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = ()
_SECRET_KEY_EXACT = frozenset({
    "authorization", "proxy_authorization", "cookie", "set_cookie", "x_tunnel_shard_token", "shard_token",
    "api_key", "apikey", "x_api_key", "access_token", "refresh_token", "id_token", "client_secret", "password",
    "passwd", "secret", "token", "private_key", "client_key_pem",
})
_SECRET_KEY_SUFFIXES = ("_token", "_secret", "_password", "_api_key", "_apikey", "_private_key")
# Literal secret values this process knows (the runtime API key): masked wherever they occur.
_KNOWN_SECRETS: set[str] = set()


def add_secret_value(value: str) -> None:
    """Mask this exact value wherever it appears in anything redacted from now on (8+ characters)."""
    if value and len(value) >= 8:
        _KNOWN_SECRETS.add(value)


def is_secret_key(key: str) -> bool:
    """True for field, header, env or query names whose value is a credential."""
    k = key.strip().lower().replace("-", "_").replace(".", "_")
    return k in _SECRET_KEY_EXACT or k.endswith(_SECRET_KEY_SUFFIXES)


def redact(text: str) -> str:
    """Mask credentials inside free text (messages, URLs, header dumps, JSON fragments)."""
    if not text:
        return text
    for secret in _KNOWN_SECRETS:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _REDACTIONS or _compile_redactions():
        text = pattern.sub(repl, text)
    return text


def _compile_redactions() -> tuple[tuple[re.Pattern[str], str], ...]:
    global _REDACTIONS
    _REDACTIONS = tuple((re.compile(pattern), repl) for pattern, repl in _REDACTION_RULES)
    return _REDACTIONS


_REFERENCE = re.compile(r"^(?:env|file):[^\s]+$", re.IGNORECASE)


def redact_value(value: Any, key: str = "") -> Any:
    """Redact a JSON-like value recursively: secret-named members masked, strings scrubbed.

    A secret-named member whose value is a reference (``env:NAME``, ``file:/path``) is kept:
    references are how secrets are meant to be named.
    """
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        if isinstance(value, str) and _REFERENCE.match(value):
            return redact(value)
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.__dict__.items():
        if key in _STD_ATTRS or key.startswith("_"):
            continue
        if isinstance(value, (str, Mapping, list, tuple)) or is_secret_key(key):
            value = redact_value(value, key)
        elif not isinstance(value, (int, float, bool)) and value is not None:
            value = redact(str(value))
        out[key] = value
    return out


def _level_name(record: logging.LogRecord) -> str:
    return "WARN" if record.levelno == logging.WARNING else record.levelname


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


# ---------------------------------------------------------------------------- formatting

# Process-wide fields added to every record; updated by set_context().
_CONTEXT: dict[str, str] = {}


def set_context(**fields: str) -> None:
    """Add or replace process-wide fields (e.g. ``client_instance_id``) on every later record."""
    _CONTEXT.update({k: v for k, v in fields.items() if v})


class _Context(logging.Filter):
    """Adds process-wide fields (tunnel_id, client_instance_id) and ``component`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in _CONTEXT.items():
            if not hasattr(record, k):
                setattr(record, k, v)
        if not hasattr(record, "component"):
            name = record.name
            record.component = name.rsplit(".", 1)[-1] if name.startswith("tunnel_client.") else name
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _timestamp(record),
            "level": _level_name(record),
            "msg": redact(record.getMessage()),
        }
        data.update(_fields(record))
        if record.exc_info and record.levelno >= logging.ERROR:
            data["error_type"] = getattr(record.exc_info[0], "__name__", "Exception")
        return json.dumps(data, default=str, ensure_ascii=False)


def _quote(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)
    return json.dumps(s, ensure_ascii=False) if (not s or any(c in s for c in ' ="\n')) else s


class StructTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"time={_timestamp(record)}", f"level={_level_name(record)}",
                 f"msg={_quote(redact(record.getMessage()))}"]
        parts += [f"{k}={_quote(v)}" for k, v in _fields(record).items()]
        return " ".join(parts)


def _open_log_file(path: str) -> TextIO:
    """Open ``path`` for appending, created 0600; an existing file is tightened to 0600 too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:  # pragma: no cover - not our file (e.g. /dev/stderr): leave its mode alone
        pass
    return os.fdopen(fd, "a", encoding="utf-8", buffering=1)


def setup_logging(
    *, level: str = "info", fmt: str = "struct-text", file: str = "", context: dict[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Configure the root logger once for the process."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        if isinstance(h, logging.FileHandler) or getattr(h, "_tunnel_owned", False):
            h.close()
    _CONTEXT.clear()
    _CONTEXT.update(context or {})
    handler: logging.Handler
    if file:
        try:
            opened = _open_log_file(file)
        except OSError as exc:
            from tunnel_core.errors import ConfigError

            raise ConfigError(f"--log.file / LOG_FILE / log.file: cannot open {file} for writing "
                              f"({exc.strerror or exc}); give a file path in a directory you can write") from None
        handler = logging.StreamHandler(opened)
        handler._tunnel_owned = True  # type: ignore[attr-defined]
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else StructTextFormatter())
    handler.addFilter(_Context())
    root.addHandler(handler)
    set_level(level if level in LEVELS else "info")


# ---------------------------------------------------------------------------- run-time level


def set_level(name: str) -> str:
    """Set the process log level (``debug``/``info``/``warn``/``error``; ``warning`` accepted); returns it."""
    key = name.strip().lower()
    key = "warn" if key == "warning" else key
    if key not in LEVELS:
        raise ValueError(f"unknown log level {name!r}; use one of {', '.join(LEVELS)}")
    root = logging.getLogger()
    root.setLevel(LEVELS[key])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return key


def current_level() -> str:
    """The process log level by its configuration name."""
    lvl = logging.getLogger().level
    for name, value in LEVELS.items():
        if value == lvl:
            return name
    return logging.getLevelName(lvl).lower()


# ---------------------------------------------------------------------------- ring buffer

DEFAULT_BUFFER_EVENTS = 2000


class LogBuffer(logging.Handler):
    """The most recent log events, redacted, for the operator UI (``/api/logs`` and its SSE stream).

    A fixed-size ring with a monotonically increasing ``seq``. Readers never block logging:
    a stream reader that falls more than ``capacity`` events behind silently skips the gap.
    Events are dicts with the reference's shape ``{seq, time, level, message, attrs}``.
    """

    def __init__(self, capacity: int = DEFAULT_BUFFER_EVENTS) -> None:
        super().__init__(logging.NOTSET)
        self.capacity = max(1, capacity)
        self.started_at = time.time()
        self._ring: collections.deque[tuple[float, dict[str, Any]]] = collections.deque(maxlen=self.capacity)
        self._seq = 0
        self._guard = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.closed = False
        self.addFilter(_Context())

    # logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
        try:
            attrs = _fields(record)
            event: dict[str, Any] = {"seq": 0, "time": _timestamp(record), "level": _level_name(record),
                                     "message": redact(record.getMessage())}
            if attrs:
                event["attrs"] = attrs
        except Exception:  # pragma: no cover - a broken record must not break logging
            self.handleError(record)
            return
        with self._guard:
            self._seq += 1
            event["seq"] = self._seq
            self._ring.append((record.created, event))
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            _wake(loop, fut)

    @property
    def last_seq(self) -> int:
        return self._seq

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first."""
        with self._guard:
            n = min(max(limit, 0), len(self._ring))
            return [e for _, e in itertools.islice(self._ring, len(self._ring) - n, None)]

    def since(self, start: float) -> list[dict[str, Any]]:
        """Every buffered event logged at or after the Unix time ``start``, oldest first."""
        with self._guard:
            return [e for created, e in self._ring if created >= start]

    def after(self, seq: int) -> list[dict[str, Any]]:
        """Buffered events with a sequence number greater than ``seq``, oldest first."""
        with self._guard:
            if not self._ring or seq >= self._seq:
                return []
            first = self._ring[0][1]["seq"]
            skip = max(0, seq - first + 1)
            return [e for _, e in itertools.islice(self._ring, skip, None)]

    async def wait_after(self, seq: int, timeout: float) -> list[dict[str, Any]]:
        """Events after ``seq``, waiting up to ``timeout`` seconds for one; [] on timeout or close."""
        events = self.after(seq)
        if events or self.closed:
            return events
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._guard:
            if self._seq > seq:
                fut.set_result(None)
            else:
                self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            pass
        finally:
            with self._guard:
                self._waiters = [(lp, f) for lp, f in self._waiters if f is not fut]
        return self.after(seq)

    def close(self) -> None:
        """Stop serving streams: waiting readers return at once and end their streams."""
        self.closed = True
        with self._guard:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            _wake(loop, fut)
        super().close()


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    try:
        loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # loop already closed: nobody is waiting any more
        pass


def install_buffer(capacity: int = DEFAULT_BUFFER_EVENTS) -> LogBuffer:
    """Attach a new ring buffer to the root logger (detach it with :func:`remove_buffer`)."""
    buf = LogBuffer(capacity)
    logging.getLogger().addHandler(buf)
    return buf


def remove_buffer(buf: LogBuffer) -> None:
    logging.getLogger().removeHandler(buf)
    buf.close()


def ndjson(events: Iterable[Mapping[str, Any]]) -> bytes:
    """One JSON document per line (the support bundle's log file)."""
    return b"".join(json.dumps(e, default=str, ensure_ascii=False).encode() + b"\n" for e in events)
