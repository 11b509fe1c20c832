"""Causes in words: what was tried and what happened, never an exception class name. Real processes:
``run`` against a control plane where nothing listens, ``health`` against a port where nothing
listens, and ``run``'s configuration errors with and without any configuration."""

from __future__ import annotations

from pathlib import Path

from tests.support.cli_helpers import clean_env, cli, free_port
from tests.support.proc import wait_until
from tests.support.tunnel import new_tunnel_id, start_client

KEY = "rk_words_" + "w0rd" * 6


def test_unreachable_control_plane_is_named_in_readyz_and_the_log(tmp_path: Path, dead_port: int) -> None:
    tid = new_tunnel_id()
    run = start_client(service_url=f"http://127.0.0.1:{dead_port}", tunnel_id=tid, runtime_key=KEY,
                       home=tmp_path, args=["--embedded-mcp-stub"])
    try:
        want = f"cannot connect to http://127.0.0.1:{dead_port}/v1/tunnels/{tid}/poll: connection refused"

        def failing() -> bool:
            r = run.get("/readyz")
            return r.status_code == 503 and r.text == f"control plane poll failing: {want}"

        wait_until(failing, "/readyz to name the unreachable control plane")
        assert run.proc.wait_log("poll failed; backing off")["error"] == want
        meta = run.proc.wait_log("tunnel metadata unavailable")
        assert meta["error"] == f"cannot connect to http://127.0.0.1:{dead_port}/v1/tunnels/{tid}: connection refused"
        status = run.get("/api/status").json()
        assert status["last_poll_error"] == want
        assert "ClientConnectorError" not in run.get("/readyz").text
    finally:
        run.proc.kill()
    assert KEY not in run.proc.output()


def test_health_with_nothing_listening_says_the_daemon_is_not_listening(tmp_path: Path) -> None:
    port = free_port()
    r = cli(["health", "--port", str(port)], clean_env(tmp_path))
    assert r.code == 2
    assert f"Cause: the daemon is not listening at http://127.0.0.1:{port}; start it (tunnel-client run ...) " \
           "or check the address" in r.out
    assert f"Healthz: FAIL | http://127.0.0.1:{port}/healthz | connection refused: nothing is listening there" in r.out
    assert "Errno" not in r.out + r.err


def test_health_with_a_stale_url_file_says_so(tmp_path: Path) -> None:
    port = free_port()
    url_file = tmp_path / "health.url"
    url_file.write_text(f"http://127.0.0.1:{port}\n")
    r = cli(["health", "--url-file", str(url_file)], clean_env(tmp_path))
    assert r.code == 2
    assert "in the URL file, which may be left over from an earlier run" in r.out


def test_first_use_tail_only_when_nothing_was_configured(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    bare = cli(["run"], env)
    assert bare.code == 1 and bare.err.rstrip().endswith(
        "first use: 'tunnel-client dev proxy' runs everything locally; for a real tunnel set "
        "CONTROL_PLANE_TUNNEL_ID, CONTROL_PLANE_API_KEY and --mcp.server-url or --mcp.command")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("control_plane: [\n")
    syntax = cli(["run", "--config", str(bad_yaml)], env)
    assert syntax.code == 1
    assert syntax.err.strip() == f"configure tunnel-client: {bad_yaml}: invalid YAML at line 2; fix the syntax"
    no_key = cli(["run", "--control-plane.tunnel-id", new_tunnel_id(), "--mcp.server-url", "http://127.0.0.1:9/mcp"],
                 env)
    assert no_key.code == 1 and "control plane API key is required" in no_key.err
    assert "first use" not in no_key.err
    by_env = cli(["run"], clean_env(tmp_path, CONTROL_PLANE_TUNNEL_ID=new_tunnel_id()))
    assert by_env.code == 1 and "first use" not in by_env.err
