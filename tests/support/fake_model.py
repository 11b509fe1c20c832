"""A loopback fake of the OpenAI Responses API, for driving the real Codex CLI offline.

Codex is pointed at it with a custom provider in ``$CODEX_HOME/config.toml`` (see
``provider_config``). Every ``POST /v1/responses`` body is recorded; the reply is an SSE
stream (``response.created``, output items, ``response.completed``) whose items come from
a *policy*: a function of the request body, so Codex's extra requests (retries, follow-ups)
get consistent answers instead of consuming a fixed script.

A policy returns ``Say`` (an assistant message, streamed as two deltas) and/or ``Call``
(a function call Codex executes, then posts back as a ``function_call_output`` item).

The fake is strict, as a real model is: a ``Call`` of a tool that is not in *that request's*
tool list is not made. The fake records a failure (``failures``) and ends the turn with a
message saying so, so a server that missed Codex's start-up window fails the test instead of
being called anyway. ``history`` gives a policy the calls made so far with the structured
results they returned, so a scripted model can act on what the tools told it.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.servers import BackgroundLoop, RunningServer

MODEL = "fake-model"
PAUSE_CAP = 30.0  # a paused stream resumes by itself after this, so a failing test cannot hang the server
PROVIDER = "fake"
API_KEY_ENV = "FAKE_MODEL_API_KEY"


@dataclass(frozen=True, slots=True)
class Say:
    """An assistant message, streamed as two deltas; with ``pause`` the second waits until it is set."""

    text: str
    pause: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    arguments: dict[str, Any]
    namespace: str = "mcp__tunnel_client"
    call_id: str = ""


Output = Say | Call
Policy = Callable[[dict[str, Any]], Sequence[Output]]


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("input")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def tool_outputs(body: dict[str, Any]) -> dict[str, str]:
    """``call_id -> output text`` of every function_call_output item in a request."""
    out: dict[str, str] = {}
    for item in input_items(body):
        if item.get("type") == "function_call_output":
            value = item.get("output")
            out[str(item.get("call_id"))] = value if isinstance(value, str) else json.dumps(value)
    return out


def offered_tools(body: dict[str, Any]) -> set[tuple[str, str]]:
    """``(namespace, name)`` of every function tool in a request's tool list ("" for top-level tools)."""
    found: set[tuple[str, str]] = set()

    def walk(items: Any, namespace: str) -> None:
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "namespace":
                walk(item.get("tools"), str(item.get("name", "")))
            elif item.get("type") == "function" and isinstance(item.get("name"), str):
                found.add((namespace, item["name"]))

    walk(body.get("tools"), "")
    return found


def user_text(body: dict[str, Any]) -> str:
    """All user-message text of a request, joined."""
    parts: list[str] = []
    for item in input_items(body):
        if item.get("type") == "message" and item.get("role") == "user":
            for c in item.get("content") or []:
                if isinstance(c, dict) and isinstance(c.get("text"), str):
                    parts.append(c["text"])
    return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Step:
    """One tool call of the conversation so far and what it returned."""

    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]  # the structured content the model was given ({} when it was not JSON)
    output: str


def history(body: dict[str, Any]) -> list[Step]:
    """The tool calls in a request's input, in order, each with its output."""
    outputs = tool_outputs(body)
    steps: list[Step] = []
    for item in input_items(body):
        if item.get("type") != "function_call":
            continue
        output = outputs.get(str(item.get("call_id")), "")
        try:
            arguments = json.loads(item.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        steps.append(Step(str(item.get("name")), arguments, structured(output), output))
    return steps


def structured(output: str) -> dict[str, Any]:
    """The JSON object a tool output carries (Codex prefixes it with ``Wall time: ...\nOutput:\n``)."""
    text = output.split("Output:\n", 1)[1] if "Output:\n" in output else output
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()


def _events(response_id: str, outputs: Sequence[Output]) -> list[bytes | threading.Event]:
    frames: list[bytes | threading.Event] = [_frame("response.created", {"response": {"id": response_id}})]
    for n, out in enumerate(outputs):
        if isinstance(out, Say):
            item_id = f"msg_{response_id}_{n}"
            empty = {"type": "message", "role": "assistant", "id": item_id,
                     "content": [{"type": "output_text", "text": ""}]}
            frames.append(_frame("response.output_item.added", {"output_index": n, "item": empty}))
            half = len(out.text) // 2
            for i, chunk in enumerate((out.text[:half], out.text[half:])):
                if i == 1 and out.pause is not None:
                    frames.append(out.pause)
                if chunk:
                    frames.append(_frame("response.output_text.delta",
                                         {"item_id": item_id, "output_index": n, "content_index": 0, "delta": chunk}))
            done = {**empty, "content": [{"type": "output_text", "text": out.text}]}
            frames.append(_frame("response.output_item.done", {"output_index": n, "item": done}))
        else:
            call_id = out.call_id or f"call_{response_id}_{n}"
            item = {"type": "function_call", "id": f"fc_{response_id}_{n}", "call_id": call_id, "name": out.name,
                    "namespace": out.namespace, "arguments": json.dumps(out.arguments)}
            frames.append(_frame("response.output_item.done", {"output_index": n, "item": item}))
    usage = {"input_tokens": 10, "input_tokens_details": None, "output_tokens": 5, "output_tokens_details": None,
             "total_tokens": 15}
    frames.append(_frame("response.completed", {"response": {"id": response_id, "usage": usage}}))
    return frames


@dataclass(slots=True)
class FakeModel:
    """The recorded requests of a running fake and a way to wait for them."""

    policy: Policy
    requests: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # tools the policy wanted that Codex had not offered
    server: RunningServer | None = None
    _changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/v1"

    def record(self, body: dict[str, Any]) -> int:
        with self._changed:
            self.requests.append(body)
            self._changed.notify_all()
            return len(self.requests)

    def wait_requests(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` requests arrived; AssertionError after ``timeout``."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the fake model got {len(self.requests)} requests, expected {count}")
            return list(self.requests)

    def strict(self, n: int, body: dict[str, Any], outputs: Sequence[Output]) -> Sequence[Output]:
        """``outputs``, unless they call a tool this request did not offer: then a failure and a refusal."""
        offered = offered_tools(body)
        missing = [o for o in outputs if isinstance(o, Call) and (o.namespace, o.name) not in offered]
        if not missing:
            return outputs
        names = ", ".join(f"{o.namespace}.{o.name}" for o in missing)
        with self._changed:
            self.failures.append(f"request {n}: {names} not in the tool list")
        return [Say(f"FAKE MODEL: {names} is not available to me in this request.")]

    def provider_config(self) -> str:
        """The config.toml lines that make Codex use this fake as its model."""
        return (
            f'model = "{MODEL}"\nmodel_provider = "{PROVIDER}"\n\n'
            f"[model_providers.{PROVIDER}]\n"
            f'name = "{PROVIDER}"\nbase_url = "{self.base_url}"\nwire_api = "responses"\n'
            f'env_key = "{API_KEY_ENV}"\nsupports_websockets = false\n'
            "request_max_retries = 0\nstream_max_retries = 0\n"
        )

    def app(self) -> Starlette:
        async def responses(request: Request) -> Response:
            body = json.loads(await request.body() or b"{}")
            n = self.record(body)
            outputs = self.strict(n, body, self.policy(body))
            frames = _events(f"resp_{n}", outputs)

            async def stream() -> AsyncIterator[bytes]:
                for f in frames:
                    if isinstance(f, threading.Event):
                        await anyio.to_thread.run_sync(f.wait, PAUSE_CAP)
                    else:
                        yield f

            return StreamingResponse(stream(), media_type="text/event-stream")

        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}], "models": []})

        return Starlette(routes=[Route("/v1/responses", responses, methods=["POST"]),
                                 Route("/v1/models", models, methods=["GET"])])


@contextlib.contextmanager
def running_fake_model(bg: BackgroundLoop, policy: Policy) -> Iterator[FakeModel]:
    """A fake served for the duration of the block (set ``.policy`` to script it)."""
    model = start_fake_model(bg, policy)
    try:
        yield model
    finally:
        assert model.server is not None
        model.server.stop()


def start_fake_model(bg: BackgroundLoop, policy: Policy) -> FakeModel:
    """Serve a fake on 127.0.0.1:0 from the tests' background loop; call ``.server.stop()`` when done."""
    fake = FakeModel(policy)
    fake.server = bg.serve(fake.app())
    return fake
