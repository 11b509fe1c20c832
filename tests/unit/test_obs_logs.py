"""Redaction, log formats, the UI's ring buffer and the run-time level switch (tunnel_core.logs)."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tunnel_core import logs

SECRET = "s3cr3tVALUE9876"


# ---------------------------------------------------------------------------- redact()

@pytest.mark.parametrize(("text", "secret"), [
    (f"Authorization: Bearer {SECRET}", SECRET),
    (f"authorization=Bearer {SECRET}", SECRET),
    (f"got bearer {SECRET} from client", SECRET),
    (f"Authorization: Basic {SECRET}", SECRET),
    (f"X-Tunnel-Shard-Token: shard:{SECRET}", SECRET),
    (f"Cookie: session={SECRET}; theme=dark", SECRET),
    (f"Set-Cookie: sid={SECRET}; HttpOnly", SECRET),
    (f"X-Api-Key: {SECRET}", SECRET),
    (f"key sk-proj-{SECRET}abc in a message", f"sk-proj-{SECRET}"),
    (f"GET /cb?code={SECRET}&state=x", SECRET),
    (f"https://h/mcp?access_token={SECRET}", SECRET),
    (f"https://h/p?a=1&client_secret={SECRET}#frag", SECRET),
    (f"form body api_key={SECRET}&x=1", SECRET),
    (f"password = {SECRET}", SECRET),
    (f'{{"refresh_token": "{SECRET}", "ok": true}}', SECRET),
    (f"{{'id_token': '{SECRET}'}}", SECRET),
    (f'{{"x-tunnel-shard-token":"{SECRET}"}}', SECRET),
    (f"http://alice:{SECRET}@mcp.internal:8080/mcp", SECRET),
    (f"https://{SECRET}@github.example/repo.git", SECRET),
])
def test_redact_masks_credentials_in_free_text(text: str, secret: str) -> None:
    out = logs.redact(text)
    assert secret not in out
    assert logs.REDACTED in out


@pytest.mark.parametrize("text", [
    "status_code=401 error_code=invalid_request",
    "retry_in_ms=200 tunnel_request_id=req_123",
    "http://127.0.0.1:8080/mcp?channel=main",
    "mcp startup probe timed out after 2s",
    "tokens used: 5",
    "",
])
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert logs.redact(text) == text


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    value = "rk_unit_" + "q" * 24
    logs.add_secret_value(value)
    assert logs.redact(f"weird place {value}!") == f"weird place {logs.REDACTED}!"
    logs.add_secret_value("short")  # too short to mask safely: ignored
    assert logs.redact("a short word") == "a short word"


@pytest.mark.parametrize(("key", "secret"), [
    ("authorization", True), ("Cookie", True), ("set-cookie", True), ("X-Tunnel-Shard-Token", True),
    ("shard_token", True), ("api_key", True), ("CONTROL_PLANE_API_KEY", True), ("client_secret", True),
    ("refresh_token", True), ("password", True), ("db.password", True), ("MCP_PLANTED_TOKEN", True),
    ("request_id", False), ("tunnel_request_id", False), ("status_code", False), ("api_key_source", False),
    ("channel", False), ("mitigation", False),
])
def test_secret_key_names(key: str, secret: bool) -> None:
    assert logs.is_secret_key(key) is secret


def test_redact_value_walks_nested_data_and_keeps_references() -> None:
    data = {
        "headers": {"Authorization": f"Bearer {SECRET}", "Accept": "application/json"},
        "items": [{"password": SECRET}, f"sk-{SECRET}"],
        "api_key": "env:CONTROL_PLANE_API_KEY",
        "client_secret": "file:/run/secrets/x",
        "count": 3,
    }
    out = logs.redact_value(data)
    assert SECRET not in json.dumps(out)
    assert out["headers"]["Authorization"] == logs.REDACTED
    assert out["headers"]["Accept"] == "application/json"
    assert out["api_key"] == "env:CONTROL_PLANE_API_KEY"
    assert out["client_secret"] == "file:/run/secrets/x"
    assert out["count"] == 3


# ---------------------------------------------------------------------------- formatters

@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing JSON to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.setup_logging(level="debug", fmt="json", stream=stream, context={"tunnel_id": "tunnel_" + "a" * 32})
    yield stream
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved_handlers:
        root.addHandler(h)
    root.setLevel(saved_level)


def test_json_records_have_stable_fields_and_no_secrets(captured: io.StringIO) -> None:
    log = logging.getLogger("tunnel_client.dispatcher")
    log.warning("forwarding with Authorization: Bearer %s", SECRET,
                extra={"request_id": "req_1", "channel": "main", "shard_token": SECRET,
                       "headers": {"Cookie": f"a={SECRET}"}, "url": f"https://u:{SECRET}@h/x"})
    line = captured.getvalue().strip().splitlines()[-1]
    assert SECRET not in line
    rec = json.loads(line)
    assert rec["level"] == "WARN" and rec["component"] == "dispatcher"
    assert rec["tunnel_id"] == "tunnel_" + "a" * 32
    assert (rec["request_id"], rec["channel"], rec["shard_token"]) == ("req_1", "main", logs.REDACTED)
    assert set(rec) >= {"time", "level", "msg", "tunnel_id", "component", "request_id", "channel"}


def test_struct_text_records_are_key_value_and_redacted() -> None:
    record = logging.makeLogRecord({"name": "tunnel_client.controlplane", "levelno": logging.INFO,
                                    "levelname": "INFO", "msg": "poll failed", "status_code": 503,
                                    "error_message": f"token={SECRET}"})
    logs._Context().filter(record)
    line = logs.StructTextFormatter().format(record)
    assert SECRET not in line
    assert line.startswith("time=") and " level=INFO " in line and ' msg="poll failed"' in line
    assert " status_code=503" in line and " component=controlplane" in line


def test_log_file_is_appended_and_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "client.log"
    path.write_text("earlier line\n")
    os.chmod(path, 0o644)
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        logs.setup_logging(level="info", fmt="json", file=str(path))
        logging.getLogger("tunnel_client.runner").info("hello file", extra={"password": SECRET})
        for h in root.handlers:
            h.flush()
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
    text = path.read_text()
    assert text.startswith("earlier line\n")
    assert json.loads(text.splitlines()[1])["msg"] == "hello file"
    assert SECRET not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------- level switch

def test_runtime_level_switch_moves_the_root_logger_only_for_known_levels() -> None:
    root = logging.getLogger()
    saved = root.level
    try:
        assert logs.set_level("debug") == "debug" and logs.current_level() == "debug"
        assert logs.set_level("WARNING") == "warn" and root.level == logging.WARNING
        assert logging.getLogger("httpx2").level == logging.WARNING  # noisy libraries stay quiet
        with pytest.raises(ValueError, match="unknown log level"):
            logs.set_level("verbose")
        assert logs.RUNTIME_LEVELS == ("debug", "info", "warn")
    finally:
        root.setLevel(saved)


# ---------------------------------------------------------------------------- ring buffer

def _record(msg: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "tunnel_client.runner", "levelno": level,
                                 "levelname": logging.getLevelName(level), "msg": msg, **extra})
    return rec


def test_buffer_keeps_the_newest_events_with_increasing_seq() -> None:
    buf = logs.LogBuffer(capacity=3)
    for i in range(5):
        buf.handle(_record(f"event {i}"))
    events = buf.recent(10)
    assert [e["message"] for e in events] == ["event 2", "event 3", "event 4"]
    assert [e["seq"] for e in events] == [3, 4, 5]
    assert buf.after(3) == events[1:]
    assert buf.after(0) == events  # events 1-2 fell out of the ring: the gap is skipped
    assert buf.after(5) == []
    assert buf.recent(1) == events[-1:]
    assert set(events[0]) == {"seq", "time", "level", "message", "attrs"}
    assert events[0]["attrs"]["component"] == "runner"


def test_buffer_events_are_redacted_and_windowed_by_time() -> None:
    buf = logs.LogBuffer()
    rec = _record(f"login with password={SECRET}", logging.WARNING, authorization=f"Bearer {SECRET}",
                  nested={"client_secret": SECRET, "ok": 1})
    buf.handle(rec)
    ev = buf.recent()[0]
    assert SECRET not in json.dumps(ev)
    assert ev["level"] == "WARN"
    assert ev["attrs"]["authorization"] == logs.REDACTED
    assert buf.since(rec.created) == [ev] and buf.since(rec.created + 1) == []


@pytest.mark.anyio
async def test_buffer_wakes_a_waiting_reader_and_close_ends_the_wait() -> None:
    buf = logs.LogBuffer()
    got: list[list[dict[str, object]]] = []

    async def reader(after: int) -> None:
        got.append(await buf.wait_after(after, timeout=10))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, 0)
            await anyio.wait_all_tasks_blocked()
            buf.handle(_record("wake up"))
        assert [e["message"] for e in got[0]] == ["wake up"]
        assert await buf.wait_after(1, timeout=0.01) == []  # nothing new: the timeout answers

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, 1)
            await anyio.wait_all_tasks_blocked()
            buf.close()
        assert got[1] == [] and buf.closed
