"""A lean Streamable-HTTP MCP server for the benchmarks: raw HTTP/1.1 over asyncio streams.

It costs almost nothing per call, so the curves of bench/relay_bench.py show the relay's own
cost rather than an SDK server's. Stateless (no Mcp-Session-Id), keep-alive, loopback only.

Tools:
    echo  {input}               the input back (JSON answer)
    blob  {size, sse}           a text result of ``size`` bytes, as JSON or as one SSE event
    hold  {}                    answered only after ``POST /release`` (for "commands in flight")
Plain endpoints: ``GET /stats`` -> {"holding": n}; ``POST /release`` frees every held call.

    python bench/lean_upstream.py --port-file /tmp/port     # writes the port once listening
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

HOLDING: set[asyncio.Future[None]] = set()


def _result(rpc_id: Any, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "result": {"content": [{"type": "text", "text": text}]}}


async def _answer(msg: dict[str, Any]) -> tuple[int, str, bytes]:
    """(status, content type, body) for one JSON-RPC message."""
    method, rpc_id = msg.get("method"), msg.get("id")
    if "id" not in msg:
        return 202, "", b""
    if method == "initialize":
        res = {"jsonrpc": "2.0", "id": rpc_id, "result": {
            "protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}}, "serverInfo": {"name": "lean-upstream", "version": "1"}}}
        return 200, "application/json", json.dumps(res).encode()
    if method == "tools/call":
        params = msg.get("params") or {}
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "blob":
            body = json.dumps(_result(rpc_id, "x" * int(args.get("size", 0))), separators=(",", ":")).encode()
            if args.get("sse"):
                return 200, "text/event-stream", b"event: message\ndata: " + body + b"\n\n"
            return 200, "application/json", body
        if name == "hold":
            fut = asyncio.get_running_loop().create_future()
            HOLDING.add(fut)
            try:
                await fut
            finally:
                HOLDING.discard(fut)
            return 200, "application/json", json.dumps(_result(rpc_id, "released")).encode()
        return 200, "application/json", json.dumps(_result(rpc_id, str(args.get("input", "")))).encode()
    if method == "tools/list":
        res = {"jsonrpc": "2.0", "id": rpc_id, "result": {"tools": []}}
        return 200, "application/json", json.dumps(res).encode()
    err = {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32601, "message": "method not found"}}
    return 200, "application/json", json.dumps(err).encode()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            status, ctype, out = 200, "application/json", b""
            if method == "POST" and path.startswith("/mcp"):
                status, ctype, out = await _answer(json.loads(body))
            elif path == "/stats":
                out = json.dumps({"holding": len(HOLDING)}).encode()
            elif path == "/release":
                for fut in list(HOLDING):
                    if not fut.done():
                        fut.set_result(None)
            elif method in ("DELETE", "HEAD"):
                pass
            else:
                status = 404
            reason = {200: "OK", 202: "Accepted", 404: "Not Found"}[status]
            hdrs = f"HTTP/1.1 {status} {reason}\r\n"
            if ctype == "text/event-stream":  # chunked, as SSE servers stream it
                hdrs += "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                writer.write(hdrs.encode() + f"{len(out):x}\r\n".encode() + out + b"\r\n0\r\n\r\n")
            else:
                if ctype and out:
                    hdrs += f"Content-Type: {ctype}\r\n"
                writer.write(hdrs.encode() + f"Content-Length: {len(out)}\r\n\r\n".encode() + out)
    finally:
        writer.close()


async def main(port_file: str) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    Path(port_file).write_text(f"{port}\n")  # noqa: ASYNC240  (once, at start)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(a.port_file))
    else:
        uvloop.run(main(a.port_file))
