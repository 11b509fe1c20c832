"""Harpoon's operator surface with a real ``run``: ``/api/harpoon*``, ``harpoon_*`` metrics,
``--harpoon.capture-payloads`` and ``--harpoon.additional-transport http-streamable``.

caller --front door ?channel=harpoon--> run --HTTP--> allow-listed loopback target
an MCP SDK client --POST /harpoon/mcp on the operator listener--> the same Harpoon server
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.proc import WAIT, run_cli
from tests.support.relay import Relay, relay, relay_env
from tests.support.servers import RunningServer, background_loop

INSPECTOR = Path(__file__).resolve().parents[2] / ".test-deps" / "npm" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.fixture(scope="module")
def target() -> Iterator[RunningServer]:
    """An allow-listed HTTP endpoint: JSON naming its own URL, and a body over Harpoon's size cap."""

    async def data(request: Request) -> Response:
        return JSONResponse({"self": str(request.url), "value": 42})

    async def big(_: Request) -> Response:
        return Response(b"x" * 200_000, media_type="application/octet-stream")

    with background_loop() as bg:
        server = bg.serve(Starlette(routes=[Route("/data", data, methods=["GET", "POST"]), Route("/big", big)]))
        yield server
        server.stop()


def _harpoon_args(target: RunningServer, *extra: str) -> list[str]:
    return ["--harpoon.target", f"label=api,url={target.url}/data,desc=test api",
            "--harpoon.target", f"label=big,url={target.url}/big", "--harpoon.allow-plaintext-http", *extra]


def _rpc(url: str, method: str, params: dict[str, Any], rpc_id: int) -> dict[str, Any]:
    resp = httpx2.post(url, json={"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params},
                       headers={"Accept": "application/json, text/event-stream"}, timeout=WAIT, trust_env=False)
    assert resp.status_code == 200, resp.text
    text = resp.text
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
    answer: dict[str, Any] = json.loads(text)
    return answer


def _call_target(r: Relay, rpc_id: int, **arguments: Any) -> dict[str, Any]:
    url = f"{r.mcp_url}?channel=harpoon"
    result: dict[str, Any] = _rpc(url, "tools/call", {"name": "call_target", "arguments": arguments}, rpc_id)["result"]
    return result


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def test_calls_are_counted_listed_and_captured(tmp_path: Path, target: RunningServer) -> None:
    with relay(tmp_path, _harpoon_args(target, "--harpoon.capture-payloads")) as r:
        _rpc(f"{r.mcp_url}?channel=harpoon", "initialize",
             {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}, 1)
        ok = _call_target(r, 2, label="api", method="POST", body='{"q":"probe-body-71"}')
        assert ok["isError"] is False
        answer = json.loads(base64.b64decode(ok["structuredContent"]["body_base64"]))
        assert answer == {"self": "harpoon://api", "value": 42}  # the target's own URL never leaves
        too_big = _call_target(r, 3, label="big", method="GET")
        assert too_big["isError"] is True and "exceeds 102400 bytes" in too_big["content"][0]["text"]
        unknown = _call_target(r, 4, label="nope", method="GET")
        assert unknown["isError"] is True

        status = r.ops("/api/harpoon/status").json()
        assert status["enabled"] is True and status["capture_payloads"] is True
        assert (status["max_response_bytes"], status["max_redirects"], status["allow_plaintext_http"]) == (
            102400, 5, True)
        targets = {t["label"]: t for t in r.ops("/api/harpoon/targets").json()["targets"]}
        assert targets["api"]["url"] == f"{target.url}/data" and targets["api"]["description"] == "test api"
        assert targets["api"]["inclusion_reason"] == "configured" and targets["big"]["source"] == "config"
        # the demo MCP server advertises OAuth metadata, so discovery registered its endpoints too
        assert all(t["source"] == "oauth" for label, t in targets.items() if label not in ("api", "big"))

        calls = r.ops("/api/harpoon/calls").json()["calls"]
        assert [c["label"] for c in calls] == ["__unknown__", "big", "api"]  # newest first
        api = calls[2]
        assert (api["method"], api["status"], api["url"]) == ("POST", 200, f"{target.url}/data")
        assert api["request_body"] == '{"q":"probe-body-71"}' and api["body_is_base64"] is False
        assert json.loads(api["response_body"])["self"] == f"{target.url}/data"
        assert json.loads(api["response_body_transformed"])["self"] == "harpoon://api"
        assert api["req_bytes"] == len('{"q":"probe-body-71"}') and api["resp_bytes"] > 0
        assert "exceeds" in calls[1]["error"] and "unknown target" in calls[0]["error"]
        assert [c["label"] for c in r.ops("/api/harpoon/calls?label=big").json()["calls"]] == ["big"]
        assert len(r.ops("/api/harpoon/calls?limit=1").json()["calls"]) == 1
        overview = r.ops("/api/harpoon").json()
        assert overview["status"]["enabled"] is True and len(overview["calls"]) == 3

        text = r.metrics()
        assert _metric(text, "harpoon_call_total", label="api", status_class="2xx", outcome="success") == 1
        assert _metric(text, "harpoon_call_total", label="big", outcome="response_too_large") == 1
        assert _metric(text, "harpoon_call_total", label="__unknown__", status_class="none",
                       outcome="invalid_input") == 1
        assert _metric(text, "harpoon_call_latency_milliseconds_count", label="api", outcome="success") == 1
        assert _metric(text, "harpoon_response_size_bytes_count", label="api", outcome="success") == 1
        assert _metric(text, "harpoon_response_size_bytes_sum", label="api", outcome="success") == api["resp_bytes"]


def test_bodies_are_kept_only_when_capture_is_on(tmp_path: Path, target: RunningServer) -> None:
    with relay(tmp_path, _harpoon_args(target)) as r:
        assert _call_target(r, 1, label="api", method="GET")["isError"] is False
        (call,) = r.ops("/api/harpoon/calls").json()["calls"]
        assert call["status"] == 200
        assert not {"request_body", "response_body", "response_body_transformed", "body_is_base64"} & set(call)
        assert r.ops("/api/harpoon/status").json()["capture_payloads"] is False
        assert r.ops("/harpoon/mcp").status_code == 404  # the extra transport is off by default


async def _sdk_session(url: str) -> tuple[set[str], dict[str, Any]]:
    async with httpx2.AsyncClient(trust_env=False, timeout=WAIT) as http, \
            Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("call_target", {"label": "api", "method": "GET"})
        return tools, dict(result.structured_content or {})


def test_additional_transport_serves_harpoon_to_an_mcp_sdk_client(tmp_path: Path, target: RunningServer) -> None:
    env = relay_env(tmp_path, HARPOON_ADDITIONAL_TRANSPORTS="http-streamable")
    with relay(tmp_path, _harpoon_args(target), env=env) as r:
        url = f"{r.health_url}/harpoon/mcp"

        async def go() -> tuple[set[str], dict[str, Any]]:
            with anyio.fail_after(WAIT):
                return await _sdk_session(url)

        tools, result = anyio.run(go)
        assert tools == {"list_targets", "call_target", "get_oauth_target_audience"}
        assert result["status_code"] == 200
        assert json.loads(base64.b64decode(result["body_base64"]))["self"] == "harpoon://api"
        # the same server: the call shows in the history and the metrics
        assert r.ops("/api/harpoon/calls").json()["calls"][0]["label"] == "api"
        assert _metric(r.metrics(), "harpoon_call_total", label="api", outcome="success") == 1
        listed = subprocess.run([str(INSPECTOR), "--cli", url, "--transport", "http", "--method", "tools/list"],
                                env=env, capture_output=True, text=True, timeout=WAIT)
        assert listed.returncode == 0, listed.stderr  # the command docs/oauth.md shows
        assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == tools
        get = httpx2.get(url, timeout=WAIT, trust_env=False)
        assert get.status_code == 405 and get.headers["allow"] == "POST"
        bad = httpx2.post(url, content=b"{not json", timeout=WAIT, trust_env=False)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
        note = httpx2.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, timeout=WAIT,
                           trust_env=False)
        assert note.status_code == 202


def test_an_unknown_transport_is_refused_at_start(tmp_path: Path) -> None:
    done = run_cli(["run", "--control-plane.tunnel-id", "tunnel_" + "b" * 32, "--embedded-mcp-stub",
                    "--harpoon.additional-transport", "websocket"], relay_env(tmp_path))
    assert done.returncode == 1
    assert ("--harpoon.additional-transport / HARPOON_ADDITIONAL_TRANSPORTS / harpoon.additional_transports: "
            "'websocket' is not a Harpoon transport; use http-streamable") in done.stderr
