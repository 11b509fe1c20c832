"""Harpoon on the operator listener: its JSON APIs, and ``/harpoon/mcp`` when asked for.

    GET  /api/harpoon                 {status, targets, calls} in one answer
    GET  /api/harpoon/status          {enabled, reason, capture_payloads, allow_plaintext_http,
                                       max_response_bytes, max_redirects, proxy_routes}
    GET  /api/harpoon/targets         {targets: [{label, url, description, category, source, tags,
                                       inclusion_reason}]}
    GET  /api/harpoon/calls           {calls: [...]} newest first; ?label=, ?limit= (default and max 100)
    POST /harpoon/mcp                 Harpoon as a Streamable HTTP MCP server
                                      (only with --harpoon.additional-transport http-streamable)

Like every path but the probes, these answer loopback clients only unless
``--allow-remote-ui`` (see guard.py). ``/harpoon/mcp`` is stateless: each POST carries one
JSON-RPC message and gets a JSON answer (202 for a notification); there is no session and no
server-initiated stream, so GET and DELETE answer 405, as the MCP transport allows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tunnel_core import logs
from tunnel_core.targets.harpoon_calls import CALL_BUFFER_SIZE

if TYPE_CHECKING:
    from tunnel_core.opsserver.context import OpsContext
    from tunnel_core.targets.harpoon import HarpoonServer

NO_CACHE = {"Cache-Control": "no-store"}
MAX_MCP_BODY = 1 << 20
HTTP_STREAMABLE = "http-streamable"


def status_body(ctx: OpsContext) -> dict[str, Any]:
    server: HarpoonServer | None = ctx.harpoon
    if server is None:
        return {"enabled": False, "reason": "harpoon channel is not polled (--control-plane.poll-channel)",
                "capture_payloads": False, "allow_plaintext_http": False, "max_response_bytes": 0,
                "max_redirects": 0, "proxy_routes": []}
    cfg = server.cfg
    enabled = len(server.registry) > 0
    routes = [r for r in (ctx.proxy_routes() if ctx.proxy_routes else []) if r.get("kind") == "harpoon"]
    return {"enabled": enabled, "reason": "" if enabled else "no targets configured",
            "capture_payloads": cfg.capture_payloads, "allow_plaintext_http": cfg.allow_plaintext_http,
            "max_response_bytes": cfg.max_response_bytes, "max_redirects": cfg.max_redirects,
            "additional_transports": list(cfg.additional_transports), "proxy_routes": routes}


def targets_body(ctx: OpsContext) -> dict[str, Any]:
    server: HarpoonServer | None = ctx.harpoon
    if server is None:
        return {"targets": []}
    return {"targets": [{"label": t.label, "url": t.url, "description": t.description, "category": t.category,
                         "source": t.source, "tags": list(t.tags), "inclusion_reason": t.inclusion_reason}
                        for t in server.registry]}


def calls_body(ctx: OpsContext, label: str = "", limit: int = CALL_BUFFER_SIZE) -> dict[str, Any]:
    server: HarpoonServer | None = ctx.harpoon
    if server is None:
        return {"calls": []}
    return {"calls": [c.view() for c in server.calls.snapshot(limit, label)]}


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(logs.redact_value(body), status_code=status, headers=NO_CACHE)


def _limit(request: Request) -> int:
    try:
        n = int(request.query_params.get("limit", ""))
    except ValueError:
        return CALL_BUFFER_SIZE
    return CALL_BUFFER_SIZE if n <= 0 else min(n, CALL_BUFFER_SIZE)


def routes(ctx: OpsContext) -> list[Route]:
    async def overview(request: Request) -> Response:
        return _json({"status": status_body(ctx), "targets": targets_body(ctx)["targets"],
                      "calls": calls_body(ctx, request.query_params.get("label", ""), _limit(request))["calls"]})

    async def status(_: Request) -> Response:
        return _json(status_body(ctx))

    async def targets(_: Request) -> Response:
        return _json(targets_body(ctx))

    async def calls(request: Request) -> Response:
        return _json(calls_body(ctx, request.query_params.get("label", ""), _limit(request)))

    out = [
        Route("/api/harpoon", overview, methods=["GET"]),
        Route("/api/harpoon/status", status, methods=["GET"]),
        Route("/api/harpoon/targets", targets, methods=["GET"]),
        Route("/api/harpoon/calls", calls, methods=["GET"]),
    ]
    server = ctx.harpoon
    if server is not None and HTTP_STREAMABLE in server.cfg.additional_transports:
        out.append(Route("/harpoon/mcp", _mcp_endpoint(server), methods=["GET", "POST", "DELETE"]))
    return out


def _rpc_error(code: int, message: str, status: int) -> Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=NO_CACHE)


def _mcp_endpoint(server: HarpoonServer) -> Any:
    async def endpoint(request: Request) -> Response:
        if request.method != "POST":
            return Response("this endpoint is stateless: POST one JSON-RPC message per request\n", status_code=405,
                            headers={"Allow": "POST", **NO_CACHE}, media_type="text/plain")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_MCP_BODY:
                return _rpc_error(-32600, f"request body exceeds {MAX_MCP_BODY} bytes", 413)
        try:
            msg = json.loads(raw)
        except ValueError:
            return _rpc_error(-32700, "Parse error: the body is not JSON", 400)
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            return _rpc_error(-32600, "Invalid Request: send one JSON-RPC 2.0 message object", 400)
        if "method" not in msg:  # a response or an error from the client: nothing to do with it
            return Response(status_code=202, headers=NO_CACHE)
        answer = await server.answer(msg)
        if answer is None:
            return Response(status_code=202, headers=NO_CACHE)
        return JSONResponse(answer, headers=NO_CACHE)

    return endpoint
