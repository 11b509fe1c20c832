"""Stopping `run` while a call is still with the MCP server: polling stops at once, the call gets
the grace period, then it is cancelled and the process exits cleanly (command tasks are plain
asyncio tasks that the runner cancels itself, not members of a task group).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.support.proc import WAIT, wait_until
from tests.support.relay import relay


class SilentServer:
    """Accepts connections on 127.0.0.1:0, reads requests and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests: list[bytes] = []
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/mcp"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.requests.append(data)

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


def test_a_call_still_running_at_shutdown_is_cancelled_after_the_grace(tmp_path: Path) -> None:
    server = SilentServer()
    try:
        with relay(tmp_path, ["--mcp.server-url", server.url]) as r:
            call = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}'
            caller = socket.create_connection(("127.0.0.1", int(r.service_url.rsplit(":", 1)[1])), timeout=WAIT)
            try:
                caller.sendall(f"POST /v1/mcp/{r.tunnel_id} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               f"Accept: application/json, text/event-stream\r\nContent-Length: {len(call)}\r\n\r\n"
                               .encode() + call)
                wait_until(lambda: any(b"tools/call" in req for req in server.requests), "the call to reach the server")
                r.client.popen.terminate()
                r.client.wait_log("stopping: polling halted, letting held commands finish")
                abandoned = r.client.wait_log("abandoning unfinished commands at shutdown")
                assert abandoned["held"] == 1
                r.client.wait_log("tunnel-client stopped")
                assert r.client.wait(WAIT) == 0
            finally:
                caller.close()
    finally:
        server.close()
    assert "Traceback" not in r.client.output()
