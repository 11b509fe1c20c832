"""How a call that waits for its caller's answer holds workers and in-flight slots (relay/dispatcher.py).

The dispatcher runs here against a scripted target and a recording responder (its two seams),
so each step of a parked call's life can be checked exactly once every task has blocked; the
same rules run end to end against real servers in tests/integration/test_server_requests.py.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tunnel_core.relay.dispatcher import Dispatcher
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.slots import Slots
from tunnel_core.targets.base import Emit, Reply
from tunnel_core.wire.messages import JsonRpcCommand, ResponsePayload

pytestmark = pytest.mark.anyio

SESSION = {"Mcp-Session-Id": ["s-1"]}


class Responder:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, Any]] = []

    async def post(self, payload: ResponsePayload, *, shard_token: str, client_request_id: str | None = None) -> int:
        self.posted.append((payload.request_id, payload.resp_type, payload.resp_json))
        return 200


class Target:
    """``ask`` elicits, waits for the answer, reports progress, answers; ``block`` waits for ``release``."""

    channel, kind, proc_affinity = "main", "http", False

    def __init__(self) -> None:
        self.answered = anyio.Event()
        self.release = anyio.Event()

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        msg = cmd.jsonrpc
        if "method" not in msg:  # the caller's answer
            self.answered.set()
            return Reply("notify_ack", 202)
        name = msg["params"]["name"]
        if name == "ask":
            await emit(Reply("jsonrpc_notify", 200, {"jsonrpc": "2.0", "id": 0, "method": "elicitation/create"}))
            await self.answered.wait()
            await emit(Reply("jsonrpc_notify", 200, {"jsonrpc": "2.0", "method": "notifications/progress"}))
        else:
            await self.release.wait()
        return Reply("jsonrpc_response", 200, {"jsonrpc": "2.0", "id": msg["id"], "result": {}})


def command(request_id: str, jsonrpc: dict[str, Any]) -> JsonRpcCommand:
    return JsonRpcCommand(request_id=request_id, shard_token="st", headers=SESSION, jsonrpc=jsonrpc)


def call(request_id: str, tool: str) -> JsonRpcCommand:
    return command(request_id, {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                                "params": {"name": tool, "arguments": {}}})


async def test_a_parked_call_gives_back_its_worker_and_takes_one_again_before_relaying_more() -> None:
    slots, responder, target = Slots(1), Responder(), Target()
    dispatcher = Dispatcher(tunnel_id="t", targets={"main": target}, responder=responder,  # type: ignore[arg-type]
                            metrics=RelayMetrics(), max_concurrent=1, slots=slots)

    async def hold(cmd: JsonRpcCommand) -> None:
        slots.hold()
        try:
            await dispatcher.handle(cmd, anyio.current_time())
        finally:
            slots.release()

    def sent(request_id: str) -> list[str]:
        return [kind for rid, kind, _ in responder.posted if rid == request_id]

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold, call("a", "ask"))
            await anyio.wait_all_tasks_blocked()
            # "a" relayed its question: parked, no worker, no slot of max-inflight 1.
            assert sent("a") == ["jsonrpc_notify"]
            assert (slots.held, slots.parked, dispatcher.running, slots.room()) == (1, 1, 0, 1)

            tg.start_soon(hold, call("b", "block"))  # takes the only worker
            await anyio.wait_all_tasks_blocked()
            assert (dispatcher.running, slots.working, slots.room()) == (1, 1, 0)

            tg.start_soon(hold, command("answer", {"jsonrpc": "2.0", "id": 0, "result": {"action": "accept"}}))
            await anyio.wait_all_tasks_blocked()
            # The answer passed without a worker; "a" works again but waits for one before relaying more.
            assert sent("answer") == ["notify_ack"]
            assert (slots.held, slots.parked, slots.working) == (2, 0, 2)
            assert sent("a") == ["jsonrpc_notify"]

            target.release.set()
            await anyio.wait_all_tasks_blocked()
    assert sent("b") == ["jsonrpc_response"]
    assert sent("a") == ["jsonrpc_notify", "jsonrpc_notify", "jsonrpc_response"]
    assert (slots.held, slots.parked, dispatcher.running) == (0, 0, 0)


async def test_an_answer_that_comes_back_before_its_request_is_acknowledged_leaves_nothing_parked() -> None:
    slots, target = Slots(1), Target()
    seen: list[tuple[int, int]] = []  # (parked, workers in use) when the call relays its next message

    class Quick(Responder):
        async def post(self, payload: ResponsePayload, *, shard_token: str,
                       client_request_id: str | None = None) -> int:
            msg = payload.resp_json or {}
            if msg.get("method") == "elicitation/create":
                # The caller answers before this POST returns: the answer reaches the server first.
                await dispatcher.handle(command("answer", {"jsonrpc": "2.0", "id": 0, "result": {}}),
                                        anyio.current_time())
            elif msg.get("method") == "notifications/progress":
                seen.append((slots.parked, dispatcher.running))
            return await super().post(payload, shard_token=shard_token, client_request_id=client_request_id)

    dispatcher = Dispatcher(tunnel_id="t", targets={"main": target}, responder=Quick(),  # type: ignore[arg-type]
                            metrics=RelayMetrics(), max_concurrent=1, slots=slots)
    with anyio.fail_after(5):
        await dispatcher.handle(call("a", "ask"), anyio.current_time())
    assert seen == [(0, 1)]  # never left parked with its answer already in, and still holding its worker
    assert (slots.parked, dispatcher.running) == (0, 0)
