"""How one tunnel-client operation becomes one MCP tool.

Each tool is a ``ToolSpec``: a strict input model (``extra="forbid"``, so the published
schema has ``additionalProperties: false``), the output model (the CLI's ``--json``
payload), annotations and a handler. A handler gets the validated input and the
environment and returns an ``Outcome``: the payload becomes ``structuredContent`` and the
summary the text content. Failures become tool errors (``isError: true``) whose text ends
with a ``Next step:`` line; validation errors name the fields but never echo the values.

Secrets: fields listed in ``reference_fields`` must be ``env:NAME`` / ``file:/path``
references; every other string input is refused when it looks like it carries a key.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tunnel_core.errors import ConfigError, TunnelClientError, UsageError
from tunnel_core.state.refs import reject_inline_secret_material, validate_secret_reference

log = logging.getLogger("agent_tools")

Env = Mapping[str, str]


class ToolInput(ArgModelBase):
    """Base of every tool input: unknown keys rejected, secrets only by reference."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    reference_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _secrets_by_reference(self) -> ToolInput:
        for name in type(self).model_fields:
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            for v in values:
                if not isinstance(v, str) or not v:
                    continue
                try:
                    if name in self.reference_fields:
                        validate_secret_reference(v.strip(), name)
                    else:
                        reject_inline_secret_material(v, name)
                except (ConfigError, UsageError) as exc:
                    raise ValueError(str(exc)) from None
        return self


class ToolFailure(ToolError):
    """An anticipated failure: the message says what is wrong, ``next_step`` what to do."""

    def __init__(self, message: str, next_step: str) -> None:
        super().__init__(message)
        self.message = message
        self.next_step = next_step


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's answer: the payload (structured content) and a one-line summary (text content)."""

    payload: BaseModel | dict[str, Any]
    summary: str


Handler = Callable[[Any, Env], Outcome]
NextStep = Callable[[TunnelClientError], str]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_model: type[ToolInput]
    output_model: type[BaseModel]
    handler: Handler
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool
    next_step: str
    next_step_for: NextStep | None = None

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(title=self.title, read_only_hint=self.read_only, destructive_hint=self.destructive,
                               idempotent_hint=self.idempotent, open_world_hint=self.open_world)


def error_result(message: str, next_step: str) -> CallToolResult:
    text = message.rstrip() + (f"\nNext step: {next_step}" if next_step else "")
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _describe_validation(exc: ValidationError) -> str:
    """Field names and reasons only: the rejected values may be secrets."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "invalid input: " + "; ".join(parts)


SECRET_STEP = ("pass keys only as env:NAME or file:/path references and keep credentials out of URLs, commands, "
               "names and descriptions")


class AgentTool(Tool):
    """A Tool whose failures always come back as tool errors with a next step."""

    next_step: str = ""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError as exc:
            log.error("tool %s crashed", self.name, exc_info=exc.__cause__)
            return error_result(f"{self.name} failed unexpectedly ({type(exc.__cause__).__name__})",
                                "report this as a tunnel-client bug; the server's stderr log has the traceback")
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ToolFailure):
                return error_result(cause.message, cause.next_step)
            if isinstance(cause, ValidationError):
                text = _describe_validation(cause)
                secret = "secret" in text or "reference" in text
                return error_result(text, SECRET_STEP if secret else
                                    f"call {self.name} again with inputs that match its input schema")
            return error_result(str(exc), self.next_step)


# Runtimes, profiles and admin state are files guarded by a file lock, which does not
# exclude threads of one process; tool calls run on worker threads, so mutating calls
# also take this lock.
_MUTATION = threading.Lock()


def _failure(spec: ToolSpec, exc: TunnelClientError) -> ToolFailure:
    step = (spec.next_step_for(exc) if spec.next_step_for else "") or spec.next_step
    mitigation = getattr(exc, "mitigation", "")
    if mitigation and mitigation not in step:
        step = f"{mitigation}; then {step}" if step else mitigation
    return ToolFailure(str(exc), step)


def build_tool(spec: ToolSpec, env_provider: Callable[[], Env]) -> AgentTool:
    """The MCP tool for ``spec``; ``env_provider`` is read at every call."""
    fields = set(spec.input_model.model_fields)

    def call(**kwargs: Any) -> CallToolResult:
        inp = spec.input_model.model_construct(**{k: v for k, v in kwargs.items() if k in fields})
        env = env_provider()
        try:
            if spec.read_only:
                outcome = spec.handler(inp, env)
            else:
                with _MUTATION:
                    outcome = spec.handler(inp, env)
        except ToolFailure:
            raise
        except TunnelClientError as exc:
            raise _failure(spec, exc) from None
        payload = outcome.payload
        data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
        return CallToolResult(content=[TextContent(type="text", text=outcome.summary)], structured_content=data)

    call.__name__ = spec.name
    schema = spec.input_model.model_json_schema(by_alias=True)
    schema.pop("title", None)
    return AgentTool(
        fn=call, name=spec.name, title=spec.title, description=spec.description, parameters=schema,
        fn_metadata=FuncMetadata(arg_model=spec.input_model, output_model=spec.output_model),
        is_async=False, context_kwarg=None, annotations=spec.annotations(), next_step=spec.next_step,
    )


def process_env() -> dict[str, str]:
    """The server's environment at call time (what Codex forwarded)."""
    return dict(os.environ)
