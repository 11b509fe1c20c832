"""Harpoon: the built-in MCP server on channel ``harpoon``, a constrained outbound HTTP client.

It lets the tunnel service reach allow-listed HTTP endpoints from inside the customer
network, chiefly private OAuth registration/token/revocation endpoints found by discovery.
It answers JSON-RPC in process (no session state; the reference uses one shared in-memory
connection) with three tools:

- ``list_targets {categories?, sources?, tags?}``: labels and descriptions, never URLs;
- ``call_target {label, method, headers?, body?, timeout_ms?, max_response_bytes?,
  follow_redirects?, max_redirects?}``: calls exactly the target URL; redirects only to
  allow-listed URLs; absolute URLs of registered targets in JSON bodies and in
  ``Location``/``Content-Location``/``Link`` come back as ``harpoon://<label>``;
- ``get_oauth_target_audience {label}``: the exact token-endpoint URL, for private_key_jwt.

The channel is routable, and listed in ``X-Tunnel-MCP-Server-Info``, only while at least
one target is registered (:class:`ChannelTable`). Every ``call_target`` attempt is kept in a
small ring and counted in the ``harpoon_*`` metrics (:mod:`tunnel_core.targets.harpoon_calls`);
:meth:`HarpoonServer.answer` is the transport-free entry point that the tunnel channel and the
optional ``/harpoon/mcp`` endpoint share. Connector headers, ``Authorization``
included, never reach a Harpoon target: only the tool's own ``headers`` argument does.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import anyio

from tunnel_core import USER_AGENT, __version__
from tunnel_core.config.network import HarpoonSettings
from tunnel_core.httpio import HTTPPool, NetworkErrors
from tunnel_core.records import record
from tunnel_core.targets.base import Emit, ProbeResult, Reply, Target
from tunnel_core.targets.harpoon_calls import UNKNOWN_LABEL, CallBuffer, CallRecord, HarpoonMetrics, captured
from tunnel_core.targets.harpoon_registry import LABEL_RE, HarpoonTarget, Registry
from tunnel_core.wire.messages import (
    JsonRpcCommand,
    MCPServerInfo,
    ServerInfoChannel,
    SessionTerminationCommand,
)

log = logging.getLogger("tunnel_client.harpoon")

CHANNEL = "harpoon"
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
DEFAULT_TIMEOUT_MS, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 30_000, 100, 120_000
METHODS = ("GET", "POST", "PUT")
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
_HEADER_NAME_RE = re.compile(HEADER_NAME)
# Never sent to a target: framing, hop-by-hop, cookies, client-IP and forwarding claims,
# and internal authorization headers; User-Agent is always the client's own.
_BLOCKED = frozenset({
    "connection", "content-length", "host", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "cookie", "accept-encoding", "user-agent",
    "forwarded", "via", "x-real-ip", "true-client-ip", "cf-connecting-ip", "x-client-ip", "x-cluster-client-ip",
    "fastly-client-ip", "x-original-forwarded-for", "x-openai-authorization",
})
_BLOCKED_PREFIXES = ("x-forwarded-", "x-openai-internal", "x-tunnel-")
_REDIRECTS = (301, 302, 303, 307, 308)
_JSON = {"Content-Type": ["application/json"]}
INSTRUCTIONS = ("Harpoon provides a constrained outbound HTTP client. Use list_targets to see allow-listed targets "
                "and call_target to make GET/POST/PUT requests with strict size, timeout and redirect limits. "
                "Harpoon cannot reach hosts or paths outside the allow-list.")


class ToolError(Exception):
    """A tool call the caller got wrong or that failed; becomes an ``isError`` tool result.

    ``outcome`` is the ``harpoon_call_total`` outcome it counts as."""

    def __init__(self, message: str, outcome: str = "request_error") -> None:
        super().__init__(message)
        self.outcome = outcome


def _invalid(message: str) -> ToolError:
    return ToolError(message, "invalid_input")


@record(slots=True)
class _Attempt:
    """What one call_target attempt did, filled in as it goes (becomes a CallRecord)."""

    label: str = UNKNOWN_LABEL
    method: str = ""
    url: str = ""
    status: int = 0
    req_bytes: int = 0
    resp_bytes: int = 0
    content_type: str = ""
    request_body: bytes = b""
    response_raw: bytes | None = None
    response_out: bytes | None = None


def _tools(cfg: HarpoonSettings) -> list[dict[str, Any]]:
    label = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": LABEL_RE.pattern}
    strings = {"type": "array", "items": {"type": "string"}}
    target_info = {"type": "object", "properties": {
        "label": label, "description": {"type": "string"}, "category": {"type": "string"},
        "source": {"type": "string"}, "tags": strings,
        "allowed_methods": {"type": "array", "items": {"type": "string", "enum": list(METHODS)}}},
        "required": ["label", "allowed_methods"]}
    return [
        {"name": "list_targets", "title": "List Harpoon targets",
         "description": "List available Harpoon targets by label.",
         "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
         "inputSchema": {"type": "object", "properties": {"categories": strings, "sources": strings, "tags": strings}},
         "outputSchema": {"type": "object", "properties": {"targets": {"type": "array", "items": target_info}},
                          "required": ["targets"]}},
        {"name": "call_target", "title": "Call Harpoon target",
         "description": "Call an allowlisted HTTP target by label.",
         "annotations": {"openWorldHint": True},
         "inputSchema": {"type": "object", "required": ["label", "method"], "properties": {
             "label": label,
             "method": {"type": "string", "enum": list(METHODS)},
             "headers": {"type": "object", "additionalProperties": {"type": "string"},
                         "propertyNames": {"pattern": HEADER_NAME}, "default": {}},
             "body": {"type": "string"},
             "timeout_ms": {"type": "integer", "minimum": MIN_TIMEOUT_MS, "maximum": MAX_TIMEOUT_MS,
                            "default": DEFAULT_TIMEOUT_MS},
             "max_response_bytes": {"type": "integer", "minimum": 1, "maximum": cfg.max_response_bytes},
             "follow_redirects": {"type": "boolean", "default": True},
             "max_redirects": {"type": "integer", "minimum": 0, "maximum": cfg.max_redirects}}},
         "outputSchema": {"type": "object", "required": ["status_code", "body_size_bytes"], "properties": {
             "status_code": {"type": "integer", "minimum": 100, "maximum": 599},
             "headers": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
             "body_base64": {"type": "string", "contentEncoding": "base64"},
             "body_size_bytes": {"type": "integer", "minimum": 0},
             "truncated": {"type": "boolean"}}}},
        {"name": "get_oauth_target_audience", "title": "OAuth token audience",
         "description": "The exact token endpoint URL of an OAuth target, for a private_key_jwt audience.",
         "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
         "inputSchema": {"type": "object", "required": ["label"], "properties": {"label": label}},
         "outputSchema": {"type": "object", "required": ["audience"], "properties": {"audience": {"type": "string"}}}},
    ]


class HarpoonServer:
    """The ``harpoon`` channel as a :class:`~tunnel_core.targets.base.Target`."""

    channel = CHANNEL
    kind = "builtin"
    proc_affinity = True

    def __init__(self, registry: Registry, cfg: HarpoonSettings, pool: Callable[[str], HTTPPool]) -> None:
        self.registry = registry
        self.cfg = cfg
        self._pool_factory = pool
        self._pools: dict[str, HTTPPool] = {}
        self._tools = _tools(cfg)
        self.calls = CallBuffer()
        self.metrics: HarpoonMetrics | None = None  # set by the composition root (its metrics registry)

    @property
    def routable(self) -> bool:
        return len(self.registry) > 0

    def _pool(self, unix_socket: str) -> HTTPPool:
        pool = self._pools.get(unix_socket)
        if pool is None:
            pool = self._pools[unix_socket] = self._pool_factory(unix_socket)
        return pool

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        answer = await self.answer(cmd.jsonrpc)
        if answer is None:
            return Reply("notify_ack", 202, None, {})
        return Reply("jsonrpc_response", 200, answer, dict(_JSON))

    async def answer(self, msg: Mapping[str, Any]) -> dict[str, Any] | None:
        """The JSON-RPC answer to one message; None for a notification (nothing to answer)."""
        if "id" not in msg:
            return None
        rpc_id = msg.get("id")
        method = msg.get("method")
        raw_params = msg.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        try:
            result = await self._dispatch(str(method), params)
        except _RpcError as exc:
            return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": exc.code, "message": str(exc)}}
        return {"jsonrpc": "2.0", "id": rpc_id, "result": result}

    async def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "initialize":
            requested = params.get("protocolVersion")
            version = requested if requested in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
            return {"protocolVersion": version, "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": {"name": "harpoon", "title": "Harpoon (Constrained HTTP Client)",
                                   "version": __version__},
                    "instructions": INSTRUCTIONS}
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": self._tools}
        if method == "tools/call":
            name = params.get("name")
            raw_args = params.get("arguments")
            args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
            handler = {"list_targets": self._list_targets, "call_target": self._call_target,
                       "get_oauth_target_audience": self._audience}.get(str(name))
            if handler is None:
                raise _RpcError(-32602, f"Unknown tool: {name}")
            try:
                structured = await handler(args)
            except ToolError as exc:
                label = args.get("label") if isinstance(args.get("label"), str) else ""
                text = f"harpoon: {label}: {exc}" if label else f"harpoon: {exc}"
                return {"content": [{"type": "text", "text": text}], "isError": True}
            return {"content": [{"type": "text", "text": json.dumps(structured, separators=(",", ":"))}],
                    "structuredContent": structured, "isError": False}
        raise _RpcError(-32601, f"Method not found: {method}")

    # -- tools --

    async def _list_targets(self, args: dict[str, Any]) -> dict[str, Any]:
        categories = _str_set(args.get("categories"))
        sources = _str_set(args.get("sources"))
        tags = _str_set(args.get("tags"))
        out = [t.info() for t in self.registry
               if (not categories or t.category in categories) and (not sources or t.source in sources)
               and tags <= set(t.tags)]
        return {"targets": out}

    def _target(self, args: dict[str, Any]) -> HarpoonTarget:
        label = args.get("label")
        if not isinstance(label, str) or not label.strip():
            raise _invalid("label is required")
        target = self.registry.lookup(label.strip())
        if target is None:
            raise _invalid("unknown target")
        return target

    async def _audience(self, args: dict[str, Any]) -> dict[str, Any]:
        target = self._target(args)
        if target.category != "oauth" or target.role != "token-endpoint":
            raise ToolError("not an OAuth token endpoint target")
        parts = urlsplit(target.url)
        if parts.username or parts.password or parts.fragment:
            raise ToolError("target URL cannot be used as an audience")
        return {"audience": target.url}

    async def _call_target(self, args: dict[str, Any]) -> dict[str, Any]:
        attempt = _Attempt()
        started = time.monotonic()
        outcome, error = "success", ""
        try:
            return await self._attempt_call(args, attempt)
        except ToolError as exc:
            outcome, error = exc.outcome, str(exc)
            raise
        finally:
            self._record(attempt, outcome, error, (time.monotonic() - started) * 1000)

    async def _attempt_call(self, args: dict[str, Any], attempt: _Attempt) -> dict[str, Any]:
        target = self._target(args)
        attempt.label, attempt.url = target.label, target.url
        method = str(args.get("method", "")).strip().upper()
        attempt.method = method
        if method not in METHODS:
            raise _invalid("invalid method")
        try:
            timeout_ms = _int_arg(args, "timeout_ms", DEFAULT_TIMEOUT_MS, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS)
            cap = _int_arg(args, "max_response_bytes", self.cfg.max_response_bytes, 1, self.cfg.max_response_bytes)
            max_redirects = _int_arg(args, "max_redirects", self.cfg.max_redirects, 0, self.cfg.max_redirects)
        except ToolError as exc:
            raise _invalid(str(exc)) from None
        follow = args.get("follow_redirects", True)
        if not isinstance(follow, bool):
            raise _invalid("follow_redirects must be a boolean")
        body = args.get("body", "")
        if not isinstance(body, str):
            raise _invalid("body must be a string")
        content = body.encode()
        attempt.request_body, attempt.req_bytes = content, len(content)
        if len(content) > cap:
            raise _invalid("request body exceeds size limit")
        try:
            headers = _outbound_headers(args.get("headers"))
        except ToolError as exc:
            raise _invalid(str(exc)) from None
        url = target.url
        redirects = 0
        try:
            with anyio.fail_after(timeout_ms / 1000):
                while True:
                    status, resp_headers, raw = await self._send(target, method, url, headers, content, cap)
                    attempt.status, attempt.url = status, url
                    location = next((v for k, v in resp_headers if k.lower() == "location"), "")
                    if status not in _REDIRECTS or not location or not follow:
                        break
                    if redirects >= max_redirects:
                        raise ToolError(f"stopped after {max_redirects} redirects")
                    next_url = urljoin(url, location)
                    if not self.registry.allowed(next_url):
                        raise ToolError("redirect to a URL that is not allow-listed")
                    redirects += 1
                    url = next_url
                    if status == 303 or (status in (301, 302) and method == "POST"):
                        method, content = "GET", b""
                        headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
        except TimeoutError:
            raise ToolError(f"request timed out after {timeout_ms} ms") from None
        except NetworkErrors as exc:
            from tunnel_core.targets.failures import classify_exception

            failure = classify_exception(exc)
            log.info("harpoon call failed", extra={"label": target.label, "source": failure.source,
                                                    "kind": failure.kind})
            raise ToolError(f"request failed ({failure.source})") from None
        attempt.response_raw = raw
        attempt.content_type = next((v for k, v in resp_headers if k.lower() == "content-type"), "")
        raw = self._rewrite_body(raw, resp_headers)
        attempt.response_out, attempt.resp_bytes = raw, len(raw)
        log.info("harpoon call", extra={"label": target.label, "method": method, "status_code": status,
                                        "response_bytes": len(raw), "redirects": redirects})
        return {"status_code": status, "headers": self._rewrite_headers(resp_headers, url),
                "body_base64": base64.b64encode(raw).decode("ascii"), "body_size_bytes": len(raw),
                "truncated": False}

    def _record(self, a: _Attempt, outcome: str, error: str, latency_ms: float) -> None:
        if self.metrics is not None:
            self.metrics.observe(a.label, a.status, outcome, latency_ms, a.resp_bytes)
        payload: dict[str, Any] = {}
        if self.cfg.capture_payloads:
            request_body, _ = captured(a.request_body)
            response_body, is_b64 = captured(a.response_raw or b"")
            transformed = None
            if a.response_out is not None and a.response_out != a.response_raw:
                transformed, _ = captured(a.response_out)
            payload = {"request_body": request_body, "response_body": response_body,
                       "response_body_transformed": transformed, "body_is_base64": is_b64}
        self.calls.add(CallRecord(
            timestamp=time.time(), label=a.label, url=a.url, method=a.method, status=a.status,
            latency_ms=int(latency_ms), req_bytes=a.req_bytes, resp_bytes=a.resp_bytes,
            response_content_type=a.content_type, error=error, **payload,
        ))

    async def _send(self, target: HarpoonTarget, method: str, url: str, headers: list[tuple[str, str]],
                    content: bytes, cap: int) -> tuple[int, list[tuple[str, str]], bytes]:
        pool = self._pool(target.unix_socket if url == target.url else "")
        async with pool.stream(method, url, headers=headers, content=content if method != "GET" else None,
                               timeout=None) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    raise ToolError(f"response exceeds {cap} bytes", "response_too_large")
                chunks.append(chunk)
            return resp.status, resp.header_items(), b"".join(chunks)

    # -- harpoon:// rewriting --

    def _rewrite_url(self, url: str) -> str:
        label = self.registry.label_for_url(url) if url.startswith(("http://", "https://")) else None
        return f"harpoon://{label}" if label else url

    def _rewrite_body(self, raw: bytes, headers: list[tuple[str, str]]) -> bytes:
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "").lower()
        if "json" not in ctype or not raw:
            return raw
        try:
            doc = json.loads(raw)
        except ValueError:
            return raw
        rewritten = self._walk(doc, None)
        if rewritten == doc:
            return raw
        return json.dumps(rewritten, separators=(",", ":"), ensure_ascii=False).encode()

    def _walk(self, node: Any, key: str | None) -> Any:
        if isinstance(node, dict):
            return {k: self._walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [self._walk(v, key) for v in node]
        if isinstance(node, str) and key != "resource":  # a PRMD resource names the server, keep it
            return self._rewrite_url(node)
        return node

    def _rewrite_headers(self, items: list[tuple[str, str]], base: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in items:
            lk = k.lower()
            if lk in ("location", "content-location"):
                v = self._rewrite_url(urljoin(base, v))
            elif lk == "link":
                v = re.sub(r"<([^>]*)>", lambda m: f"<{self._rewrite_url(urljoin(base, m.group(1)))}>", v)
            out.setdefault(k, []).append(v)
        return out

    # -- Target protocol --

    async def terminate_session(self, cmd: SessionTerminationCommand) -> Reply:
        return Reply("session_termination_response", 405)

    async def probe(self) -> ProbeResult:
        return ProbeResult("ok")

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _str_set(value: Any) -> set[str]:
    if not isinstance(value, list):
        return set()
    return {v.strip() for v in value if isinstance(v, str) and v.strip()}


def _int_arg(args: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    value = args.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolError(f"{name} must be an integer")
    if not lo <= value <= hi:
        raise ToolError(f"{name} must be between {lo} and {hi}")
    return value


def _outbound_headers(raw: Any) -> list[tuple[str, str]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ToolError("headers must be an object of strings")
    nominated = {t.strip().lower() for k, v in raw.items() if str(k).lower() == "connection"
                 for t in str(v).split(",")}
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        if not isinstance(name, str) or not _HEADER_NAME_RE.match(name) or not isinstance(value, str):
            raise ToolError("headers must map header names to strings")
        if "\r" in value or "\n" in value:
            raise ToolError(f"header {name} contains a line break")
        lname = name.lower()
        if lname in _BLOCKED or lname in nominated or lname.startswith(_BLOCKED_PREFIXES):
            continue
        out.append((name, value))
    out.append(("User-Agent", USER_AGENT))
    return out


class ChannelTable(Mapping[str, Target]):
    """The dispatcher's view of channels: the configured targets, plus ``harpoon`` while routable.

    ``server_info()`` is the ``X-Tunnel-MCP-Server-Info`` value, recomputed only when the
    Harpoon registry changes (it is sent on every control-plane request).
    """

    def __init__(self, targets: Mapping[str, Target], harpoon: HarpoonServer | None = None,
                 poll_channels: tuple[str, ...] | None = None) -> None:
        self._targets = targets
        allowed = poll_channels is None or CHANNEL in poll_channels
        self._harpoon = harpoon if allowed else None
        self._info: tuple[int, str] | None = None

    def _harpoon_live(self) -> bool:
        return self._harpoon is not None and self._harpoon.routable

    def __getitem__(self, channel: str) -> Target:
        if channel == CHANNEL and self._harpoon is not None and self._harpoon.routable:
            return self._harpoon
        return self._targets[channel]

    def get(self, channel: str, default: Any = None) -> Any:  # hot path: skip Mapping's try/except
        target = self._targets.get(channel)
        if target is not None:
            return target
        if channel == CHANNEL and self._harpoon_live():
            return self._harpoon
        return default

    def __iter__(self) -> Iterator[str]:
        yield from self._targets
        if self._harpoon_live():
            yield CHANNEL

    def __len__(self) -> int:
        return len(self._targets) + (1 if self._harpoon_live() else 0)

    def server_info(self) -> str:
        version = self._harpoon.registry.version if self._harpoon_live() and self._harpoon else -1
        if self._info is None or self._info[0] != version:
            items = sorted(self.items(), key=lambda kv: (kv[0] != "main", kv[0]))
            channels = [ServerInfoChannel(name=name, proc_affinity=True if t.proc_affinity else None)
                        for name, t in items]
            self._info = (version, MCPServerInfo(channels=channels).header())
        return self._info[1]
