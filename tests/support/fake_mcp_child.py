"""A stand-in for the SDK server behind the agent tools' stdio front (``python fake_mcp_child.py LOG``).

Appends every line it reads to LOG, answers requests with ``{"echo": method, "pid": pid}``, answers
``initialize`` with a minimal result, and exits with code 3 without answering on a ``tools/call``
whose name is ``exit``: the front must then fail that call and start a new child for the next.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    log = sys.argv[1]
    for line in sys.stdin:
        with open(log, "a", encoding="utf-8") as f:
            f.write(line)
        message = json.loads(line)
        if "id" not in message or "method" not in message:
            continue
        if message["method"] == "tools/call" and message.get("params", {}).get("name") == "exit":
            return 3
        result = {"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "fake", "version": "0"}} \
            if message["method"] == "initialize" else {"echo": message["method"], "pid": os.getpid()}
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
