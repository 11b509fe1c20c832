"""Replay of a relay's polls and responses, as the tunnel service recorded them in arrival order.

For each poll: the ``limit`` it asked for, the commands the client held when it sent it
(delivered by earlier polls, minus those whose terminal response had arrived) and how many of
them at most were parked (calls that had relayed a server-to-client request whose answer had
not been acknowledged yet). With one poll loop, every earlier poll had returned by then.
Both counts lean towards the client: a terminal POST recorded before a poll may not have
returned to the client yet (it held more), and a call counts as parked from its request's
notification until the caller's answer is acknowledged (the client unparks it earlier). So a
bound the client keeps with its own counts holds for these too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tests.support.tunnel import Recorded

AnswerKey = tuple[str, str]  # (Mcp-Session-Id, JSON-encoded id of the server's request)


@dataclass(frozen=True, slots=True)
class PollView:
    limit: int
    held: int
    parked: int

    @property
    def working(self) -> int:
        return self.held - self.parked


@dataclass(frozen=True, slots=True)
class Replay:
    polls: list[PollView]
    peak_held: int  # the most commands held at once, between any two records

    def assert_bounds(self, max_inflight: int) -> None:
        """The documented rules: working + limit <= N and held + limit <= 2N + 1, at every poll."""
        for i, p in enumerate(self.polls):
            assert p.working + p.limit <= max_inflight, (i, p)
            assert p.held + p.limit <= 2 * max_inflight + 1, (i, p)
        assert self.peak_held <= 2 * max_inflight + 1, self.peak_held


def _session(command: dict[str, Any]) -> str:
    for name, values in (command.get("headers") or {}).items():
        if name.lower() == "mcp-session-id" and values:
            return str(values[0])
    return ""


def replay(records: Iterable[Recorded]) -> Replay:
    commands: dict[str, dict[str, Any]] = {}  # request_id -> polled command
    held: set[str] = set()
    awaited: dict[AnswerKey, str] = {}  # server request -> request_id of the call it rode on
    parked: dict[str, set[AnswerKey]] = {}
    polls: list[PollView] = []
    peak = 0
    for rec in records:
        if rec.path.endswith("/poll"):
            polls.append(PollView(int(rec.query["limit"][0]), len(held), sum(1 for keys in parked.values() if keys)))
            if rec.status == 200:
                for cmd in rec.response_json()["commands"]:
                    commands[cmd["request_id"]] = cmd
                    held.add(cmd["request_id"])
                peak = max(peak, len(held))
            continue
        if not (rec.method == "POST" and rec.path.endswith("/response")):
            continue
        body = rec.json()
        rid = body["request_id"]
        cmd = commands.get(rid, {})
        msg = body.get("resp_json") or {}
        if body["resp_type"] == "jsonrpc_notify":
            if "method" in msg and "id" in msg:
                key = (_session(cmd), json.dumps(msg["id"]))
                awaited[key] = rid
                parked.setdefault(rid, set()).add(key)
            continue
        held.discard(rid)
        for key in parked.pop(rid, set()):
            awaited.pop(key, None)
        rpc = cmd.get("jsonrpc") or {}
        if "id" in rpc and "method" not in rpc:  # the caller's answer was acknowledged
            key = (_session(cmd), json.dumps(rpc["id"]))
            call = awaited.pop(key, None)
            if call is not None:
                parked.get(call, set()).discard(key)
    return Replay(polls, peak)
