"""A plain ``run`` loads only what its configuration uses.

The relay runs in a real subprocess (HTTP or stdio target, the test tunnel service), serves a
tools/call and its probes, then stops on SIGTERM; at exit it writes ``sys.modules`` to a file.
Heavy packages that belong to other features (the MCP SDK, the UI, the dev OAuth server, Redis,
OpenTelemetry, the admin client, YAML config files, ...) must not be among them: each costs
resident memory and start time for every operator who does not use it (docs/performance.md).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.faulty import STDIO_COMMAND, Session, result_text
from tests.support.proc import WAIT, Proc, base_env
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, TunnelService

# What a plain run must never import, and which feature each one belongs to.
NEVER = {
    "mcp": "the MCP SDK (embedded demo server, agent tools)",
    "httpx2": "the one-shot CLI / admin HTTP client",
    "httpcore2": "the one-shot CLI / admin HTTP client",
    "redis": "the tunnel service's shared queue",
    "opentelemetry": "tracing (only when OTEL_* asks for it)",
    "yaml": "config files and profiles (only when one is selected)",
    "pydantic": "the tunnel service's validators and the CLI's JSON results",
    "pydantic_core": "the tunnel service's validators and the CLI's JSON results",
    "sse_starlette": "the MCP SDK's server transport",
    "starlette": "the operator UI and JSON APIs (loaded on the first request for them)",
    "uvicorn": "the tunnel service and demo servers (the operator listener is asgiserver.py)",
    "aiohttp": "nothing of the product (the relay's client is httpio.py)",
    "prometheus_client": "the tunnel service's metrics (the relay's are tunnel_core.promtext)",
    "tunnel_core.opsserver.ui": "the operator UI (loaded on the first request for it)",
    "tunnel_core.opsserver.api": "the operator JSON APIs (loaded on the first request for them)",
    "tunnel_core.opsserver.bundle": "the support bundle",
    "tunnel_core.controlplane.admin": "the admin API client",
    "tunnel_core.oauth.devserver": "the demo OAuth server",
    "tunnel_core.mcpstub": "the embedded demo MCP server",
    "tunnel_core.devservice": "the tunnel service",
    "tunnel_core.codex": "the Codex plugin and assistant",
    "tunnel_core.runtimes": "detached runtimes",
    "tunnel_core.ops.doctor": "doctor",
    "tunnel_core.ops.profiles": "profiles",
    "tunnel_core.ops.samples": "init and samples",
    "agent_tools": "the agent tool server",
    # Standard-library modules a start does not need (each was a few milliseconds of every start).
    "tempfile": "nothing: atomic writes make their own temporary file (tempfile brings shutil, bz2 and lzma)",
    "email": "a Retry-After given as an HTTP date (rare)",
    "secrets": "nothing: the instance id is os.urandom (secrets brings hmac and hashlib)",
    "http": "the reason phrase of an HTTP error answer (HTTPStatus, when one is synthesized)",
    "hashlib": "digests: a proxy's id, a discovered authorization server's group (OpenSSL's digests load with it)",
    "random": "backoff jitter, after a failure",
}

# Runs the CLI in-process and writes the loaded module names when the process exits.
WRAPPER = """
import atexit, os, sys
atexit.register(lambda: open(os.environ["DUMP_MODULES"], "w").write("\\n".join(sorted(sys.modules))))
from tunnel_core.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _run_and_dump(tunnel_service: TunnelService, runtime_key: str, home: Path, target: list[str],
                  call: tuple[str, dict[str, object], str]) -> set[str]:
    tunnel_id = tunnel_service.add_tunnel()
    dump = home / "modules.txt"
    argv = [sys.executable, "-c", WRAPPER, "run", "--control-plane.base-url", tunnel_service.base_url,
            "--control-plane.tunnel-id", tunnel_id, "--health.listen-addr", "127.0.0.1:0",
            "--log.format", "json", "--log.level", "info", *target]
    proc = Proc(argv, base_env(home, CONTROL_PLANE_API_KEY=runtime_key, DUMP_MODULES=str(dump)))
    try:
        run = ClientRun(proc, tunnel_id, home / "unused.url", proc.wait_log("tunnel-client started")["health_url"])
        run.wait_readyz()
        for path in ("/healthz", "/metrics"):
            assert run.get(path).status_code == 200
        session = Session(tunnel_service.mcp_url(tunnel_id))
        try:
            session.initialize()
            tool, args, expected = call
            resp = session.call(tool, args)
            assert resp.status_code == 200 and expected in result_text(resp), resp.text
        finally:
            session.close()
    finally:
        modules = _stop_and_read(proc, dump)
    # The dump is real: the relay's own hot path is in it.
    assert {"tunnel_core.relay.dispatcher", "tunnel_core.relay.poller", "tunnel_core.runner"} <= modules
    return modules


def _stop_and_read(proc: Proc, dump: Path) -> set[str]:
    """SIGTERM (a clean stop runs the dump at exit), then the module names it wrote."""
    try:
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(WAIT) == 0, proc.tail()
    finally:
        if proc.popen.poll() is None:
            proc.kill()
    return set(dump.read_text().split())


def _offenders(modules: set[str]) -> dict[str, str]:
    return {m: why for m, why in NEVER.items() if m in modules or any(x.startswith(m + ".") for x in modules)}


def test_plain_run_with_an_http_target_imports_no_feature_it_does_not_use(
    tunnel_service: TunnelService, mcp_target: MCPTarget, runtime_key: str, tmp_path: Path
) -> None:
    modules = _run_and_dump(tunnel_service, runtime_key, tmp_path, ["--mcp.server-url", mcp_target.url],
                            ("echo", {"text": "footprint"}, "footprint"))
    assert _offenders(modules) == {}


def test_plain_run_with_a_stdio_target_imports_no_feature_it_does_not_use(
    tunnel_service: TunnelService, runtime_key: str, tmp_path: Path
) -> None:
    modules = _run_and_dump(tunnel_service, runtime_key, tmp_path, ["--mcp.command", STDIO_COMMAND],
                            ("echo", {"text": "footprint"}, "footprint"))
    assert _offenders(modules) == {}


@pytest.mark.parametrize("module", ["pydantic", "mcp"])
def test_the_never_list_can_fail(module: str) -> None:
    # The same check flags a process that did import one of them.
    loaded = subprocess.run([sys.executable, "-c", f"import sys, {module}; print(chr(10).join(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert module in _offenders(set(loaded))


def test_dev_proxy_runs_the_demo_server_without_the_mcp_sdk(tmp_path: Path) -> None:
    # The demo MCP server is hand-written (tunnel_core.mcpstub): the SDK was a third of dev proxy's memory.
    dump = tmp_path / "modules.txt"
    url_file = tmp_path / "proxy.json"
    proc = Proc([sys.executable, "-c", WRAPPER, "dev", "proxy", "--url-file", str(url_file)],
                base_env(tmp_path, DUMP_MODULES=str(dump)))
    try:
        proc.wait_stdout(r"MCP URL")
    finally:
        modules = _stop_and_read(proc, dump)
    assert "tunnel_core.mcpstub" in modules and "tunnel_core.devservice.app" in modules  # the dump is real
    assert not [m for m in modules if m == "mcp" or m.startswith("mcp.")]
