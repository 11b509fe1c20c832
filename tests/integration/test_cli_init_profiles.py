"""`init` and `profiles ...` through the CLI: golden output, bad input -> one line + exit 1, no partial files."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cli_helpers import Result, clean_env, cli, cli_subprocess
from tunnel_core.config.settings import load_settings

TID = "tunnel_" + "d4" * 16
URL = "http://127.0.0.1:3001/mcp"
RAW_KEY = "sk-" + "proj-THISISNOTAREFERENCE0123456789"  # built at run time: a fake key, not a secret


def profile_dir(home: Path) -> Path:
    return home / ".config" / "tunnel-client"


def listing(home: Path) -> list[str]:
    d = profile_dir(home)
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def one_line_error(r: Result, *needles: str) -> None:
    assert r.code == 1, r
    assert r.out == ""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---------------------------------------------------------------------------- init


def test_init_writes_a_loadable_0600_profile_and_prints_next_steps(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    r = cli(["init", "--profile", "my-server", "--tunnel-id", TID, "--mcp-server-url", URL], env)
    path = profile_dir(tmp_path) / "my-server.yaml"
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0] == f"Created profile my-server at {path}"
    assert lines[1] == "Sample: sample_mcp_with_dcr"
    assert lines[2] == "Wrote:"
    nxt = lines.index("Next:")
    assert lines[nxt + 1:nxt + 3] == ["  tunnel-client doctor --profile my-server", "  tunnel-client run --profile my-server"]
    assert "  Tunnels management: https://platform.openai.com/settings/organization/tunnels" in lines
    assert "Connector note:" in lines
    assert "env:CONTROL_PLANE_API_KEY" in r.out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings({"profile": "my-server"}, {**env, "CONTROL_PLANE_API_KEY": "k"})
    assert settings.tunnel_id == TID and settings.health_listen_addr == "127.0.0.1:8080"


def test_init_defaults_match_the_reference(tmp_path: Path) -> None:
    r = cli(["init", "--tunnel-id", TID, "--mcp-server-url", URL, "--json"], clean_env(tmp_path))
    data = json.loads(r.out)
    assert data["profile"] == "sample_mcp_with_dcr" and data["sample"] == "sample_mcp_with_dcr"
    assert data["control_plane_base_url"] == "https://api.openai.com"
    assert data["api_key_ref"] == "env:CONTROL_PLANE_API_KEY"
    assert data["next"] == ["tunnel-client doctor --profile sample_mcp_with_dcr",
                            "tunnel-client run --profile sample_mcp_with_dcr"]
    assert listing(tmp_path) == ["sample_mcp_with_dcr.yaml"]


def test_init_with_only_a_command_picks_the_stdio_sample_after_preflight(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text("pass\n")
    r = cli(["init", "--profile", "local", "--tunnel-id", TID, "--mcp-command", f"{sys.executable} {script}",
             "--profile-dir", str(tmp_path / "p")], clean_env(tmp_path))
    assert r.code == 0, r
    assert "Sample: sample_mcp_stdio_local" in r.out
    assert f"  tunnel-client doctor --profile local --profile-dir {tmp_path / 'p'}" in r.out
    data = yaml.safe_load((tmp_path / "p" / "local.yaml").read_text())
    assert data["mcp"]["commands"] == [{"channel": "main", "command": f"{sys.executable} {script}"}]


def test_init_options_reach_the_profile(tmp_path: Path) -> None:
    r = cli(["init", "--profile", "full", "--tunnel-id", TID, "--mcp-server-url", URL, "--sample",
             "sample_mcp_remote_no_auth", "--control-plane-base-url", "https://cp.example.com",
             "--control-plane-url-path", "/tunnels", "--control-plane-api-key-ref", "file:/run/secrets/rk",
             "--health-listen-addr", "127.0.0.1:0", "--open-web-ui"], clean_env(tmp_path))
    assert r.code == 0, r
    data = yaml.safe_load((profile_dir(tmp_path) / "full.yaml").read_text())
    assert data["control_plane"] == {"base_url": "https://cp.example.com", "url_path": "/tunnels",
                                     "tunnel_id": TID, "api_key": "file:/run/secrets/rk"}
    assert data["health"]["listen_addr"] == "127.0.0.1:0" and data["admin_ui"]["open_browser"] is True


BAD_INIT = [
    ("no tunnel id", ["--mcp-server-url", URL], ("--tunnel-id is required", "help quickstart")),
    ("malformed tunnel id", ["--tunnel-id", "tunnel_ABC", "--mcp-server-url", URL], ("--tunnel-id", "tunnel_ABC")),
    ("raw key", ["--tunnel-id", TID, "--mcp-server-url", URL, "--control-plane-api-key-ref", RAW_KEY],
     ("--control-plane-api-key-ref", "env:CONTROL_PLANE_API_KEY")),
    ("no target", ["--tunnel-id", TID], ("exactly one of --mcp-server-url",)),
    ("both targets", ["--tunnel-id", TID, "--mcp-server-url", URL, "--mcp-command", "x"], ("exactly one of",)),
    ("relative url", ["--tunnel-id", TID, "--mcp-server-url", "localhost:3001/mcp"], ("--mcp-server-url",)),
    ("missing program", ["--tunnel-id", TID, "--mcp-command", "no-such-mcp-server-xyz --stdio"],
     ("--mcp-command preflight failed", "fix:")),
    ("unknown sample", ["--tunnel-id", TID, "--mcp-server-url", URL, "--sample", "sample_x"], ("unknown sample",)),
    ("bad profile name", ["--tunnel-id", TID, "--mcp-server-url", URL, "--profile", "../escape"], ("profile name",)),
    ("bad listen addr", ["--tunnel-id", TID, "--mcp-server-url", URL, "--health-listen-addr", "8080"],
     ("--health-listen-addr",)),
]


@pytest.mark.parametrize(("case", "args", "needles"), BAD_INIT, ids=[c[0] for c in BAD_INIT])
def test_init_bad_input_is_one_line_exit_1_and_writes_nothing(
    tmp_path: Path, case: str, args: list[str], needles: tuple[str, ...]
) -> None:
    r = cli(["init", *args], clean_env(tmp_path))
    one_line_error(r, *needles)
    assert RAW_KEY not in r.out + r.err
    assert listing(tmp_path) == []


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    args = ["init", "--profile", "p", "--tunnel-id", TID, "--mcp-server-url", URL]
    assert cli(args, env).code == 0
    path = profile_dir(tmp_path) / "p.yaml"
    before = path.read_text()
    again = cli([*args[:-1], "http://127.0.0.1:4000/mcp"], env)
    one_line_error(again, "already exists", "--force")
    assert path.read_text() == before
    forced = cli([*args[:-1], "http://127.0.0.1:4000/mcp", "--force"], env)
    assert forced.code == 0 and "(replaced the previous file)" in forced.out
    assert "4000" in path.read_text()
    assert listing(tmp_path) == ["p.yaml"]


def test_init_into_unwritable_profile_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = cli(["init", "--tunnel-id", TID, "--mcp-server-url", URL, "--profile-dir", str(blocker / "profiles")],
            clean_env(tmp_path))
    one_line_error(r, "is not writable", "--profile-dir")
    assert blocker.read_text() == ""


def test_init_as_subprocess(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    ok = cli_subprocess(["init", "--profile", "sub", "--tunnel-id", TID, "--mcp-server-url", URL], env)
    assert ok.code == 0 and ok.out.startswith("Created profile sub at ")
    bad = cli_subprocess(["init", "--tunnel-id", TID, "--mcp-server-url", URL, "--control-plane-api-key-ref",
                          RAW_KEY, "--profile", "other"], env)
    assert bad.code == 1 and RAW_KEY not in bad.out + bad.err
    assert listing(tmp_path) == ["sub.yaml"]


# ---------------------------------------------------------------------------- run / selection errors


@pytest.mark.parametrize(
    ("argv", "env", "needles"),
    [
        (["run", "--profile", "a", "--config", "b.yaml"], {}, ("--config and --profile are mutually exclusive",)),
        (["run"], {"TUNNEL_CLIENT_PROFILE": "a", "TUNNEL_CLIENT_PROFILE_FILE": "/x/b.yaml"}, ("mutually exclusive",)),
        (["run", "--profile", "missing"], {}, ("profile 'missing' not found", "tunnel-client init")),
    ],
)
def test_selection_errors_are_one_line_exit_1(tmp_path: Path, argv: list[str], env: dict[str, str],
                                               needles: tuple[str, ...]) -> None:
    one_line_error(cli(argv, clean_env(tmp_path, **env)), *needles)


def test_run_rejects_unknown_yaml_key_naming_it(tmp_path: Path) -> None:
    env = clean_env(tmp_path, CONTROL_PLANE_API_KEY="k")
    assert cli(["init", "--profile", "p", "--tunnel-id", TID, "--mcp-server-url", URL], env).code == 0
    path = profile_dir(tmp_path) / "p.yaml"
    path.write_text(path.read_text() + "mcp_typo: 1\n")
    one_line_error(cli(["run", "--profile", "p"], env), "unknown key mcp_typo")


# ---------------------------------------------------------------------------- profiles


def test_profiles_list_add_and_json(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    d = profile_dir(tmp_path)
    assert cli(["profiles", "list"], env).out == f"No profiles found in {d}\n"
    assert cli(["profiles", "list", "--json"], env).out == "[]\n"
    r = cli(["profiles", "add", "remote", "--sample", "sample_mcp_remote_no_auth", "--tunnel-id", TID,
             "--mcp-server-url", "https://mcp.example.com/mcp"], env)
    assert r.out == f"Added profile remote at {d / 'remote.yaml'}\n"
    src = tmp_path / "copy-me.yaml"
    src.write_text((d / "remote.yaml").read_text())
    assert cli(["profiles", "add", "a-copy", "--from-file", str(src)], env).code == 0
    assert cli(["profiles", "list"], env).out == f"a-copy\t{d / 'a-copy.yaml'}\nremote\t{d / 'remote.yaml'}\n"
    assert json.loads(cli(["profiles", "list", "--json"], env).out) == [
        {"name": "a-copy", "path": str(d / "a-copy.yaml")}, {"name": "remote", "path": str(d / "remote.yaml")},
    ]


def test_profile_dir_flag_env_and_position(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    env = clean_env(tmp_path)
    add = ["add", "x", "--sample", "sample_mcp_with_dcr", "--tunnel-id", TID, "--mcp-server-url", URL]
    assert cli(["profiles", "--profile-dir", str(other), *add], env).code == 0
    assert cli(["profiles", "list", "--profile-dir", str(other)], env).out.startswith("x\t")
    assert cli(["profiles", "--profile-dir", str(other), "list"], env).out.startswith("x\t")
    assert cli(["profiles", "list"], clean_env(tmp_path, TUNNEL_CLIENT_PROFILE_DIR=str(other))).out.startswith("x\t")
    assert cli(["profiles", "list"], env).out.startswith("No profiles found")


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["p"], ("exactly one of --from-file PATH or --sample NAME",)),
        (["p", "--sample", "sample_mcp_with_dcr", "--mcp-server-url", URL], ("--tunnel-id is required",)),
        (["p", "--from-file", "/nonexistent/file.yaml"], ("--from-file: cannot read",)),
        (["bad/name", "--sample", "sample_mcp_with_dcr"], ("profile name",)),
    ],
)
def test_profiles_add_bad_input(tmp_path: Path, args: list[str], needles: tuple[str, ...]) -> None:
    one_line_error(cli(["profiles", "add", *args], clean_env(tmp_path)), *needles)
    assert listing(tmp_path) == []


def test_profiles_add_unknown_key_names_it_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in.yaml"
    src.write_text(f"config_version: 1\ncontrol_plane:\n  tunnel_id: {TID}\n  tunel_typo: x\n")
    one_line_error(cli(["profiles", "add", "p", "--from-file", str(src)], clean_env(tmp_path)),
                   "unknown key control_plane.tunel_typo")
    assert listing(tmp_path) == []


def test_samples_list_and_show(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    names = [line.split("\t")[0] for line in cli(["profiles", "samples", "list"], env).out.splitlines()]
    assert names == ["sample_mcp_enterprise_proxy", "sample_mcp_remote_no_auth", "sample_mcp_stdio_local",
                     "sample_mcp_with_dcr"]
    shown = cli(["profiles", "samples", "show", "sample_mcp_enterprise_proxy"], env).out
    heads = [line for line in shown.splitlines() if line and not line.startswith((" ", "#"))][:6]
    assert [h.split(":")[0] for h in heads] == ["Sample", "Summary", "Use when", "Required", "Optional", "Notes"]
    assert 'http_proxy: "env:HTTPS_PROXY"' in shown
    one_line_error(cli(["profiles", "samples", "show", "nope"], env), "unknown sample 'nope'")
    data = json.loads(cli(["profiles", "samples", "show", "sample_mcp_stdio_local", "--json"], env).out)
    assert {"name", "summary", "use_when", "required", "optional", "notes", "yaml"} <= set(data)


EDITOR = """
import sys
mode, path = sys.argv[1], sys.argv[-1]
text = open(path).read()
open(path, "w").write(text.replace("127.0.0.1:8080", "127.0.0.1:9191") if mode == "ok" else text + "oops: 1\\n")
"""


def test_profiles_edit_saves_valid_and_keeps_original_on_invalid(tmp_path: Path) -> None:
    script = tmp_path / "ed.py"
    script.write_text(EDITOR)
    env = clean_env(tmp_path)
    assert cli(["init", "--profile", "e", "--tunnel-id", TID, "--mcp-server-url", URL], env).code == 0
    path = profile_dir(tmp_path) / "e.yaml"
    saved = cli(["profiles", "edit", "e"], {**env, "EDITOR": f"{sys.executable} {script} ok"})
    assert saved.code == 0 and saved.out == f"Saved profile e at {path}\n"
    good = path.read_text()
    assert "127.0.0.1:9191" in good
    bad = cli(["profiles", "edit", "e"], {**env, "VISUAL": f"{sys.executable} {script} break"})
    one_line_error(bad, "unknown key oops", "left unchanged")
    assert path.read_text() == good
    assert listing(tmp_path) == ["e.yaml"]
