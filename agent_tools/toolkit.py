"""How one tunnel-client operation becomes one MCP tool, and what a model reads back.

Each tool is a ``ToolSpec``: a strict input model (``extra="forbid"``: the published schema
has ``additionalProperties: false``; either/or rules go into the schema with
``json_schema_extra``), annotations and a handler. The published input schema is the model's
schema with titles and empty defaults removed (``clean_schema``): every byte of it is sent to
the model on every request. Arguments are validated by the model (clear messages) and then
against the published schema itself, so the schema a model sees is the contract enforced.

Results (``Outcome``) are structured content written for a model: decisive fields first
(``state``, ``healthy``, ``ready``, ``reason``), identifiers next, then ``next``: tool calls
``{"tool", "arguments", "why"}`` the model can make as they are; shell commands for humans
only in ``cli``. The text content is a one-line summary for hosts that show text.

Failures are results too (``isError: true``): ``{"error", "field"?, "fix"?, "next"?}`` as
structured content and the same as text. Validation errors name the fields, never the
values (they may be secrets). Fields listed in ``reference_fields`` must be ``env:NAME`` /
``file:/path`` references; every other string input is refused when it looks like a key.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, ValidationError, model_validator

from tunnel_core.errors import ConfigError, TunnelClientError, UsageError
from tunnel_core.state.refs import reject_inline_secret_material, validate_secret_reference

log = logging.getLogger("agent_tools")

Env = Mapping[str, str]


def next_call(tool: str, why: str, **arguments: Any) -> dict[str, Any]:
    """One entry of ``next``: a tool call the model can make as it is."""
    return {"tool": tool, "arguments": arguments, "why": why}


Group = tuple[str, ...]


class ToolInput(ArgModelBase):
    """Base of every tool input: unknown keys rejected, secrets only by reference, either/or rules.

    ``exactly_one``, ``at_most_one`` and ``at_least_one`` name groups of arguments; a group is
    satisfied by which arguments are *given* (present, whatever their value), exactly as JSON
    Schema's ``required`` counts them. The same declaration yields the published schema rules
    (``either_or_schema``) and the validator below, so the two cannot disagree.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
    reference_fields: ClassVar[tuple[str, ...]] = ()
    exactly_one: ClassVar[tuple[Group, ...]] = ()
    at_most_one: ClassVar[tuple[Group, ...]] = ()
    at_least_one: ClassVar[tuple[Group, ...]] = ()

    @model_validator(mode="after")
    def _either_or(self) -> ToolInput:
        given = self.model_fields_set
        for group in self.exactly_one:
            if len(given & set(group)) != 1:
                raise ValueError(f"give exactly one of {', '.join(group)}")
        for group in self.at_most_one:
            both = [f for f in group if f in given]
            if len(both) > 1:
                raise ValueError(f"give at most one of {', '.join(group)} (got {' and '.join(both)})")
        for group in self.at_least_one:
            if not given & set(group):
                raise ValueError(f"give at least one of {', '.join(group)}")
        return self

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
    """An anticipated failure, reported as an error result a model can act on."""

    def __init__(self, message: str, *, fix: str = "", next: list[dict[str, Any]] | None = None,
                 field: str = "", data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.next = next or []
        self.field = field
        self.data = data or {}


@dataclass(frozen=True, slots=True)
class Outcome:
    """A handler's answer: structured content (what the model reads) and a one-line summary."""

    payload: dict[str, Any]
    summary: str


Handler = Callable[[Any, Env], Outcome]
# Maps a core error to the failure a model sees (or None for the default: the message and ``fix``).
ErrorMap = Callable[[TunnelClientError, Any], "ToolFailure | None"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    title: str
    description: str
    input_model: type[ToolInput]
    handler: Handler
    read_only: bool
    destructive: bool
    idempotent: bool
    open_world: bool
    fix: str = ""  # what to do about an unmapped core error
    on_error: ErrorMap | None = field(default=None)

    def annotations(self) -> ToolAnnotations:
        return ToolAnnotations(title=self.title, read_only_hint=self.read_only, destructive_hint=self.destructive,
                               idempotent_hint=self.idempotent, open_world_hint=self.open_world)

    def input_schema(self) -> dict[str, Any]:
        return {**clean_schema(self.input_model.model_json_schema(by_alias=True)),
                **either_or_schema(self.input_model)}


def either_or_schema(model: type[ToolInput]) -> dict[str, Any]:
    """The JSON Schema form of a model's either/or groups (``oneOf``, ``anyOf``, ``not``)."""
    rules: list[dict[str, Any]] = [{"oneOf": [{"required": [f]} for f in g]} for g in model.exactly_one]
    rules += [{"anyOf": [{"required": [f]} for f in g]} for g in model.at_least_one]
    pairs = [{"required": [a, b]} for g in model.at_most_one for i, a in enumerate(g) for b in g[i + 1:]]
    if pairs:
        rules.append({"not": {"anyOf": pairs}})
    if len(rules) > 1:
        return {"allOf": rules}
    return rules[0] if rules else {}


def clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema a model pays for: no titles, no empty defaults, optional-or-null as plain optional."""

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: clean(v) for k, v in node.items() if k != "title"}
        any_of = out.get("anyOf")
        if isinstance(any_of, list) and len(any_of) == 2 and {"type": "null"} in any_of:
            out.pop("anyOf")
            out = {**next(x for x in any_of if x != {"type": "null"}), **out}
        if "default" in out and (out["default"] in ("", None, []) or out["default"] is False):
            out.pop("default")  # what omitting the argument means anyway
        return out

    cleaned: dict[str, Any] = clean(schema)
    props = cleaned.get("properties")
    if isinstance(props, dict):  # property names are data, not titles: put back any removed by name
        cleaned["properties"] = {k: clean(v) for k, v in schema["properties"].items()}
    return cleaned


def _render(failure: ToolFailure) -> CallToolResult:
    data: dict[str, Any] = {"error": failure.message}
    if failure.field:
        data["field"] = failure.field
    data.update(failure.data)
    if failure.fix:
        data["fix"] = failure.fix
    if failure.next:
        data["next"] = failure.next
    lines = [failure.message]
    if failure.fix:
        lines.append(f"Fix: {failure.fix}")
    for n in failure.next:
        lines.append(f"Next: call {n['tool']} {json.dumps(n['arguments'])} - {n['why']}")
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))], structured_content=data,
                          is_error=True)


def _validation_failure(tool: str, exc: ValidationError) -> ToolFailure:
    """Field names and reasons only: the rejected values may be secrets."""
    parts, fields = [], []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
        if where:
            fields.append(where)
    text = "invalid input: " + "; ".join(parts)
    secret = "secret" in text or "reference" in text
    fix = (SECRET_FIX if secret else f"call {tool} again with arguments that match its input schema")
    return ToolFailure(text, fix=fix, field=fields[0] if len(fields) == 1 else "")


SECRET_FIX = ("pass keys only as env:NAME or file:/path references and keep credentials out of URLs, commands, "
              "names and descriptions")


class AgentTool(Tool):
    """A Tool whose every failure comes back as an error result a model can act on.

    Arguments are checked by the input model first (its messages name the field and the rule),
    then against the published schema (``parameters``), before the SDK runs the tool.
    """

    spec_fix: str = ""

    async def run(self, arguments: dict[str, Any], context: Any, convert_result: bool = False) -> Any:
        try:
            self.fn_metadata.arg_model.model_validate(arguments)
        except ValidationError as exc:
            return _render(_validation_failure(self.name, exc))
        failure = _schema_failure(self.name, Draft202012Validator(self.parameters), arguments)
        if failure is not None:
            return _render(failure)
        try:
            return await super().run(arguments, context, convert_result)
        except UnexpectedToolError as exc:
            log.error("tool %s crashed", self.name, exc_info=exc.__cause__)
            return _render(ToolFailure(f"{self.name} failed unexpectedly ({type(exc.__cause__).__name__})",
                                       fix="report this as a tunnel-client bug; the server's stderr log has the "
                                           "traceback"))
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ToolFailure):
                return _render(cause)
            if isinstance(cause, ValidationError):
                return _render(_validation_failure(self.name, cause))
            return _render(ToolFailure(str(exc), fix=self.spec_fix))


# Runtimes, profiles and admin state are files guarded by a file lock, which does not
# exclude threads of one process; tool calls run on worker threads, so mutating calls
# also take this lock.
_MUTATION = threading.Lock()


def _schema_failure(tool: str, validator: Draft202012Validator, arguments: dict[str, Any]) -> ToolFailure | None:
    """The published schema's verdict (the backstop behind the model's own validation)."""
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.path)
    text = f"{where or 'arguments'}: {err.message if err.validator in ('type', 'enum', 'pattern') else err.validator}"
    return ToolFailure("invalid input: " + text + " (input schema)", field=where,
                       fix=f"call {tool} again with arguments that match its input schema")


def build_tool(spec: ToolSpec, env_provider: Callable[[], Env]) -> AgentTool:
    """The MCP tool for ``spec``; ``env_provider`` is read at every call."""
    fields = set(spec.input_model.model_fields)
    schema = spec.input_schema()
    Draft202012Validator.check_schema(schema)

    def call(**kwargs: Any) -> CallToolResult:
        inp = spec.input_model.model_construct(**{k: v for k, v in kwargs.items() if k in fields})
        env = env_provider()
        try:
            if spec.read_only:
                outcome = spec.handler(inp, env)
            else:
                with _MUTATION:
                    outcome = spec.handler(inp, env)
        except ToolFailure as exc:
            return _render(exc)
        except TunnelClientError as exc:
            mapped = spec.on_error(exc, inp) if spec.on_error else None
            return _render(mapped or ToolFailure(str(exc), fix=_with_mitigation(spec.fix, exc)))
        return CallToolResult(content=[TextContent(type="text", text=outcome.summary)],
                              structured_content=outcome.payload)

    call.__name__ = spec.name
    return AgentTool(
        fn=call, name=spec.name, title=spec.title, description=spec.description, parameters=schema,
        fn_metadata=FuncMetadata(arg_model=spec.input_model), is_async=False, context_kwarg=None,
        annotations=spec.annotations(), spec_fix=spec.fix,
    )


def _with_mitigation(fix: str, exc: TunnelClientError) -> str:
    mitigation = getattr(exc, "mitigation", "")
    if mitigation and mitigation not in fix:
        return f"{mitigation}; then {fix}" if fix else mitigation
    return fix


def process_env() -> dict[str, str]:
    """The server's environment at call time (what Codex forwarded)."""
    return dict(os.environ)
