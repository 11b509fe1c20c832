"""A small stdio MCP server for relay tests: newline-delimited JSON-RPC, requests handled concurrently.

Tools: ``echo {text}``, ``block {key}`` (answers only once ``release {key}`` is called),
``release {key}``, ``progress {steps}`` (one notifications/progress per step, then the
result), ``pid``, ``crash`` (exits at once with code 3). Environment knobs:
``STDIO_TEST_EXIT_AT_START=1`` exits immediately (a crash loop), ``STDIO_TEST_LOG`` appends
every received message to that file.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

TOOLS = [{"name": n, "description": n, "inputSchema": {"type": "object"}}
         for n in ("echo", "block", "release", "progress", "pid", "crash")]


class Server:
    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.log = os.environ.get("STDIO_TEST_LOG")

    def write(self, msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    async def handle(self, msg: dict[str, Any]) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as f:  # noqa: ASYNC230 - test server, tiny writes
                f.write(json.dumps(msg) + "\n")
        method, rid, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
        if method is None or rid is None:
            return  # notifications (initialized, cancelled) and responses need no answer
        if method == "initialize":
            result: dict[str, Any] = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                                      "capabilities": {"tools": {}},
                                      "serverInfo": {"name": "stdio-test", "version": "1.0"}}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if name == "crash":
                os._exit(3)
            if name == "echo":
                text = str(args.get("text", ""))
            elif name == "block":
                await self.gate(str(args.get("key"))).wait()
                text = f"released {args.get('key')}"
            elif name == "release":
                self.gate(str(args.get("key"))).set()
                text = "ok"
            elif name == "progress":
                token = (params.get("_meta") or {}).get("progressToken")
                steps = int(args.get("steps", 2))
                for i in range(steps):
                    if token is not None:
                        self.write({"jsonrpc": "2.0", "method": "notifications/progress",
                                    "params": {"progressToken": token, "progress": i + 1, "total": steps}})
                text = f"done {steps}"
            elif name == "pid":
                text = str(os.getpid())
            else:
                self.write({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"unknown tool {name}"}})
                return
            result = {"content": [{"type": "text", "text": text}], "isError": False}
        else:
            self.write({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "Method not found"}})
            return
        self.write({"jsonrpc": "2.0", "id": rid, "result": result})


async def main() -> None:
    if os.environ.get("STDIO_TEST_EXIT_AT_START") == "1":
        sys.stderr.write("exiting at start as asked\n")
        sys.exit(2)
    server = Server()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    while line := await reader.readline():
        if not line.strip():
            continue
        task = asyncio.ensure_future(server.handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main())
