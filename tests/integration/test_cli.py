"""The ``tunnel-client`` console script: --help, --version and configuration errors (real subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.proc import base_env, run_cli
from tunnel_core import __version__

TID = "tunnel_" + "0123456789abcdef" * 2
SECRET = "sk-" + "cli-Literal-Secret-0123456789"  # built at run time: a fake key, not a secret


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], base_env(tmp_path))
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{__version__}\n", "")


def test_help_lists_the_commands_and_the_local_first_use(tmp_path: Path) -> None:
    result = run_cli(["--help"], base_env(tmp_path))
    assert result.returncode == 0
    assert "run" in result.stdout
    assert "dev" in result.stdout
    assert "tunnel-client dev proxy" in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["run", "--help"], ["--control-plane.tunnel-id", "--control-plane.api-key", "--mcp.server-url",
                             "--health.listen-addr", "--health.url-file", "--log.format", "--embedded-mcp-stub",
                             "CONTROL_PLANE_TUNNEL_ID"]),
        (["dev", "proxy", "--help"], ["--listen", "--tunnel-id", "--mcp-server-url", "--url-file", "--print-json",
                                      "--response-timeout", "--readiness-timeout", "--duration"]),
        (["dev", "tunnel-service", "--help"], ["--listen", "--tunnel-id", "--runtime-api-key"]),
    ],
)
def test_subcommand_help_names_the_reference_flags(tmp_path: Path, command: list[str], expected: list[str]) -> None:
    result = run_cli(command, base_env(tmp_path))
    assert result.returncode == 0, result.stderr
    for flag in expected:
        assert flag in result.stdout


BASE = ["run", "--mcp.server-url", "http://127.0.0.1:9/mcp", "--health.listen-addr", "127.0.0.1:0"]

# (args after BASE, extra env, YAML file content or None, text the one error line must contain)
BAD_CONFIG = [
    pytest.param(["--control-plane.tunnel-id", "tunnel_NOT-valid"], {"CONTROL_PLANE_API_KEY": SECRET}, None,
                 "--control-plane.tunnel-id", id="invalid-tunnel-id"),
    pytest.param(["--control-plane.tunnel-id", TID], {}, None, "CONTROL_PLANE_API_KEY", id="missing-api-key"),
    pytest.param(["--control-plane.tunnel-id", TID, "--control-plane.api-key", SECRET], {}, None,
                 "--control-plane.api-key", id="literal-key-in-flag"),
    pytest.param(["--control-plane.tunnel-id", TID], {"CONTROL_PLANE_API_KEY": f"'{SECRET}'"}, None,
                 "CONTROL_PLANE_API_KEY", id="quoted-key-in-env"),
    pytest.param(["--control-plane.tunnel-id", TID, "--control-plane.api-key", "env:TEST_UNSET_KEY_VAR"],
                 {"CONTROL_PLANE_API_KEY": SECRET}, None, "TEST_UNSET_KEY_VAR", id="unset-env-reference"),
    pytest.param([], {"CONTROL_PLANE_API_KEY": SECRET},
                 f"control_plane:\n  tunnel_id: {TID}\n  tunnel_idd: oops\n", "unknown key control_plane.tunnel_idd",
                 id="unknown-yaml-key"),
    pytest.param(["--control-plane.tunnel-id", TID, "--control-plane.poll-timeout", "30"],
                 {"CONTROL_PLANE_API_KEY": SECRET}, None, "--control-plane.poll-timeout", id="duration-without-unit"),
    pytest.param(["--control-plane.tunnel-id", TID], {"CONTROL_PLANE_API_KEY": SECRET, "MCP_MAX_CONCURRENT_REQUESTS": "0"},
                 None, "MCP_MAX_CONCURRENT_REQUESTS", id="zero-workers-from-env"),
]


@pytest.mark.parametrize(("args", "env", "yaml_text", "names"), BAD_CONFIG)
def test_bad_config_exits_1_with_one_line_naming_the_setting(
    tmp_path: Path, args: list[str], env: dict[str, str], yaml_text: str | None, names: str
) -> None:
    if yaml_text is not None:
        config = tmp_path / "config.yaml"
        config.write_text(yaml_text, encoding="utf-8")
        args = [*args, "--config", str(config)]
    result = run_cli([*BASE, *args], base_env(tmp_path, **env))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["dev", "proxy", "--tunnel-id", "tunnel_bad"], "--tunnel-id"),
        (["dev", "proxy", "--response-timeout", "soon"], "--response-timeout"),
        (["dev", "tunnel-service", "--runtime-api-key", SECRET], "--runtime-api-key"),
    ],
)
def test_dev_commands_reject_bad_values_with_one_line(tmp_path: Path, args: list[str], names: str) -> None:
    result = run_cli(args, base_env(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert SECRET not in result.stderr + result.stdout
