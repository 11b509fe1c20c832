"""stdio targets: id multiplexing, supervision, deadlines and shutdown, against real child processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from tests.support.faulty import (
    STDIO_COMMAND,
    FaultyService,
    Session,
    result_text,
    sse_messages,
    wait_until,
)
from tests.support.tunnel import ClientRun


@pytest.fixture
def stdio_relay(relay_on: Any, tmp_path: Path) -> Any:
    """Factory: a relay whose main channel is tests/support/stdio_server.py, logging what the child receives."""
    count = 0

    def start(*args: str, command: str = STDIO_COMMAND, env: dict[str, str] | None = None) -> ClientRun:
        nonlocal count
        log = tmp_path / f"stdio-{count}.log"
        count += 1
        run: ClientRun = relay_on("--mcp.command", command, *args, env={"STDIO_TEST_LOG": str(log), **(env or {})})
        run.stdio_log = log  # type: ignore[attr-defined]
        return run

    return start


def child_pid(run: ClientRun) -> int | None:
    status = run.get("/api/status").json()
    details = {d["key"]: d["value"] for d in status["channels"][0]["details"]}
    return int(details["pid"]) if "pid" in details else None


def stdio_messages(run: ClientRun) -> list[dict[str, Any]]:
    log: Path = run.stdio_log  # type: ignore[attr-defined]
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_stdio_session_initialize_list_and_call(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    init = s.initialize()
    assert init.json()["result"]["serverInfo"]["name"] == "stdio-test"
    tools = s.post({"jsonrpc": "2.0", "id": "list-1", "method": "tools/list"}).json()
    assert tools["id"] == "list-1"
    assert "echo" in [t["name"] for t in tools["result"]["tools"]]
    r = s.call("echo", {"text": "hi"}, rpc_id=7)
    assert r.status_code == 200
    assert r.json()["id"] == 7 and result_text(r) == "hi"


def test_two_connectors_reusing_id_1_get_their_own_answers(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    a, b = Session(faulty.mcp_url(run.tunnel_id)), Session(faulty.mcp_url(run.tunnel_id))
    with ThreadPoolExecutor(2) as pool:
        blocked = pool.submit(a.call, "block", {"key": "k1"}, rpc_id=1)
        wait_until(lambda: any(m.get("params", {}).get("name") == "block" for m in stdio_messages(run)),
                   "the block call to reach the child")
        released = b.call("release", {"key": "k1"}, rpc_id=1)
        first = blocked.result(timeout=15)
    assert released.json() == {"jsonrpc": "2.0", "id": 1, "result": {
        "content": [{"type": "text", "text": "ok"}], "isError": False}}
    assert first.json()["id"] == 1 and result_text(first) == "released k1"
    # The child saw distinct internal ids, never the callers' 1.
    ids = [m["id"] for m in stdio_messages(run) if m.get("method") == "tools/call"]
    assert len(set(ids)) == 2 and 1 not in ids


def test_progress_token_is_restored_for_the_caller(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id), sse=True)
    r = s.call("progress", {"steps": 3}, rpc_id="p-1", meta={"progressToken": "tok-1"})
    messages = sse_messages(r)
    notes = [m for m in messages if m.get("method") == "notifications/progress"]
    assert [n["params"]["progressToken"] for n in notes] == ["tok-1"] * 3
    assert messages[-1]["id"] == "p-1" and messages[-1]["result"]["content"][0]["text"] == "done 3"


def test_child_kill_fails_pending_calls_within_one_second_then_respawns(
    stdio_relay: Any, faulty: FaultyService
) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    pid = wait_until(lambda: child_pid(run), "the child pid")
    answered: dict[str, Any] = {}
    done = threading.Event()

    def pending_call() -> None:
        answered["resp"] = s.call("block", {"key": "never"}, rpc_id="pending")
        answered["at"] = time.monotonic()
        done.set()

    t = threading.Thread(target=pending_call, daemon=True)
    t.start()
    wait_until(lambda: any(m.get("params", {}).get("name") == "block" for m in stdio_messages(run)),
               "the block call to reach the child")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    assert done.wait(15)
    assert answered["at"] - killed_at < 1.0
    resp = answered["resp"]
    assert resp.status_code == 502
    failure = resp.json()["error"]["data"]["tunnel_failure"]
    assert resp.json()["id"] == "pending" and resp.json()["error"]["code"] == -32603
    assert failure["source"] == "transport_closed" and failure["upstream_response_received"] is False
    new_pid = wait_until(lambda: (p := child_pid(run)) and p != pid and p, "a respawned child")
    assert psutil.pid_exists(new_pid)
    run.wait_readyz()
    s2 = Session(faulty.mcp_url(run.tunnel_id))
    s2.initialize()
    assert result_text(s2.call("echo", {"text": "after respawn"})) == "after respawn"


def test_crash_loop_marks_channel_not_ready(stdio_relay: Any) -> None:
    run = stdio_relay(env={"STDIO_TEST_EXIT_AT_START": "1"})

    def crash_loop_reported() -> bool:
        r = run.get("/readyz")
        return r.status_code == 503 and "crash loop" in r.text

    wait_until(crash_loop_reported, "/readyz to report a crash loop")
    assert run.proc.popen.poll() is None, "the client must keep running while the child crash-loops"


def test_session_termination_on_stdio_is_405_and_serving_continues(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    r = s.client.delete(s.url, headers={"Mcp-Session-Id": "abc"})
    assert r.status_code == 405
    assert result_text(s.call("echo", {"text": "still here"})) == "still here"


def test_timed_out_request_is_retired_and_late_answer_discarded(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    slow = s.call("block", {"key": "late"}, rpc_id=1, url=faulty.mcp_url(run.tunnel_id, response_timeout="2s"))
    assert slow.status_code == 504  # the front door gave up; the client posted nothing
    responses_before = len(faulty.records(run.tunnel_id, "response"))
    assert s.call("release", {"key": "late"}, rpc_id=1).json()["result"]["content"][0]["text"] == "ok"
    run.proc.wait_log("late answer for a retired request discarded")
    # The late answer produced no extra response POST: only the release call's own.
    assert len(faulty.records(run.tunnel_id, "response")) == responses_before + 1
    cancelled = [m for m in stdio_messages(run) if m.get("method") == "notifications/cancelled"]
    assert cancelled, "the child should be told the retired request was cancelled"
    assert result_text(s.call("echo", {"text": "next"})) == "next"


def test_response_timeout_zero_drops_without_contacting_mcp(stdio_relay: Any, faulty: FaultyService) -> None:
    run = stdio_relay()
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    # Queued directly (no front-door caller giving up), so the client is sure to poll it.
    faulty.enqueue_raw(run.tunnel_id, {
        "command_type": "jsonrpc", "channel": "main", "headers": {}, "response_timeout": "0s",
        "jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "echo", "arguments": {"text": "expired"}}}})
    run.proc.wait_log("response deadline already passed; dropping command")
    assert not any(m.get("params", {}).get("arguments", {}).get("text") == "expired" for m in stdio_messages(run))
    assert result_text(s.call("echo", {"text": "fresh"})) == "fresh"


def test_shell_metacharacters_stay_literal(stdio_relay: Any, faulty: FaultyService, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    run = stdio_relay(command=f"{STDIO_COMMAND} ; touch {marker}")
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    assert result_text(s.call("echo", {"text": "x"})) == "x"
    assert not marker.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_child_never_outlives_the_client(stdio_relay: Any, sig: signal.Signals) -> None:
    run = stdio_relay()
    run.wait_readyz()
    pid = wait_until(lambda: child_pid(run), "the child pid")
    os.kill(run.proc.pid, sig)
    run.proc.wait()

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(gone, "the stdio child to exit with its parent")


def test_real_third_party_stdio_server_mcp_server_time(stdio_relay: Any, faulty: FaultyService) -> None:
    from mcp import Client

    exe = Path(sys.executable).parent / "mcp-server-time"  # installed into the test venv by scripts/bootstrap
    assert exe.exists(), "mcp-server-time is installed by scripts/bootstrap"
    run = stdio_relay(command=f"{exe} --local-timezone UTC")
    run.wait_readyz()

    async def go() -> dict[str, Any]:
        async with Client(faulty.mcp_url(run.tunnel_id)) as client:
            tools = await client.list_tools()
            assert {"get_current_time", "convert_time"} <= {t.name for t in tools.tools}
            result = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert result.structured_content is not None
            return dict(result.structured_content)

    content = anyio.run(go)
    assert content["timezone"] == "UTC"

