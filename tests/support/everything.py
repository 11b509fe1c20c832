"""``@modelcontextprotocol/server-everything`` (npm), the MCP reference test server, for the tests.

``scripts/bootstrap`` installs it into ``.test-deps/npm``; a missing install fails the test
(it is part of the test set-up, not optional). Over HTTP it runs as ``streamableHttp`` on a
free loopback port; over stdio the relay starts it with ``stdio_command()``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.proc import wait_until

ROOT = Path(__file__).resolve().parents[2]
EVERYTHING = ROOT / ".test-deps" / "npm" / "node_modules" / ".bin" / "mcp-server-everything"
START_WAIT = 30.0


def everything_bin() -> Path:
    if not EVERYTHING.exists():
        pytest.fail("server-everything is installed by scripts/bootstrap")
    return EVERYTHING


def stdio_command() -> str:
    """The ``--mcp.command`` value that runs server-everything over stdio."""
    return f"{everything_bin()} stdio"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def everything_http() -> Iterator[str]:
    """server-everything over Streamable HTTP for the duration of the block; yields its MCP URL."""
    exe = everything_bin()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([str(exe), "streamableHttp"], env={**os.environ, "PORT": str(port)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: _listening(port), "server-everything to listen", timeout=START_WAIT)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)
