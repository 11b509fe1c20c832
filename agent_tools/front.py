"""The stdio front of the agent tool server: ready in milliseconds, the ``mcp`` SDK behind it.

Codex builds a turn's tool list about a second after it starts, with or without a server that
is still importing; importing the ``mcp`` SDK alone takes longer than that on a small machine.
So what Codex starts is this module, which uses only the standard library. It answers the
handshake and the listings itself, and starts the SDK server (``python -m agent_tools.server``,
the process that executes every tool) as its child right after the ``initialize`` answer:

- ``initialize``: from the catalogue's record of the SDK (protocol versions, capabilities) and
  the shared server identity and instructions (``agent_tools.listing``); the same request is
  replayed to the child under a private id, and the child's answer is dropped;
- ``ping``, ``tools/list`` (the committed ``catalogue.json``, generated from the same tool
  definitions the SDK server registers), ``prompts/list``, ``resources/list`` and
  ``resources/templates/list``.

Everything else (``tools/call``, ``resources/read``, ``prompts/get``, notifications, answers to
server requests) is relayed to the child line by line, and every line the child writes is
relayed back; nothing but MCP reaches stdout. Requests that arrive before the SDK has loaded
wait in the pipe. A drift test proves the front and the SDK server answer the listings alike.

Failure rules: when the child exits, every request it had not answered gets a JSON-RPC error
saying so, and the next request starts a new child (replaying the handshake), at most
``MAX_RESTARTS`` times. Without a readable catalogue the front relays everything. When stdin
closes, the child's stdin is closed and it gets ``SHUTDOWN_GRACE`` seconds to finish.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

from agent_tools import listing

if TYPE_CHECKING:  # the imports before the first answer are kept to the minimum (subprocess comes later)
    import subprocess
    from typing import IO

CATALOGUE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "catalogue.json")
CHILD_MODULE = "agent_tools.server"
INIT_ID = "tunnel-client-front/initialize"
MAX_RESTARTS = 3
SHUTDOWN_GRACE = 10.0
LOCAL_METHODS = frozenset({"ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"})


def load_catalogue(path: str = CATALOGUE_PATH) -> dict[str, Any] | None:
    """The committed catalogue, or None when it cannot be read (the front then relays everything)."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError) as exc:
        _log(f"cannot read the tool catalogue {path}: {exc}; relaying every request to the SDK server")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("tools"), list) or not isinstance(
            data.get("protocol"), dict):
        _log(f"the tool catalogue {path} is malformed; relaying every request to the SDK server")
        return None
    return data


def _log(text: str) -> None:
    sys.stderr.write(f"tunnel-client agent tools: {text}\n")
    sys.stderr.flush()


def _key(request_id: Any) -> str:
    """A hashable identity for a JSON-RPC id (ids are strings or numbers; 1 and "1" differ)."""
    return json.dumps(request_id)


class Front:
    """One stdio session: the client on ``stdin``/``stdout``, the SDK server as a child process."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], *, catalogue: dict[str, Any] | None,
                 child_argv: list[str] | None = None) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._catalogue = catalogue
        self._child_argv = child_argv or [sys.executable, "-m", CHILD_MODULE]
        self._out_lock = threading.Lock()
        self._state = threading.Lock()  # guards everything below; held only briefly
        self._child: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._pending: dict[str, Any] = {}  # key -> id of requests the current child has not answered
        self._starts = 0
        self._closing = False
        self._init_request: dict[str, Any] | None = None
        self._initialized_note: bytes | None = None

    # ------------------------------------------------------------------ output

    def _send(self, message: dict[str, Any]) -> None:
        self._write(json.dumps(message, separators=(",", ":")).encode())

    def _write(self, line: bytes) -> None:
        with self._out_lock:
            self._stdout.write(line + b"\n")
            self._stdout.flush()

    def _error(self, request_id: Any, code: int, message: str) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})

    # ------------------------------------------------------------------ the child

    def start(self) -> None:
        """Start the SDK server now, so it loads while the front answers the handshake."""
        with self._state:
            self._spawn_locked()

    def _spawn_locked(self) -> subprocess.Popen[bytes] | None:
        import subprocess

        if self._starts > MAX_RESTARTS:
            return None
        self._starts += 1
        try:
            child = subprocess.Popen(self._child_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=None, env=os.environ.copy(), cwd=os.getcwd())
        except OSError as exc:
            _log(f"cannot start the SDK server {self._child_argv}: {exc}")
            return None
        self._child = child
        self._reader = threading.Thread(target=self._relay_child, args=(child,), name="agent-tools-relay",
                                        daemon=True)
        self._reader.start()
        if self._starts > 1 and self._init_request is not None:  # a restart: replay the handshake
            self._to_child(child, json.dumps({**self._init_request, "id": INIT_ID}).encode())
            if self._initialized_note is not None:
                self._to_child(child, self._initialized_note)
        return child

    @staticmethod
    def _to_child(child: subprocess.Popen[bytes], line: bytes) -> bool:
        assert child.stdin is not None
        try:
            child.stdin.write(line + b"\n")
            child.stdin.flush()
        except (OSError, ValueError):  # it exited (its reader answers what was pending) or stdin was closed
            return False
        return True

    def _relay_child(self, child: subprocess.Popen[bytes]) -> None:
        """Copy the child's lines to stdout, minus the answer to the replayed initialize."""
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.rstrip(b"\r\n")
            if not line:
                continue
            message = _parse(line)
            if isinstance(message, dict) and "method" not in message and "id" in message:
                if message["id"] == INIT_ID:
                    if "error" in message:
                        _log(f"the SDK server refused the handshake: {message['error']}")
                    continue
                with self._state:
                    self._pending.pop(_key(message["id"]), None)
            self._write(line)
        code = child.wait()
        with self._state:
            if self._child is child:
                self._child = None
            orphans = list(self._pending.values())
            self._pending.clear()
            closing = self._closing
        if not closing:
            _log(f"the SDK server exited with code {code}")
        for request_id in orphans:
            self._error(request_id, -32603, f"the tunnel-client tool server exited (code {code}) before answering; "
                                            "call the tool again to retry")

    def _forward(self, line: bytes, request_id: Any = None) -> None:
        with self._state:
            child = self._child or self._spawn_locked()
            if child is None:
                failed = True
            else:
                failed = False
                if request_id is not None:
                    self._pending[_key(request_id)] = request_id
        if failed:
            if request_id is not None:
                self._error(request_id, -32603, "the tunnel-client tool server could not be started; see the "
                                                "MCP server log of Codex")
            return
        assert child is not None
        self._to_child(child, line)

    # ------------------------------------------------------------------ the client

    def _local(self, method: str) -> dict[str, Any] | None:
        """The answer to a listing request, or None when the child must answer."""
        catalogue = self._catalogue
        if catalogue is None or self._init_request is None:  # no handshake seen: let the SDK answer
            return None
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": catalogue["tools"]}
        if method == "prompts/list":
            return listing.prompts_list()
        if method == "resources/list":
            return listing.resources_list()
        if method == "resources/templates/list":
            return {"resourceTemplates": []}
        return None

    def _handle(self, line: bytes) -> None:
        message = _parse(line)
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            self._forward(line)  # a response to a server request, a batch, or garbage for the SDK to refuse
            return
        method: str = message["method"]
        if "id" not in message:
            if method == "notifications/initialized":
                self._initialized_note = line
            self._forward(line)
            return
        request_id = message["id"]
        if method == "initialize" and self._catalogue is not None:
            params = message.get("params")
            requested = params.get("protocolVersion") if isinstance(params, dict) else None
            self._send({"jsonrpc": "2.0", "id": request_id, "result": listing.initialize_result(
                requested, self._catalogue["protocol"])})
            self._forward(json.dumps({**message, "id": INIT_ID}).encode())
            self._init_request = message  # after the forward: a child started by it gets this request once
            return
        if method in LOCAL_METHODS:
            result = self._local(method)
            if result is not None:
                self._send({"jsonrpc": "2.0", "id": request_id, "result": result})
                return
        self._forward(line, request_id)

    def serve(self) -> int:
        """Serve until stdin closes; then let the child finish (bounded) and return the exit code.

        The child is started by the first message relayed to it, i.e. right after the
        ``initialize`` answer is written: on a busy machine the handshake does not wait for
        the child's start-up to share the cores.
        """
        try:
            for raw in self._stdin:
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    self._handle(line)
        except KeyboardInterrupt:
            pass
        return self.close()

    def close(self) -> int:
        with self._state:
            self._closing = True
            child, reader = self._child, self._reader
        if child is None:
            return 0
        if child.stdin is not None:
            try:
                child.stdin.close()
            except OSError:
                pass
        if reader is not None:
            reader.join(SHUTDOWN_GRACE)
        if child.poll() is None:
            import subprocess

            child.terminate()
            try:
                child.wait(2.0)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        return 0


def _parse(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def main() -> int:
    """Serve MCP on stdio (what the Codex plugin starts)."""
    front = Front(sys.stdin.buffer, sys.stdout.buffer, catalogue=load_catalogue())
    return front.serve()
