"""Server-to-client requests (sampling, elicitation, roots, ping) through the tunnel, both target kinds.

An MCP server may ask its caller something in the middle of a call: it sends a JSON-RPC
request inside the call's stream, the caller answers with a POST of its own in the same
session, and only then does the call complete. These tests drive that through the real
relay with real MCP peers: server-everything (npm) over HTTP and stdio, the official ``mcp``
SDK client with its callbacks, and raw front-door calls where the wire shape matters.
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from mcp import Client, types

from tests.support import frontdoor as fd
from tests.support.codex_env import codex_search_path, run_turn
from tests.support.everything import everything_http, stdio_command
from tests.support.fake_model import (
    API_KEY_ENV,
    Call,
    FakeModel,
    Say,
    offered_tools,
    running_fake_model,
    tool_outputs,
)
from tests.support.faulty import FaultyService
from tests.support.inflight import replay
from tests.support.proc import TUNNEL_CLIENT, Proc, base_env, wait_until
from tests.support.redis_helpers import QUEUE_KEY, RedisServer, ServiceProc, running_redis, start_service
from tests.support.servers import BackgroundLoop
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, StartClient, new_tunnel_id, start_client

WAIT = 20.0
TARGETS = ["http", "stdio"]
T = TypeVar("T")


@pytest.fixture(scope="module")
def everything_url() -> Iterator[str]:
    with everything_http() as url:
        yield url


def target_args(kind: str, http_url: str) -> list[str]:
    return ["--mcp.server-url", http_url] if kind == "http" else ["--mcp.command", stdio_command()]


@dataclass
class Caller:
    """The caller's side of server-to-client requests: what each callback was asked."""

    sampled: list[str] = field(default_factory=list)
    elicited: list[str] = field(default_factory=list)
    roots_asked: int = 0

    async def sampling(self, ctx: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        content = params.messages[0].content
        self.sampled.append(content.text if isinstance(content, types.TextContent) else repr(content))
        return types.CreateMessageResult(role="assistant", model="caller-model",
                                         content=types.TextContent(type="text", text="sampled by the caller"))

    async def elicitation(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicited.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "answer": "42"})

    async def roots(self, ctx: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/project", name="project")])

    def client(self, url: str) -> Client:
        return Client(url, mode="legacy", read_timeout_seconds=WAIT, sampling_callback=self.sampling,
                      elicitation_callback=self.elicitation, list_roots_callback=self.roots)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


@pytest.mark.parametrize("kind", TARGETS)
def test_sdk_client_answers_sampling_and_elicitation_and_the_session_stays_usable(
    kind: str, relay_on: StartClient, faulty: FaultyService, everything_url: str,
) -> None:
    run = relay_on(*target_args(kind, everything_url))
    run.wait_readyz()
    caller = Caller()

    async def go() -> tuple[types.CallToolResult, ...]:
        async with caller.client(faulty.mcp_url(run.tunnel_id)) as c:
            sampled = await c.call_tool("trigger-sampling-request", {"prompt": "relay me"})
            elicited = await c.call_tool("trigger-elicitation-request", {})
            # server-everything asks for roots inside the call only over stdio (over HTTP it uses its
            # standalone stream, which the tunnel does not relay: see the feature matrix).
            rooted = await c.call_tool("get-roots-list", {}) if kind == "stdio" else None
            after = await c.call_tool("echo", {"message": "still here"})
            return sampled, elicited, after, *([rooted] if rooted else [])

    sampled, elicited, after, *rooted = anyio.run(go)
    if kind == "stdio":
        assert caller.roots_asked >= 1 and "URI: file:///srv/project" in text_of(rooted[0])
    # Each callback was asked what the server asked, and the server received what the callback answered.
    assert caller.sampled == ["Resource trigger-sampling-request context: relay me"]
    assert not sampled.is_error and "sampled by the caller" in text_of(sampled)
    assert caller.elicited == ["Please provide inputs for the following fields:"]
    assert not elicited.is_error and "- Name: Ada Lovelace" in text_of(elicited)
    assert text_of(after) == "Echo: still here"


def test_answers_reach_the_server_while_the_only_worker_waits_for_them(
    relay_on: StartClient, faulty: FaultyService, everything_url: str,
) -> None:
    # The call holds the client's only worker until the caller's answer arrives: the answer must not
    # queue behind it, or the call could never finish.
    run = relay_on("--mcp.server-url", everything_url, "--mcp.max-concurrent-requests", "1")
    run.wait_readyz()
    caller = Caller()

    async def go() -> str:
        async with caller.client(faulty.mcp_url(run.tunnel_id)) as c:
            return text_of(await c.call_tool("trigger-sampling-request", {"prompt": "one worker"}))

    assert "sampled by the caller" in anyio.run(go)
    assert len(caller.sampled) == 1


@dataclass
class PatientCaller(Caller):
    """Answers no elicitation until ``together`` of them are waiting, so that many calls wait at once."""

    together: int = 2
    waiting: int = 0
    _all_asked: anyio.Event | None = None

    async def elicitation(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self._all_asked = self._all_asked or anyio.Event()
        self.waiting += 1
        if self.waiting >= self.together:
            self._all_asked.set()
        with anyio.fail_after(WAIT):
            await self._all_asked.wait()
        return await super().elicitation(ctx, params)


@pytest.mark.parametrize("kind", TARGETS)
def test_two_calls_waiting_for_their_caller_at_max_inflight_one_both_get_their_answers(
    kind: str, relay_on: StartClient, faulty: FaultyService, everything_url: str,
) -> None:
    # The first call waits for its caller in the client's only slot, with its only worker. Its answer,
    # and the second call (which asks too, and is queued first), can only come through polls: the
    # client must keep polling while every call it holds is parked, within its bound (2 x 1 + 1
    # held), and the second call must get the worker the first one no longer uses.
    run = relay_on(*target_args(kind, everything_url), "--control-plane.max-inflight", "1",
                   "--mcp.max-concurrent-requests", "1")
    run.wait_readyz()
    caller = PatientCaller(together=2)

    async def go() -> list[types.CallToolResult]:
        results: list[types.CallToolResult] = []
        async with caller.client(faulty.mcp_url(run.tunnel_id)) as c:
            async def one() -> None:
                results.append(await c.call_tool("trigger-elicitation-request", {}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
            results.append(await c.call_tool("echo", {"message": "still here"}))
        return results

    first, second, after = anyio.run(go)
    assert caller.elicited == ["Please provide inputs for the following fields:"] * 2
    for result in (first, second):
        assert not result.is_error and "- Name: Ada Lovelace" in text_of(result)
    assert text_of(after) == "Echo: still here"
    wire = replay(faulty.runtime_requests(run.tunnel_id))
    wire.assert_bounds(1)
    assert any(p.held == 2 and p.parked == 2 and p.limit == 1 for p in wire.polls), wire.polls


def test_calls_whose_caller_never_answers_hold_at_most_twice_max_inflight_plus_one(
    relay_on: StartClient, faulty: FaultyService, mcp_target: MCPTarget,
) -> None:
    # Four calls ask a caller who never answers, at max-inflight 1. The client takes three (the
    # bound: 2 x 1 + 1) and only takes the fourth once its server's own timeout has ended one of them.
    run = relay_on("--mcp.server-url", mcp_target.url, "--control-plane.max-inflight", "1")
    run.wait_readyz()
    url = faulty.mcp_url(run.tunnel_id)
    asked: list[str] = []

    async def scenario(client: httpx2.AsyncClient, session: dict[str, str]) -> list[list[dict[str, Any]]]:
        async def ignore(msg: dict[str, Any]) -> None:
            asked.append(msg["params"]["message"])

        finals: list[list[dict[str, Any]]] = []

        async def one(i: int) -> None:
            status, received = await stream_call(client, url, session, ask_call(f"q{i}", 1.2), ignore)
            assert status == 200
            finals.append(received)

        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(one, i)
        return finals

    finals = in_session(url, scenario)
    assert sorted(asked) == ["q0", "q1", "q2", "q3"]
    for received in finals:
        result = received[-1]["result"]
        assert result["isError"] is True and "no answer from the caller" in result["content"][0]["text"]
    wire = replay(faulty.runtime_requests(run.tunnel_id))
    wire.assert_bounds(1)
    assert wire.peak_held == 3
    # The fourth call was delivered only after a terminal response: never four held at once.
    polls_with_a_call = [p for p in wire.polls if p.limit]
    assert polls_with_a_call and all(p.held <= 2 for p in polls_with_a_call)


async def stream_call(client: httpx2.AsyncClient, url: str, session: dict[str, str], call: dict[str, Any],
                      on_request: Any) -> tuple[int, list[dict[str, Any]]]:
    """POST ``call`` and read its SSE stream; ``on_request(msg)`` runs for each server-to-client request."""
    headers = {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH, **session}
    received: list[dict[str, Any]] = []
    async with client.stream("POST", url, content=json.dumps(call), headers=headers) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream"), await resp.aread()
        async for event in httpx2.EventSource(resp):
            msg = event.json()
            received.append(msg)
            if "method" in msg and "id" in msg:
                await on_request(msg)
    return resp.status_code, received


Scenario = Callable[[httpx2.AsyncClient, dict[str, str]], Awaitable[T]]


def in_session(url: str, scenario: Scenario[T]) -> T:
    """Open an MCP session through the front door at ``url`` and run ``scenario(client, session_headers)``."""

    async def go() -> T:
        async with fd.http_client() as client:
            with anyio.fail_after(WAIT):
                return await scenario(client, await fd.open_session(client, url))

    return anyio.run(go)


def http_relay(relay_on: StartClient, target: MCPTarget) -> ClientRun:
    run = relay_on("--mcp.server-url", target.url)
    run.wait_readyz()
    return run


def ask_call(question: str, timeout: float) -> dict[str, Any]:
    return fd.request("tools/call", {"name": "ask", "arguments": {"question": question, "timeout": timeout}})


def test_wire_shapes_of_a_server_request_and_the_callers_answer(
    relay_on: StartClient, faulty: FaultyService, mcp_target: MCPTarget,
) -> None:
    run = http_relay(relay_on, mcp_target)
    url = faulty.mcp_url(run.tunnel_id)
    call = ask_call("What is the answer?", WAIT)
    answers: list[httpx2.Response] = []

    async def scenario(client: httpx2.AsyncClient, session: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
        async def answer(msg: dict[str, Any]) -> None:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": {"action": "accept", "content": {"answer": "42"}}}
            resp, _ = await fd.post(client, url, reply, session)
            answers.append(resp)

        return await stream_call(client, url, session, call, answer)

    status, received = in_session(url, scenario)
    assert status == 200
    # The caller sees the server's request exactly as sent: its own id, method and params.
    request, final = received
    assert request["method"] == "elicitation/create" and request["params"]["message"] == "What is the answer?"
    assert request["id"] != call["id"]
    # The answer is a plain POST in the same session, acknowledged like a notification (202, no body).
    assert [a.status_code for a in answers] == [202] and answers[0].content == b""
    assert final["id"] == call["id"] and final["result"]["content"][0]["text"] == "accept: 42"
    acks = [r["body"] for r in faulty.records(run.tunnel_id, "response") if r["body"]["resp_type"] == "notify_ack"]
    assert any(a["resp_code"] == 202 for a in acks)


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")  # still in every handshake-era client
def test_server_ping_and_a_log_message_tied_to_the_call_reach_the_caller(
    relay_on: StartClient, faulty: FaultyService, mcp_target: MCPTarget,
) -> None:
    url = faulty.mcp_url(http_relay(relay_on, mcp_target).tunnel_id)

    async def scenario(client: httpx2.AsyncClient, session: dict[str, str]) -> tuple[list[Any], list[Any]]:
        async def pong(msg: dict[str, Any]) -> None:
            resp, _ = await fd.post(client, url, {"jsonrpc": "2.0", "id": msg["id"], "result": {}}, session)
            assert resp.status_code == 202

        ping = fd.request("tools/call", {"name": "ping_caller", "arguments": {}})
        _, pinged = await stream_call(client, url, session, ping, pong)
        level, _ = await fd.post(client, url, fd.request("logging/setLevel", {"level": "info"}), session)
        assert level.status_code == 200
        shout = fd.request("tools/call", {"name": "shout", "arguments": {"text": "heard inside the call"}})
        _, shouted = await stream_call(client, url, session, shout, pong)
        return pinged, shouted

    pinged, shouted = in_session(url, scenario)
    assert [m.get("method") for m in pinged] == ["ping", None]
    assert pinged[-1]["result"]["content"][0]["text"] == "pong"
    logs = [m["params"] for m in shouted if m.get("method") == "notifications/message"]
    assert [(p["level"], p["data"]) for p in logs] == [("info", "heard inside the call")]
    assert shouted[-1]["result"]["content"][0]["text"] == "heard inside the call"


def test_caller_that_never_answers_gets_the_servers_own_timeout_not_a_relay_failure(
    relay_on: StartClient, faulty: FaultyService, mcp_target: MCPTarget,
) -> None:
    url = faulty.mcp_url(http_relay(relay_on, mcp_target).tunnel_id)
    asked: list[dict[str, Any]] = []

    async def scenario(client: httpx2.AsyncClient, session: dict[str, str]) -> tuple[int, list[dict[str, Any]]]:
        async def ignore(msg: dict[str, Any]) -> None:
            asked.append(msg)

        return await stream_call(client, url, session, ask_call("Anyone there?", 0.5), ignore)

    status, received = in_session(url, scenario)
    assert status == 200 and len(asked) == 1
    final = received[-1]["result"]
    assert final["isError"] is True
    assert "no answer from the caller: Request 'elicitation/create' timed out" in final["content"][0]["text"]
    assert "tunnel_failure" not in json.dumps(received)


def test_answer_taken_by_another_client_of_the_tunnel_reaches_the_same_session(
    relay_on: StartClient, faulty: FaultyService, mcp_target: MCPTarget, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client holding the call is paused (SIGSTOP) while the caller answers, once its waiting
    # poll (if any) has ended: only the other client can take the answer, which must still reach
    # the server in the call's session. Then the paused client resumes and relays the result.
    # (A parked call lets its own client poll again, so without the pause either may take it.)
    one = ("--mcp.server-url", mcp_target.url, "--control-plane.max-inflight", "1",
           "--control-plane.poll-timeout", "1s")
    a = relay_on(*one)
    b = relay_on(*one, tunnel_id=a.tunnel_id)
    a.wait_readyz()
    b.wait_readyz()
    runs = {instance_id(run): run for run in (a, b)}
    waiting: collections.Counter[str] = collections.Counter()  # polls waiting in the service, by client
    real_poll = faulty.broker.poll

    async def counted_poll(tunnel_id: str, limit: int, timeout: float, channels: set[str] | None, *,
                           poller: Any = None, allowed: Callable[[], bool] = lambda: True) -> list[dict[str, Any]]:
        who = poller.instance_id if poller is not None else ""
        waiting[who] += 1
        try:
            return await real_poll(tunnel_id, limit, timeout, channels, poller=poller, allowed=allowed)
        finally:
            waiting[who] -= 1

    monkeypatch.setattr(faulty.broker, "poll", counted_poll)
    paused: list[ClientRun] = []
    is_call = lambda m: m.get("method") == "tools/call"  # noqa: E731
    is_answer = lambda m: "result" in m  # noqa: E731

    def resume_once_the_answer_is_taken(holder: str) -> None:
        other = (set(runs) - {holder}).pop()
        wait_until(lambda: other in polled_by(faulty, a.tunnel_id, is_answer), "the other client to take the answer")
        os.kill(runs[holder].proc.pid, signal.SIGCONT)

    class PausingCaller(Caller):
        async def elicitation(self, ctx: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
            (holder,) = polled_by(faulty, a.tunnel_id, is_call)
            os.kill(runs[holder].proc.pid, signal.SIGSTOP)
            paused.append(runs[holder])
            await anyio.to_thread.run_sync(
                lambda: wait_until(lambda: waiting[holder] == 0, "the paused client's poll to end"))
            threading.Thread(target=resume_once_the_answer_is_taken, args=(holder,), daemon=True).start()
            return await super().elicitation(ctx, params)

    caller = PausingCaller()

    async def go() -> str:
        async with caller.client(faulty.mcp_url(a.tunnel_id)) as c:
            return text_of(await c.call_tool("ask", {"question": "Who answers?", "timeout": WAIT}))

    try:
        assert anyio.run(go) == "accept: 42"
    finally:
        for run in paused:
            os.kill(run.proc.pid, signal.SIGCONT)
    assert caller.elicited == ["Who answers?"] and len(paused) == 1
    call_by = handled_by(faulty, a.tunnel_id, is_call)
    answer_by = handled_by(faulty, a.tunnel_id, is_answer)
    assert len(call_by) == 1 and len(answer_by) == 1 and call_by != answer_by


def instance_id(run: ClientRun) -> str:
    return next(str(r["client_instance_id"]) for r in run.proc.log_records() if r.get("msg") == "tunnel-client started")


def polled_by(service: FaultyService, tunnel_id: str, match: Any) -> set[str]:
    """Instance ids of the clients whose polls returned commands whose JSON-RPC ``match``es."""
    return {str(rec.header("x-tunnel-client-instance-id")) for rec in service.runtime_requests(tunnel_id)
            if rec.method == "GET" and rec.path.endswith("/poll") and rec.status == 200
            and any(match(c.get("jsonrpc") or {}) for c in rec.response_json()["commands"])}


def handled_by(service: FaultyService, tunnel_id: str, match: Any) -> set[str]:
    """Instance ids of the clients that posted the terminal response of commands whose JSON-RPC ``match``es."""
    ids = set()
    for rec in service.runtime_requests(tunnel_id):
        if rec.method == "GET" and rec.path.endswith("/poll") and rec.status == 200:
            ids |= {c["request_id"] for c in rec.response_json()["commands"] if match(c.get("jsonrpc") or {})}
    return {str(rec.header("x-tunnel-client-instance-id")) for rec in service.posted_responses(tunnel_id)
            if rec.json()["request_id"] in ids and rec.json()["resp_type"] != "jsonrpc_notify"}


# ---- real Codex as the hosted client --------------------------------------------------------------

CODEX_SERVER = "tunnel-client"  # the name codex_env waits for; the model sees namespace mcp__tunnel_client
NAMESPACE = "mcp__tunnel_client"
# Codex shows the model MCP tool names with "-" turned into "_".
CODEX_PLAN = [("call_elicit", "trigger_elicitation_request", {}),
              ("call_echo", "echo", {"message": "after the elicitation"})]


@pytest.fixture(scope="module")
def fake(bg: BackgroundLoop) -> Iterator[FakeModel]:
    with running_fake_model(bg, lambda body: [Say("nothing scripted")]) as model:
        yield model


def plan_policy(missing: list[str]) -> Any:
    """Call each tool of CODEX_PLAN in turn, failing the turn when the tool is not offered in that request."""

    def policy(body: dict[str, Any]) -> list[Say | Call]:
        done = tool_outputs(body)
        for call_id, tool, args in CODEX_PLAN:
            if call_id in done:
                continue
            if (NAMESPACE, tool) not in offered_tools(body):
                missing.append(tool)
                return [Say(f"I cannot call {tool}: it is not in my tool list.")]
            return [Call(tool, args, namespace=NAMESPACE, call_id=call_id)]
        return [Say("Both tools answered.")]

    return policy


@pytest.mark.slow
@pytest.mark.parametrize("kind", TARGETS)
def test_codex_as_hosted_client_answers_an_elicitation_through_the_tunnel(
    kind: str, relay_on: StartClient, faulty: FaultyService, everything_url: str, fake: FakeModel, tmp_path: Path,
) -> None:
    run = relay_on(*target_args(kind, everything_url))
    run.wait_readyz()
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        fake.provider_config()
        + f'\n[mcp_servers.{CODEX_SERVER}]\nurl = "{faulty.mcp_url(run.tunnel_id)}"\n'
        'default_tools_approval_mode = "approve"\nstartup_timeout_sec = 30\ntool_timeout_sec = 30\n',
        encoding="utf-8")
    env = base_env(tmp_path, PATH=codex_search_path(), CODEX_HOME=str(home), **{API_KEY_ENV: "dummy"})
    missing: list[str] = []
    fake.requests.clear()
    fake.policy = plan_policy(missing)

    turn, transcript = run_turn(env, tmp_path, "Trigger an elicitation, then echo.")
    (tmp_path / "transcript.json").write_text(json.dumps(transcript.notifications, indent=1))
    assert missing == [], f"the model wanted tools Codex did not offer: {missing}"
    assert turn["status"] == "completed", turn
    calls = {c["tool"].replace("-", "_"): c for c in transcript.tool_calls()}
    assert set(calls) == {"trigger_elicitation_request", "echo"}, calls
    elicit = calls["trigger_elicitation_request"]
    assert elicit["status"] == "completed", elicit
    # Codex (approval policy "never") declines; the server's result quotes what Codex answered.
    texts = "\n".join(c.get("text", "") for c in elicit["result"]["content"])
    assert '"action": "decline"' in texts or '"action": "cancel"' in texts, texts
    assert "tunnel_failure" not in json.dumps(elicit)
    assert calls["echo"]["status"] == "completed"
    assert calls["echo"]["result"]["content"][0]["text"] == "Echo: after the elicitation"
    # The elicitation request crossed the tunnel to Codex, and Codex's answer crossed back.
    asked = [r for r in faulty.posted_responses(run.tunnel_id) if r.json()["resp_type"] == "jsonrpc_notify"
             and (r.json().get("resp_json") or {}).get("method") == "elicitation/create"]
    assert len(asked) == 1
    assert handled_by(faulty, run.tunnel_id, lambda m: "result" in m and "action" in json.dumps(m["result"]))


# ---- several service instances on one Redis: `dev tunnel-service` and `serve` ------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


CALLER_TOKEN = "ct_test_" + secrets.token_urlsafe(16)


def start_serve(redis_url: str, tunnel: str, runtime_key: str, home: Path) -> ServiceProc:
    """``tunnel-client serve`` (production mode) on the Redis queue; callers need ``CALLER_TOKEN``."""
    argv = [TUNNEL_CLIENT, "serve", "--listen", "127.0.0.1:0", "--tunnel-id", tunnel,
            "--runtime-api-key", "env:SERVE_RUNTIME_KEY", "--caller-token", f"{tunnel}=env:SERVE_CALLER_TOKEN",
            "--engine-queue-backend", "redis", "--engine-redis-url", redis_url, "--response-timeout", "10s"]
    proc = Proc(argv, base_env(home, SERVE_RUNTIME_KEY=runtime_key, SERVE_CALLER_TOKEN=CALLER_TOKEN,
                               TUNNEL_ENGINE_ENCRYPTION_KEY=QUEUE_KEY))
    try:
        url = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
    except BaseException:
        proc.kill()
        raise
    return ServiceProc(proc, url, [tunnel])


@pytest.mark.parametrize("kind", TARGETS)
def test_answer_posted_to_another_instance_reaches_the_call_held_by_the_first(
    kind: str, redis_server: RedisServer, runtime_key: str, everything_url: str, tmp_path: Path,
) -> None:
    redis_server.client().flushall()
    tunnel = new_tunnel_id()
    # The caller's call waits on a `dev tunnel-service` instance; its answer goes to a `serve` instance.
    # One client polls each; with a stdio target the session is pinned to whichever answered initialize.
    dev = start_service(redis_url=redis_server.url, tunnels=[tunnel], runtime_key=runtime_key, home=tmp_path)
    serve = start_serve(redis_server.url, tunnel, runtime_key, tmp_path)
    clients = [start_client(service_url=svc.base_url, tunnel_id=tunnel, runtime_key=runtime_key, home=tmp_path,
                            args=target_args(kind, everything_url)) for svc in (dev, serve)]
    try:
        for run in clients:
            run.wait_readyz()
        call_url, answer_url = dev.mcp_url(tunnel), serve.mcp_url(tunnel)
        caps = {**fd.initialize_params(), "capabilities": {"elicitation": {"form": {}}}}
        answers: list[int] = []

        async def scenario() -> tuple[int, list[dict[str, Any]]]:
            async with fd.http_client() as client:
                with anyio.fail_after(WAIT):
                    resp, _ = await fd.post(client, call_url, fd.request("initialize", caps))
                    assert resp.status_code == 200, resp.text
                    session = {"Mcp-Session-Id": resp.headers["mcp-session-id"], "Mcp-Protocol-Version": fd.PROTOCOL}
                    ack, _ = await fd.post(client, call_url, fd.notification("notifications/initialized"), session)
                    assert ack.status_code == 202

                    async def answer_elsewhere(msg: dict[str, Any]) -> None:
                        reply = {"jsonrpc": "2.0", "id": msg["id"],
                                 "result": {"action": "accept", "content": {"name": "Grace Hopper"}}}
                        resp, _ = await fd.post(client, answer_url, reply,
                                                {**session, "X-Tunnel-Caller-Token": CALLER_TOKEN})
                        answers.append(resp.status_code)

                    call = fd.request("tools/call", {"name": "trigger-elicitation-request", "arguments": {}})
                    return await stream_call(client, call_url, session, call, answer_elsewhere)

        status, received = anyio.run(scenario)
        assert status == 200 and answers == [202]
        # Over stdio a notification the child sends on its own (server-everything's tools/list_changed
        # shortly after initialize) rides on the call in flight when it comes: only requests count here.
        assert [m.get("method") for m in received[:-1] if "id" in m] == ["elicitation/create"]
        assert "- Name: Grace Hopper" in json.dumps(received[-1]["result"])
    finally:
        for run in clients:
            run.proc.kill()
        for svc in (dev, serve):
            svc.proc.kill()
        for p in [*clients, dev, serve]:
            assert runtime_key not in p.proc.output() and CALLER_TOKEN not in p.proc.output()
