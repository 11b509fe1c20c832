"""``catalogue.json``: the SDK server's tools as it lists them on the wire, recorded for the stdio front.

``python -m agent_tools.catalogue`` starts the SDK server (``python -m agent_tools.server``),
performs the handshake Codex performs, and records its ``tools/list`` answer and the protocol
facts the front needs to answer ``initialize`` (accepted versions, capabilities). The file is
committed; ``--check`` (and a test) fails when it no longer equals what the SDK server says,
so the front can never advertise a tool the server does not have, or miss one.

``model_bytes`` is what a model pays for the catalogue on every request: the JSON of each
tool's name, description and input schema (Codex sends those, not the output schema).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent_tools.front import CATALOGUE_PATH, CHILD_MODULE

HANDSHAKE_VERSION = "2025-06-18"  # what Codex 0.169.0 asks for
WAIT = 60.0


def ask_sdk_server(methods: list[str], *, protocol_version: str = HANDSHAKE_VERSION,
                   argv: list[str] | None = None) -> dict[str, Any]:
    """``{"initialize": result, method: result, ...}`` from a fresh stdio session with ``argv``."""
    command = argv or [sys.executable, "-m", CHILD_MODULE]
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": protocol_version, "capabilities": {},
        "clientInfo": {"name": "tunnel-client-catalogue", "version": "1"}}}
    lines = [init, {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    lines += [{"jsonrpc": "2.0", "id": n, "method": m, "params": {}} for n, m in enumerate(methods, start=1)]
    # stdin stays open until every answer is in: the SDK drops requests still running at EOF
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdin is not None and proc.stdout is not None
    answers: dict[Any, Any] = {}
    try:
        proc.stdin.write("".join(json.dumps(m) + "\n" for m in lines))
        proc.stdin.flush()
        while len(answers) < len(methods) + 1:
            line = proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "id" in message and "method" not in message:
                answers[message["id"]] = message
        proc.stdin.close()
        proc.wait(WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    out: dict[str, Any] = {}
    for n, method in enumerate(["initialize", *methods]):
        message = answers.get(n)
        if message is None or "result" not in message:
            raise RuntimeError(f"{' '.join(command)} did not answer {method}: {message}; stderr: {stderr[-2000:]}")
        out[method] = message["result"]
    return out


def build() -> dict[str, Any]:
    """The catalogue as the SDK server states it now."""
    from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

    answers = ask_sdk_server(["tools/list"])
    return {
        "generated_by": "python -m agent_tools.catalogue (do not edit by hand)",
        "protocol": {"versions": list(HANDSHAKE_PROTOCOL_VERSIONS), "latest": LATEST_HANDSHAKE_VERSION,
                     "capabilities": answers["initialize"]["capabilities"]},
        "tools": answers["tools/list"]["tools"],
    }


def render(catalogue: dict[str, Any]) -> str:
    return json.dumps(catalogue, indent=1, ensure_ascii=False) + "\n"


def model_bytes(tools: list[dict[str, Any]]) -> int:
    """Bytes of name + description + inputSchema over all tools (compact JSON, as sent to the model)."""
    return sum(len(json.dumps({"name": t["name"], "description": t.get("description", ""),
                               "inputSchema": t["inputSchema"]}, separators=(",", ":"), ensure_ascii=False))
               for t in tools)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_tools.catalogue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when catalogue.json differs from the server")
    args = parser.parse_args(argv)
    text = render(build())
    path = Path(CATALOGUE_PATH)
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    tools = json.loads(text)["tools"]
    summary = f"{len(tools)} tools, {model_bytes(tools)} bytes seen by the model"
    if args.check:
        if current != text:
            print(f"{CATALOGUE_PATH} is stale; regenerate it with: python -m agent_tools.catalogue", file=sys.stderr)
            return 1
        print(f"{CATALOGUE_PATH} is current ({summary})")
        return 0
    if current != text:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {CATALOGUE_PATH} ({summary})")
    else:
        print(f"{CATALOGUE_PATH} unchanged ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
