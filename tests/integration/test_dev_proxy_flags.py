"""``dev proxy --listen-unix-socket``, ``--profile``/``--profile-file``/``--profile-dir``,
``--client-last-seen-timeout`` and ``--backend``, each as a real process (and, for the
last-seen rule, the tunnel service on a real socket with a hand-driven poller)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.faulty import STDIO_COMMAND
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env, run_cli, wait_until
from tests.support.servers import BackgroundLoop, RunningServer, background_loop
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker

TUNNEL = "tunnel_" + "5" * 32
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def _messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
    return [resp.json()]


def _call(client: httpx2.Client, url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A handshake-era session: initialize, initialized, then one tools/call."""
    init = client.post(url, json=INIT, headers=ACCEPT)
    assert init.status_code == 200, init.text
    headers = {**ACCEPT, "Mcp-Protocol-Version": "2025-06-18"}
    if sid := init.headers.get("mcp-session-id"):
        headers["Mcp-Session-Id"] = sid
    client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    resp = client.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                  "params": {"name": name, "arguments": arguments}}, headers=headers)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = _messages(resp)[-1]["result"]
    return result


def _proxy(home: Path, *args: str) -> Proc:
    return Proc([TUNNEL_CLIENT, "dev", "proxy", "--tunnel-id", TUNNEL, *args], base_env(home))


def test_front_door_on_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "run" / "mcp.sock"  # the parent is created
    url_file = tmp_path / "proxy.json"
    proc = _proxy(tmp_path, "--listen-unix-socket", str(sock), "--url-file", str(url_file))
    try:
        assert proc.wait_stdout(r"^MCP Unix socket: (.+)$").group(1) == str(sock)
        assert proc.wait_stdout(r"^MCP URL path: (.+)$").group(1) == f"/v1/mcp/{TUNNEL}"
        desc = json.loads(url_file.read_text())
        assert (desc["mcp_transport"], desc["mcp_unix_socket"], desc["mcp_url"]) == ("unix", str(sock), "")
        assert desc["mcp_url_path"] == f"/v1/mcp/{TUNNEL}"
        with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(sock)), timeout=WAIT) as client:
            result = _call(client, f"http://localhost/v1/mcp/{TUNNEL}", "echo", {"input": "over a socket"})
        assert result["structuredContent"] == {"echoed": "over a socket"}
        assert proc.terminate() == 0
        assert not sock.exists()
    finally:
        proc.kill()


def test_listen_and_listen_unix_socket_are_exclusive(tmp_path: Path) -> None:
    done = run_cli(["dev", "proxy", "--listen", "127.0.0.1:0", "--listen-unix-socket", str(tmp_path / "s")],
                   base_env(tmp_path))
    assert (done.returncode, done.stdout) == (1, "")
    assert "--listen and --listen-unix-socket are mutually exclusive" in done.stderr


@pytest.mark.parametrize("how", ["profile", "profile-file"])
def test_client_configuration_from_a_profile(tmp_path: Path, how: str) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    # the profile's own control plane and tunnel id are replaced by the proxy's
    (profiles / "stdio-demo.yaml").write_text(
        "config_version: 1\n"
        "control_plane:\n  base_url: https://api.openai.com\n  tunnel_id: tunnel_" + "0" * 32 + "\n"
        "admin_ui:\n  open_browser: true\n"  # init --open-web-ui writes this; a dev proxy ignores it
        "mcp:\n  commands:\n    - channel: main\n      command: " + STDIO_COMMAND + "\n")
    selection = (["--profile", "stdio-demo", "--profile-dir", str(profiles)] if how == "profile"
                 else ["--profile-file", str(profiles / "stdio-demo.yaml")])
    proc = _proxy(tmp_path, *selection, "--log.level", "info")
    try:
        url = proc.wait_stdout(r"^MCP URL: (\S+)$").group(1)
        # a browser would have been started (and logged) before the URL is printed
        assert "opening the web UI" not in proc.output() and "cannot open the web UI" not in proc.output()
        assert url.endswith(f"/v1/mcp/{TUNNEL}")
        with httpx2.Client(timeout=WAIT, trust_env=False) as client:
            result = _call(client, url, "echo", {"text": "from the profile's stdio server"})
        assert result["content"][0]["text"] == "from the profile's stdio server"  # not the demo server
    finally:
        proc.kill()


def test_profile_selection_errors_name_the_flag(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    both = run_cli(["dev", "proxy", "--profile", "a", "--profile-file", str(tmp_path / "a.yaml")], env)
    assert both.returncode == 1 and "--profile and --profile-file are mutually exclusive" in both.stderr
    missing = run_cli(["dev", "proxy", "--profile", "nope", "--profile-dir", str(tmp_path)], env)
    assert missing.returncode == 1 and f"--profile: profile 'nope' not found at {tmp_path}/nope.yaml" in missing.stderr
    assert "Traceback" not in both.stderr + missing.stderr


def test_backend_and_last_seen_values_are_checked(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    rust = run_cli(["dev", "proxy", "--backend", "rust"], env)
    assert rust.returncode == 1 and "--backend rust: unavailable in this build" in rust.stderr
    zero = run_cli(["dev", "proxy", "--client-last-seen-timeout", "0s"], env)
    assert zero.returncode == 1 and "--client-last-seen-timeout: must be greater than 0" in zero.stderr


def test_service_health_shows_the_client_connected(tmp_path: Path) -> None:
    proc = _proxy(tmp_path, "--backend", "auto", "--client-last-seen-timeout", "5s", "--print-json")
    try:
        desc = json.loads(proc.wait_stdout(r"^\{.*\}$").group(0))
        assert desc["backend"] == "python"
        health = httpx2.get(desc["control_plane_base_url"] + "/healthz", timeout=WAIT, trust_env=False).json()
        (tunnel,) = health["tunnels"]
        assert (tunnel["tunnel_id"], tunnel["connected"]) == (TUNNEL, True)
    finally:
        proc.kill()


# ---- the last-seen rule at the tunnel service, with a poller driven by hand


@pytest.fixture
def service() -> Iterator[tuple[BackgroundLoop, RunningServer]]:
    broker = Broker()
    broker.add_tunnel(TUNNEL)
    app = build_service_app(broker, ServiceConfig(runtime_keys={"rk_" + "k" * 20}, response_timeout=10.0,
                                                  client_last_seen_timeout=0.5))
    with background_loop() as bg:
        server = bg.serve(app)
        yield bg, server
        server.stop()


def test_a_tunnel_nobody_polls_is_refused_at_once_and_served_while_polled(
    service: tuple[BackgroundLoop, RunningServer],
) -> None:
    _, server = service
    door = f"{server.url}/v1/mcp/{TUNNEL}"
    with httpx2.Client(timeout=WAIT, trust_env=False) as client:
        started = time.monotonic()
        refused = client.post(door, json=INIT, headers=ACCEPT)
        assert refused.status_code == 503 and time.monotonic() - started < 5  # not the 10 s response timeout
        assert refused.json()["error"]["code"] == "tunnel_client_not_seen"
        assert "no tunnel-client has polled tunnel" in refused.json()["error"]["message"]
        assert client.get(f"{server.url}/healthz").json()["tunnels"][0]["connected"] is False

        # a client polls: the next call is queued for it and answered through the response route
        with httpx2.Client(timeout=WAIT, trust_env=False) as poller:
            auth = {"Authorization": "Bearer rk_" + "k" * 20}
            got: dict[str, Any] = {}

            def poll() -> None:
                got["poll"] = poller.get(f"{server.url}/v1/tunnels/{TUNNEL}/poll?limit=1&timeout_ms=8000",
                                         headers=auth)

            t = threading.Thread(target=poll)
            t.start()
            wait_until(lambda: client.get(f"{server.url}/healthz").json()["tunnels"][0]["connected"],
                       "the poll to register")
            caller: dict[str, Any] = {}

            def call() -> None:
                caller["resp"] = client.post(door, json=INIT, headers=ACCEPT)

            c = threading.Thread(target=call)
            c.start()
            t.join(WAIT)
            (command,) = got["poll"].json()["commands"]
            answer = {"request_id": command["request_id"], "channel": "main", "resp_code": 200,
                      "resp_type": "jsonrpc_response",
                      "resp_json": {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}}
            posted = poller.post(f"{server.url}/v1/tunnels/{TUNNEL}/response", json=answer,
                                 headers={**auth, "X-Tunnel-Shard-Token": command["shard_token"]})
            assert posted.status_code == 200
            c.join(WAIT)
            assert caller["resp"].status_code == 200
            assert _messages(caller["resp"])[-1]["result"] == {"ok": True}
