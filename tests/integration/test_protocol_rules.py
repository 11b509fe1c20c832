"""Wire-protocol rules of the relay, each proven against the local tunnel service's fault knobs."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.everything import everything_http
from tests.support.faulty import (
    STDIO_COMMAND,
    FaultyService,
    Session,
    result_text,
    wait_until,
)
from tests.support.inflight import replay
from tests.support.mcp_app import Gates, build_mcp_app
from tests.support.servers import BackgroundLoop
from tunnel_core.config.durations import parse_duration

ROOT = Path(__file__).resolve().parents[2]


def query_of(record: dict[str, Any]) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return parse_qs(record["query"])


# ---- retries and backoff ------------------------------------------------------------------------


def test_retry_after_on_a_poll_is_honoured(relay_on: Any, faulty: FaultyService, mcp_target: Any) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    faulty.fault("poll", count=1, status=503, retry_after="2")
    # The currently open poll must end before the fault applies: a call completes it.
    Session(faulty.mcp_url(run.tunnel_id)).initialize()
    faulted = wait_until(lambda: [r for r in faulty.records(run.tunnel_id, "poll") if "fault" in r],
                         "the faulted poll")[0]
    later = wait_until(lambda: [r for r in faulty.records(run.tunnel_id, "poll") if r["t"] > faulted["t"]],
                       "the next poll")[0]
    assert later["t"] - faulted["t"] >= 2.0
    assert later["t"] - faulted["t"] < 5.0
    run.wait_readyz()


def test_poll_401_is_reported_once_turns_readyz_503_and_recovers(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    faulty.fault("poll", count=4, status=401)
    # A call completes the open poll; its own answer waits until polling recovers.
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(Session(faulty.mcp_url(run.tunnel_id)).initialize)

        def failing() -> bool:
            r = run.get("/readyz")
            return r.status_code == 503 and r.text.startswith("control plane poll failing: HTTP 401")

        wait_until(failing, "/readyz to report the failing poll")
        assert pending.result(timeout=30).status_code == 200
    run.wait_readyz(timeout=30)  # the next successful poll restores readiness
    errors = [r for r in run.proc.log_records()
              if r.get("msg") == "poll failed; backing off" and r.get("status_code") == 401]
    assert len(errors) == 4
    assert [r["level"] for r in errors].count("ERROR") == 1, "401 is reported loudly once, then quietly"
    assert errors[0]["mitigation"]


def test_response_post_failing_once_with_503_is_delivered_exactly_once(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()
    faulty.fault("response", count=1, status=503)
    r = s.call("echo", {"text": "once"}, rpc_id="retry-1")
    assert r.status_code == 200 and result_text(r) == "once"
    posts = [p for p in faulty.records(run.tunnel_id, "response")
             if (p["body"] or {}).get("resp_json", {}).get("id") == "retry-1"]
    assert len(posts) == 2
    assert posts[0]["body"] == posts[1]["body"], "a retry resends the identical body"
    assert "fault" in posts[0] and "fault" not in posts[1]


def test_response_post_404_is_treated_as_done_and_never_replayed(
    relay_on: Any, faulty: FaultyService, tmp_path: Path
) -> None:
    log = tmp_path / "child.log"
    run = relay_on("--mcp.command", STDIO_COMMAND, env={"STDIO_TEST_LOG": str(log)})
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id, response_timeout="2s"))
    faulty.fault("response", count=1, status=404)
    r = s.call("echo", {"text": "gone"}, rpc_id="nf-1")
    assert r.status_code == 504  # the service never got an accepted answer
    run.proc.wait_log("response not accepted: request already fulfilled or unknown")
    posts = [p for p in faulty.records(run.tunnel_id, "response")
             if (p["body"] or {}).get("resp_json", {}).get("id") == "nf-1"]
    assert len(posts) == 1
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(1 for m in calls if m.get("params", {}).get("arguments", {}).get("text") == "gone") == 1


def test_dropped_poll_connection_is_retried(relay_on: Any, faulty: FaultyService, mcp_target: Any) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    faulty.fault("poll", count=1, drop=True)
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()  # completes the open poll; the next one is dropped mid-body
    wait_until(lambda: [r for r in faulty.records(run.tunnel_id, "poll") if r.get("fault", {}).get("drop")],
               "the dropped poll")
    assert result_text(s.call("echo", {"text": "after drop"})) == "after drop"


# ---- command types and channels -----------------------------------------------------------------


def test_connector_notification_gets_notify_ack(relay_on: Any, faulty: FaultyService, mcp_target: Any) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()
    r = s.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}})
    assert r.status_code == 202 and not r.content
    acks = [p["body"] for p in faulty.records(run.tunnel_id, "response") if p["body"]["resp_type"] == "notify_ack"]
    assert acks and all("resp_json" not in a for a in acks)


def test_session_termination_becomes_delete_on_http(relay_on: Any, faulty: FaultyService, mcp_target: Any) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()
    r = s.client.delete(s.url, headers={"Mcp-Session-Id": s.headers["Mcp-Session-Id"]})
    assert r.status_code in (200, 204)
    posted = [p["body"] for p in faulty.records(run.tunnel_id, "response")
              if p["body"]["resp_type"] == "session_termination_response"]
    assert posted and "resp_json" not in posted[-1]
    # The upstream session is gone: using it again is refused by the server (404).
    assert s.call("echo", {"text": "x"}).status_code == 404


def test_unknown_command_type_is_skipped_and_polling_continues(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    faulty.enqueue_raw(run.tunnel_id, {"command_type": "teleport", "channel": "main", "headers": {}})
    faulty.enqueue_raw(run.tunnel_id, {"command_type": "jsonrpc", "channel": "main", "headers": {},
                                       "jsonrpc": {"not": "json-rpc"}})
    rec = run.proc.wait_log("dropping malformed command")
    assert rec["reason"] in ("invalid_command_type", "invalid_jsonrpc")
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()
    assert result_text(s.call("echo", {"text": "still polling"})) == "still polling"
    metrics = run.get("/metrics").text
    assert 'commands_queue_drops_total{drop_reason="invalid_command_type"} 1.0' in metrics
    assert 'commands_queue_drops_total{drop_reason="invalid_jsonrpc"} 1.0' in metrics


def test_channels_route_by_name_and_unknown_channel_gets_400(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    run = relay_on("--mcp.command", STDIO_COMMAND, "--mcp.server-url", f"channel=web,url={mcp_target.url}")
    run.wait_readyz()
    main = Session(faulty.mcp_url(run.tunnel_id))
    assert main.initialize().json()["result"]["serverInfo"]["name"] == "stdio-test"
    web = Session(faulty.mcp_url(run.tunnel_id, channel="web"))
    assert web.initialize().json()["result"]["serverInfo"]["name"] == "relay-test-server"
    nope = Session(faulty.mcp_url(run.tunnel_id, channel="nope"))
    r = nope.call("echo", {"text": "x"}, rpc_id=5)
    assert r.status_code == 400
    assert r.json() == {"jsonrpc": "2.0", "id": 5,
                        "error": {"code": -32603, "message": 'Bad Request: unsupported channel "nope"'}}
    assert 'command_unsupported_channel_total{channel="nope",command_type="jsonrpc"' in run.get("/metrics").text
    infos = {r["headers"].get("x-tunnel-mcp-server-info") for r in faulty.records(run.tunnel_id)
             if r["route"] in ("poll", "response", "metadata")}
    assert infos == {'{"version":1,"channels":[{"name":"main","proc_affinity":true},{"name":"web"}]}'}


def test_poll_channel_subscription_is_sent_sorted(relay_on: Any, faulty: FaultyService, mcp_target: Any) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url, "--mcp.server-url", f"channel=b,url={mcp_target.url}",
                   "--control-plane.poll-channel", "main", "--control-plane.poll-channel", "b")
    run.wait_readyz()
    polls = faulty.records(run.tunnel_id, "poll")
    assert polls and all(query_of(p)["channel"] == ["b", "main"] for p in polls)


# ---- backpressure and concurrency ---------------------------------------------------------------


def test_max_inflight_bounds_every_poll_limit(relay_on: Any, faulty: FaultyService, tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    run = relay_on("--mcp.command", STDIO_COMMAND, "--control-plane.max-inflight", "4",
                   env={"STDIO_TEST_LOG": str(log)})
    run.wait_readyz()
    url = faulty.mcp_url(run.tunnel_id)
    sessions = [Session(url) for _ in range(3)]

    async def scenario() -> list[str]:
        async with httpx2.AsyncClient(timeout=20, trust_env=False) as c:
            async def call(name: str, key: str, rpc_id: int) -> str:
                body = {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call",
                        "params": {"name": name, "arguments": {"key": key}}}
                r = await c.post(url, json=body, headers=sessions[0].headers)
                return str(r.json()["result"]["content"][0]["text"])

            blocked = [asyncio.create_task(call("block", f"k{i}", i)) for i in range(3)]

            def three_blocked() -> bool:
                if not log.exists():
                    return False
                names = [json.loads(x).get("params", {}).get("name") for x in log.read_text().splitlines()]
                return names.count("block") == 3

            await asyncio.to_thread(wait_until, three_blocked, "three blocked calls")
            for i in range(3):
                assert await call("release", f"k{i}", 10 + i) == "ok"
            return await asyncio.gather(*blocked)

    assert asyncio.run(scenario()) == ["released k0", "released k1", "released k2"]
    # Replay the wire in arrival order: when each poll was sent, the client held every command
    # delivered by earlier polls minus the terminal responses it had posted, none of them parked
    # (no server here asks its caller anything), so its limit may ask for the free part only.
    wire = replay(faulty.runtime_requests(run.tunnel_id))
    wire.assert_bounds(4)
    assert all(p.parked == 0 for p in wire.polls)
    limits = [p.limit for p in wire.polls]
    assert 1 in limits, "some poll was sent while three of four slots were held"
    assert wire.peak_held == 4


def test_two_hundred_mixed_concurrent_calls_each_answered_once(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    run = relay_on("--mcp.server-url", mcp_target.url, "--control-plane.max-inflight", "50",
                   "--mcp.max-concurrent-requests", "20")
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id))
    s.initialize()

    async def scenario() -> None:
        limits = httpx2.Limits(max_connections=100)
        async with httpx2.AsyncClient(timeout=30, limits=limits, trust_env=False) as c:
            async def call(i: int) -> tuple[int, Any]:
                slow = i % 5 == 0
                params = ({"name": "progress", "arguments": {"steps": 3}} if slow
                          else {"name": "echo", "arguments": {"text": f"t{i}"}})
                r = await c.post(s.url, json={"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/call",
                                              "params": params}, headers=s.headers)
                return i, r.json()

            answers = await asyncio.gather(*(call(i) for i in range(200)))
        for i, body in answers:
            assert body["id"] == 1000 + i
            text = body["result"]["content"][0]["text"]
            assert text == ("done" if i % 5 == 0 else f"t{i}") or (i % 5 == 0 and "3" in text)

    asyncio.run(scenario())
    posts = [p["body"] for p in faulty.records(run.tunnel_id, "response") if p["body"]["resp_type"] ==
             "jsonrpc_response"]
    ids = [b["resp_json"]["id"] for b in posts if isinstance(b["resp_json"].get("id"), int)]
    assert sorted(i - 1000 for i in ids if i >= 1000) == list(range(200)), "every call answered exactly once"


def test_redundant_clients_share_one_tunnel_without_loss_or_duplicates(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    tunnel_id = faulty.add_tunnel()
    a = relay_on("--mcp.server-url", mcp_target.url, tunnel_id=tunnel_id)
    b = relay_on("--mcp.server-url", mcp_target.url, tunnel_id=tunnel_id)
    a.wait_readyz()
    b.wait_readyz()
    s = Session(faulty.mcp_url(tunnel_id))
    s.initialize()

    async def scenario() -> list[Any]:
        async with httpx2.AsyncClient(timeout=30, trust_env=False) as c:
            async def call(i: int) -> Any:
                r = await c.post(s.url, json={"jsonrpc": "2.0", "id": 1000 + i, "method": "tools/call",
                                              "params": {"name": "echo", "arguments": {"text": f"r{i}"}}},
                                 headers=s.headers)
                return r.json()

            return await asyncio.gather(*(call(i) for i in range(60)))

    answers = asyncio.run(scenario())
    assert [x["result"]["content"][0]["text"] for x in answers] == [f"r{i}" for i in range(60)]
    handled = []
    for run in (a, b):
        line = next(x for x in run.get("/metrics").text.splitlines() if x.startswith("commands_enqueued_total"))
        handled.append(float(line.split()[-1]))
    assert all(h > 0 for h in handled), f"both clients should take work, got {handled}"
    posts = [p["body"]["resp_json"]["id"] for p in faulty.records(tunnel_id, "response")
             if p["body"]["resp_type"] == "jsonrpc_response" and isinstance(p["body"]["resp_json"].get("id"), int)]
    assert sorted(i - 1000 for i in posts if i >= 1000) == list(range(60))


# ---- startup wait and third-party targets -------------------------------------------------------


def test_startup_wait_delays_polling_until_the_target_listens(
    relay_on: Any, faulty: FaultyService, bg: BackgroundLoop
) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused for now
    port = sock.getsockname()[1]
    run = relay_on("--mcp.server-url", f"http://127.0.0.1:{port}/mcp", "--mcp.startup-wait-timeout", "20s")
    assert faulty.records(run.tunnel_id, "poll") == []
    assert run.get("/readyz").status_code == 503
    sock.listen(64)
    sock.setblocking(False)
    server = bg.serve(build_mcp_app(Gates()), sock)
    try:
        run.wait_readyz()
        wait_until(lambda: faulty.records(run.tunnel_id, "poll"), "the first poll")
        s = Session(faulty.mcp_url(run.tunnel_id))
        s.initialize()
        assert result_text(s.call("echo", {"text": "waited"})) == "waited"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server_everything() -> Iterator[str]:
    with everything_http() as url:
        yield url


def test_real_third_party_http_server_everything(relay_on: Any, faulty: FaultyService, server_everything: str) -> None:
    from mcp import Client

    run = relay_on("--mcp.server-url", server_everything)
    run.wait_readyz()

    async def go() -> str:
        async with Client(faulty.mcp_url(run.tunnel_id)) as client:
            tools = await client.list_tools()
            assert "get-sum" in {t.name for t in tools.tools}
            result = await client.call_tool("get-sum", {"a": 2, "b": 3})
            return str(result.content[0].text)  # type: ignore[union-attr]

    import anyio

    assert anyio.run(go) == "The sum of 2 and 3 is 5."


def test_connection_ttl_bounds_one_command(relay_on: Any, faulty: FaultyService) -> None:
    run = relay_on("--mcp.command", STDIO_COMMAND, "--mcp.connection-max-ttl", "1s")
    run.wait_readyz()
    s = Session(faulty.mcp_url(run.tunnel_id, response_timeout="4s"))
    assert s.call("block", {"key": "ttl"}).status_code == 504
    run.proc.wait_log("MCP connection TTL reached; no response posted")
    assert parse_duration("1s") == 1.0
    assert result_text(s.call("echo", {"text": "ok after ttl"})) == "ok after ttl"


def test_mcp_inspector_cli_lists_tools_through_the_relay(
    relay_on: Any, faulty: FaultyService, mcp_target: Any
) -> None:
    exe = ROOT / ".test-deps" / "npm" / "node_modules" / ".bin" / "mcp-inspector"
    if not exe.exists() or not shutil.which("node"):
        pytest.fail("the MCP Inspector CLI is installed by scripts/bootstrap")
    run = relay_on("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    out = subprocess.run([str(exe), "--cli", faulty.mcp_url(run.tunnel_id), "--transport", "http",
                          "--method", "tools/list"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "echo" in [t["name"] for t in json.loads(out.stdout)["tools"]]
