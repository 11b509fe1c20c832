"""The MCP feature matrix of docs/protocol.md, measured through the tunnel.

Each row of the matrix is measured here with raw front-door calls (so what the caller sees is
observed exactly) against server-everything over both target kinds, and against the PyPI
servers ``mcp-server-time`` and ``mcp-server-git`` over stdio. The test then reads the matrix
from docs/protocol.md and fails when a row's documented verdict ("works" or not) differs
from the measurement, in either direction: the document cannot drift from the relay.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.support import frontdoor as fd
from tests.support.everything import everything_http, stdio_command
from tests.support.faulty import FaultyService
from tests.support.tunnel import StartClient

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "protocol.md"
WAIT = 20.0
SHORT_DEADLINE = "3s"  # response_timeout of the calls whose outcome is "nothing until the deadline"

CAPABILITIES = {"sampling": {}, "elicitation": {"form": {}}, "roots": {"listChanged": True}}
ROOTS = [{"uri": "file:///srv/project", "name": "project"}]
ANSWERS: dict[str, dict[str, Any]] = {
    "sampling/createMessage": {"role": "assistant", "model": "caller-model",
                               "content": {"type": "text", "text": "sampled by the caller"}},
    "elicitation/create": {"action": "accept", "content": {"name": "Ada Lovelace"}},
    "roots/list": {"roots": ROOTS},
    "ping": {},
}


class Raw:
    """One MCP session through the front door; server-to-client requests are answered as they arrive."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.session: dict[str, str] = {}
        self.asked: list[str] = []

    async def open(self) -> None:
        params = {**fd.initialize_params(), "capabilities": CAPABILITIES}
        status, msgs = await self.rpc("initialize", params)
        assert status == 200 and "result" in msgs[-1], msgs
        ack = await self.notify("notifications/initialized")
        assert ack == 202

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH, **self.session, **extra}

    async def rpc(self, method: str, params: dict[str, Any] | None = None, *, query: str = "",
                  on_message: Callable[[dict[str, Any]], Awaitable[None]] | None = None, rpc_id: Any = None,
                  ) -> tuple[int, list[dict[str, Any]]]:
        """Send one request; returns the HTTP status and every message of the answer, in order."""
        body = fd.request(method, params, rpc_id)
        received: list[dict[str, Any]] = []
        async with self.client.stream("POST", self.url + query, content=json.dumps(body),
                                      headers=self._headers()) as resp:
            if sid := resp.headers.get("mcp-session-id"):
                self.session = {"Mcp-Session-Id": sid, "Mcp-Protocol-Version": fd.PROTOCOL}
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                raw = await resp.aread()
                return resp.status_code, [json.loads(raw)] if raw else []
            async for event in httpx2.EventSource(resp):
                msg = event.json()
                received.append(msg)
                if "method" in msg and "id" in msg:
                    await self._answer(msg)
                if on_message is not None:
                    await on_message(msg)
        return resp.status_code, received

    async def _answer(self, msg: dict[str, Any]) -> None:
        self.asked.append(msg["method"])
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": ANSWERS.get(msg["method"], {})}
        resp = await self.client.post(self.url, content=json.dumps(reply), headers=self._headers())
        assert resp.status_code == 202, resp.text

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> int:
        resp = await self.client.post(self.url, content=json.dumps(fd.notification(method, params)),
                                      headers=self._headers())
        return resp.status_code

    async def call(self, name: str, arguments: dict[str, Any], **kw: Any) -> tuple[int, list[dict[str, Any]]]:
        return await self.rpc("tools/call", {"name": name, "arguments": arguments}, **kw)


def result(msgs: list[dict[str, Any]]) -> dict[str, Any]:
    return msgs[-1].get("result", {}) if msgs else {}


def text(msgs: list[dict[str, Any]]) -> str:
    return "\n".join(c.get("text", "") for c in result(msgs).get("content", []) if isinstance(c, dict))


def methods(msgs: list[dict[str, Any]]) -> list[str]:
    return [m["method"] for m in msgs if "method" in m]


async def measure_everything(raw: Raw) -> dict[str, bool]:
    """Every row of the server-everything matrix: True when the feature works through the tunnel."""
    got: dict[str, bool] = {}
    _, listed = await raw.rpc("tools/list")
    _, echoed = await raw.call("echo", {"message": "hi"})
    got["tools"] = "echo" in {t["name"] for t in result(listed).get("tools", [])} and text(echoed) == "Echo: hi"

    _, structured = await raw.call("get-structured-content", {"location": "Chicago"})
    got["structured content"] = "temperature" in (result(structured).get("structuredContent") or {})

    _, image = await raw.call("get-tiny-image", {})
    got["images"] = any(c.get("type") == "image" and c.get("data") for c in result(image).get("content", []))

    _, listed = await raw.rpc("resources/list")
    uri = result(listed).get("resources", [{}])[0].get("uri", "")
    _, read = await raw.rpc("resources/read", {"uri": uri})
    got["resources: list and read"] = bool(uri) and bool(result(read).get("contents"))

    _, templates = await raw.rpc("resources/templates/list")
    _, dynamic = await raw.rpc("resources/read", {"uri": "demo://resource/dynamic/text/1"})
    got["resource templates"] = bool(result(templates).get("resourceTemplates")) and bool(
        result(dynamic).get("contents"))

    _, level = await raw.rpc("logging/setLevel", {"level": "debug"})
    got["logging/setLevel"] = level[-1].get("result") == {}

    # server-everything acknowledges a subscription with a log message that is not tied to the call.
    _, subscribed = await raw.rpc("resources/subscribe", {"uri": uri})
    got["resources/subscribe"] = subscribed[-1].get("result") == {}
    got["log notifications"] = "notifications/message" in methods(subscribed)

    _, prompts = await raw.rpc("prompts/list")
    _, prompt = await raw.rpc("prompts/get", {"name": "simple-prompt"})
    got["prompts"] = "simple-prompt" in {p["name"] for p in result(prompts).get("prompts", [])} and bool(
        result(prompt).get("messages"))

    _, completed = await raw.rpc("completion/complete", {
        "ref": {"type": "ref/prompt", "name": "completable-prompt"},
        "argument": {"name": "department", "value": "Eng"}})
    got["completions"] = result(completed).get("completion", {}).get("values") == ["Engineering"]

    _, progress = await raw.rpc("tools/call", {"name": "trigger-long-running-operation",
                                               "arguments": {"duration": 1, "steps": 2},
                                               "_meta": {"progressToken": "matrix-progress"}})
    tokens = [m["params"].get("progressToken") for m in progress if m.get("method") == "notifications/progress"]
    got["progress"] = tokens == ["matrix-progress"] * 2 and "completed" in text(progress)

    got["cancellation"] = await measure_cancellation(raw)

    _, sampled = await raw.call("trigger-sampling-request", {"prompt": "matrix"})
    got["sampling"] = "sampled by the caller" in text(sampled)

    _, elicited = await raw.call("trigger-elicitation-request", {})
    got["elicitation"] = "- Name: Ada Lovelace" in text(elicited)

    _, rooted = await raw.call("get-roots-list", {}, query=f"?response_timeout={SHORT_DEADLINE}")
    got["roots"] = ROOTS[0]["uri"] in text(rooted)

    _, pong = await raw.rpc("ping")
    got["ping"] = pong[-1].get("result") == {}

    got["standalone GET stream"] = await measure_get_stream(raw)
    got["session termination"] = await measure_termination(raw)
    return got


async def measure_cancellation(raw: Raw) -> bool:
    """The caller cancels a running call: the server accepts it and withholds the call's result.

    Uncancelled, the call would finish in 1.5 s, well before its deadline; cancelled, the server
    never answers it (server-everything drops the result of a cancelled request), so the stream ends
    at the deadline without a result.
    """
    statuses: list[int] = []
    call_id = fd.next_id()

    async def cancel_once(msg: dict[str, Any]) -> None:
        if msg.get("method") == "notifications/progress" and not statuses:
            statuses.append(await raw.notify("notifications/cancelled", {"requestId": call_id, "reason": "matrix"}))

    _, msgs = await raw.rpc("tools/call", {"name": "trigger-long-running-operation",
                                           "arguments": {"duration": 1.5, "steps": 3},
                                           "_meta": {"progressToken": "matrix-cancel"}},
                            query=f"?response_timeout={SHORT_DEADLINE}", on_message=cancel_once, rpc_id=call_id)
    return statuses == [202] and not any("result" in m for m in msgs)


async def measure_get_stream(raw: Raw) -> bool:
    resp = await raw.client.get(raw.url, headers={"Accept": "text/event-stream", **raw.session})
    return resp.status_code == 200 and resp.headers.get("content-type", "").startswith("text/event-stream")


async def measure_termination(raw: Raw) -> bool:
    """DELETE ends the session: the server says so, and the session's next call is refused."""
    deleted = await raw.client.delete(raw.url, headers=raw.session)
    status, after = await raw.call("echo", {"message": "after delete"})
    return deleted.status_code == 200 and status in (400, 404) and "result" not in after[-1]


# ---- the matrix in docs/protocol.md ----------------------------------------------------------------


def documented(table: str) -> dict[str, list[str]]:
    """Rows of the matrix table named ``table`` (``<!-- matrix:NAME -->``): feature -> cells after the first."""
    text_ = DOC.read_text(encoding="utf-8")
    block = re.search(rf"<!-- matrix:{table} -->\n(.*?)\n\n", text_, re.S)
    assert block, f"docs/protocol.md has no <!-- matrix:{table} --> table"
    rows: dict[str, list[str]] = {}
    for line in block.group(1).splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return rows


def verdict(cell: str) -> bool:
    return cell.lower().startswith("works")


@pytest.fixture(scope="module")
def everything_url() -> Iterator[str]:
    with everything_http() as url:
        yield url


def run_matrix(url: str) -> dict[str, bool]:
    async def go() -> dict[str, bool]:
        async with httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(WAIT)) as client:
            raw = Raw(client, url)
            with anyio.fail_after(WAIT * 4):
                await raw.open()
                return await measure_everything(raw)

    return anyio.run(go)


@pytest.mark.slow
def test_feature_matrix_of_server_everything_matches_the_documentation(
    relay_on: StartClient, faulty: FaultyService, everything_url: str,
) -> None:
    measured: dict[str, dict[str, bool]] = {}
    for column, args in (("http", ["--mcp.server-url", everything_url]), ("stdio", ["--mcp.command", stdio_command()])):
        run = relay_on(*args)
        run.wait_readyz()
        measured[column] = run_matrix(faulty.mcp_url(run.tunnel_id))
    doc = documented("server-everything")
    table = {row: {"http": verdict(cells[1]), "stdio": verdict(cells[2])} for row, cells in doc.items()}
    report = json.dumps(measured, indent=1)
    assert set(table) == set(measured["http"]), f"rows differ from the measured features: {report}"
    drift = [(row, col, measured[col][row]) for row in table for col in ("http", "stdio")
             if table[row][col] != measured[col][row]]
    assert not drift, f"docs/protocol.md says otherwise for (row, target, measured): {drift}\n{report}"


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "commit", "-q", "--allow-empty", "-m", "first commit"]):
        subprocess.run(argv, cwd=repo, env=env, check=True)
    (repo / "new.txt").write_text("untracked\n")
    return repo


@pytest.mark.slow
def test_pypi_servers_over_stdio_match_the_documentation(
    relay_on: StartClient, faulty: FaultyService, git_repo: Path,
) -> None:
    bin_dir = Path(sys.executable).parent
    time_run = relay_on("--mcp.command", f"{bin_dir / 'mcp-server-time'} --local-timezone UTC")
    git_run = relay_on("--mcp.command", f"{bin_dir / 'mcp-server-git'} --repository {git_repo}")
    time_run.wait_readyz()
    git_run.wait_readyz()

    async def go() -> dict[str, bool]:
        got: dict[str, bool] = {}
        async with httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(WAIT)) as client:
            with anyio.fail_after(WAIT * 2):
                clock = Raw(client, faulty.mcp_url(time_run.tunnel_id))
                await clock.open()
                _, now = await clock.call("get_current_time", {"timezone": "UTC"})
                got["mcp-server-time"] = (result(now).get("structuredContent") or {}).get("timezone") == "UTC"
                git = Raw(client, faulty.mcp_url(git_run.tunnel_id))
                await git.open()
                _, status = await git.call("git_status", {"repo_path": str(git_repo)})
                _, log = await git.call("git_log", {"repo_path": str(git_repo)})
                _, outside = await git.call("git_status", {"repo_path": "/"})
                got["mcp-server-git"] = ("new.txt" in text(status) and "first commit" in text(log)
                                         and result(outside).get("isError") is True)
        return got

    measured = anyio.run(go)
    doc = {row: verdict(cells[-1]) for row, cells in documented("pypi").items()}
    assert doc == measured, f"docs/protocol.md says {doc}, measured {measured}"
