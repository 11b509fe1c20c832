"""Profiles: listing, strict validation, exclusive atomic writes (0600), add and edit."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.ops import profiles
from tunnel_core.ops.samples import SampleRequest, render_sample

TID = "tunnel_" + "b2" * 16
GOOD = render_sample("sample_mcp_remote_no_auth", SampleRequest(tunnel_id=TID, mcp_server_url="http://127.0.0.1:9/mcp"))


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize(
    ("env", "flag", "expected"),
    [
        ({"TUNNEL_CLIENT_PROFILE_DIR": "/e", "XDG_CONFIG_HOME": "/x", "HOME": "/h"}, "/f", "/f"),
        ({"TUNNEL_CLIENT_PROFILE_DIR": "/e", "XDG_CONFIG_HOME": "/x", "HOME": "/h"}, None, "/e"),
        ({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}, None, "/x/tunnel-client"),
        ({"HOME": "/h"}, None, "/h/.config/tunnel-client"),
    ],
)
def test_profile_directory_precedence(env: dict[str, str], flag: str | None, expected: str) -> None:
    assert profiles.resolve_dir(flag, env) == Path(expected)


def test_list_sorts_valid_yaml_names_and_ignores_the_rest(tmp_path: Path) -> None:
    for name in ("zeta.yaml", "alpha.yaml", ".hidden.yaml", "notes.txt", "-bad.yaml", "m.yml"):
        (tmp_path / name).write_text(GOOD)
    (tmp_path / "dir.yaml").mkdir()
    assert [(e.name, Path(e.path).name) for e in profiles.list_profiles(tmp_path)] == [
        ("alpha", "alpha.yaml"), ("zeta", "zeta.yaml"),
    ]


def test_list_of_missing_directory_is_empty(tmp_path: Path) -> None:
    assert profiles.list_profiles(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t + "bogus_key: 1\n", "unknown key bogus_key"),
        (lambda t: t.replace("  base_url:", "  base_urll:"), "unknown key control_plane.base_urll"),
        (lambda t: t.replace(TID, "tunnel_XYZ"), "invalid tunnel ID"),
        (lambda t: t.replace('tunnel_id: "' + TID + '"', ""), "tunnel ID is required"),
        (lambda t: t.replace("config_version: 1", "config_version: 2"), "config_version 2 is not supported"),
        (lambda t: t.replace('"env:CONTROL_PLANE_API_KEY"', '"env:9X"'), "does not name an environment variable"),
        (lambda t: t.replace('"env:CONTROL_PLANE_API_KEY"', '"has spaces in it"'), "outside [0-9A-Za-z_-]"),
        (lambda t: t.replace('"http://127.0.0.1:9/mcp"', '"not a url"'), "is not an absolute http(s) URL"),
        (lambda t: t.replace('listen_addr: "127.0.0.1:8080"', 'listen_addr: "nope"'), "must be HOST:PORT"),
        (lambda t: t + "  :\n", "invalid YAML"),
    ],
)
def test_validation_rejects_with_one_line_naming_the_problem(mutate: object, message: str) -> None:
    text = mutate(GOOD)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        profiles.validate_profile_text(text, source="/p/x.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("/p/x.yaml")
    assert "\n" not in str(err.value)
    assert "tunnel-client-validate-" not in str(err.value)


def test_validation_does_not_need_the_key_or_key_file() -> None:
    text = GOOD.replace('"env:CONTROL_PLANE_API_KEY"', '"file:/nonexistent/key"')
    assert profiles.validate_profile_text(text, source="x").control_plane is not None


def test_literal_key_error_does_not_echo_it() -> None:
    text = GOOD.replace('"env:CONTROL_PLANE_API_KEY"', '"sk secret value"')
    with pytest.raises(ConfigError) as err:
        profiles.validate_profile_text(text, source="x")
    assert "sk secret value" not in str(err.value)


def test_write_is_exclusive_unless_forced_and_0600(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.yaml"
    assert profiles.write_profile_file(path, "one\n", force=False) is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(ConfigError, match=r"already exists .* pass --force"):
        profiles.write_profile_file(path, "two\n", force=False)
    assert path.read_text() == "one\n"
    assert profiles.write_profile_file(path, "three\n", force=True) is True
    assert path.read_text() == "three\n"
    assert files_in(path.parent) == ["p.yaml"]


def test_unwritable_directory_is_one_clear_line_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as err:
        profiles.write_profile_file(blocker / "profiles" / "p.yaml", GOOD, force=False)
    assert "is not writable" in str(err.value) and "--profile-dir" in str(err.value)
    assert files_in(tmp_path) == ["file"]


def test_add_from_sample_and_from_file(tmp_path: Path) -> None:
    d = tmp_path / "profiles"
    added = profiles.add_profile(
        "remote", d, sample="sample_mcp_remote_no_auth",
        request=SampleRequest(tunnel_id=TID, mcp_server_url="https://mcp.example.com/mcp"),
    )
    assert added.path == str(d / "remote.yaml") and not added.replaced
    src = tmp_path / "src.yaml"
    src.write_text(GOOD)
    copied = profiles.add_profile("copy", d, from_file=str(src))
    assert Path(copied.path).read_text() == GOOD


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({}, UsageError, "exactly one of --from-file"),
        ({"sample": "sample_mcp_with_dcr", "from_file": "x"}, UsageError, "exactly one of --from-file"),
        ({"from_file": "/nonexistent.yaml"}, ConfigError, "--from-file: cannot read"),
        ({"sample": "sample_nope"}, UsageError, "unknown sample"),
        ({"sample": "sample_mcp_with_dcr"}, ConfigError, "--tunnel-id is required"),
    ],
)
def test_add_bad_inputs_write_nothing(tmp_path: Path, kwargs: dict[str, str], error: type[Exception],
                                      message: str) -> None:
    with pytest.raises(error, match=message):
        profiles.add_profile("p", tmp_path / "d", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "d" / "p.yaml").exists()


def test_add_invalid_file_names_the_unknown_key(tmp_path: Path) -> None:
    src = tmp_path / "src.yaml"
    src.write_text(GOOD + "surprise: true\n")
    with pytest.raises(ConfigError, match="unknown key surprise"):
        profiles.add_profile("p", tmp_path / "d", from_file=str(src))
    assert files_in(tmp_path / "d") == []


@pytest.mark.parametrize("name", ["", "-x", "a/b", "../up", "x" * 129])
def test_invalid_profile_names(name: str) -> None:
    with pytest.raises(UsageError, match="profile name"):
        profiles.profile_path(name, Path("/tmp"))


# ---------------------------------------------------------------------------- edit

EDITOR = """
import sys
mode, path = sys.argv[1], sys.argv[-1]
text = open(path).read()
if mode == "port":
    text = text.replace("127.0.0.1:8080", "127.0.0.1:9090")
elif mode == "break":
    text += "not_a_setting: 1\\n"
elif mode == "fail":
    open(path, "w").write("garbage")
    sys.exit(3)
open(path, "w").write(text)
"""


@pytest.fixture
def editor(tmp_path: Path) -> str:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    return f"{sys.executable} {script}"


def test_edit_saves_a_valid_change_atomically(tmp_path: Path, editor: str) -> None:
    d = tmp_path / "d"
    profiles.write_profile_file(d / "p.yaml", GOOD, force=False)
    result = profiles.edit_profile("p", d, {"EDITOR": f"{editor} port"})
    assert result.changed and result.replaced
    assert "127.0.0.1:9090" in (d / "p.yaml").read_text()
    assert stat.S_IMODE((d / "p.yaml").stat().st_mode) == 0o600
    assert files_in(d) == ["p.yaml"]


def test_edit_prefers_visual_over_editor(tmp_path: Path, editor: str) -> None:
    d = tmp_path / "d"
    profiles.write_profile_file(d / "p.yaml", GOOD, force=False)
    profiles.edit_profile("p", d, {"VISUAL": f"{editor} port", "EDITOR": "/nonexistent-editor"})
    assert "127.0.0.1:9090" in (d / "p.yaml").read_text()


@pytest.mark.parametrize(("mode", "message"), [("break", "unknown key not_a_setting"), ("fail", "exited with status 3")])
def test_edit_that_breaks_the_profile_keeps_the_original(tmp_path: Path, editor: str, mode: str, message: str) -> None:
    d = tmp_path / "d"
    profiles.write_profile_file(d / "p.yaml", GOOD, force=False)
    with pytest.raises((ConfigError, UsageError)) as err:
        profiles.edit_profile("p", d, {"EDITOR": f"{editor} {mode}"})
    assert message in str(err.value) and "left unchanged" in str(err.value)
    assert (d / "p.yaml").read_text() == GOOD
    assert files_in(d) == ["p.yaml"]


def test_edit_unchanged_existing_profile_reports_no_change(tmp_path: Path, editor: str) -> None:
    d = tmp_path / "d"
    profiles.write_profile_file(d / "p.yaml", GOOD, force=False)
    assert not profiles.edit_profile("p", d, {"EDITOR": f"{editor} keep"}).changed


def test_edit_of_a_new_profile_starts_from_the_default_sample(tmp_path: Path, editor: str) -> None:
    d = tmp_path / "d"
    profiles.edit_profile("fresh", d, {"EDITOR": f"{editor} keep"})
    text = (d / "fresh.yaml").read_text()
    assert profiles.EDIT_SEED_TUNNEL_ID in text and profiles.EDIT_SEED_MCP_URL in text


def test_edit_without_an_editor_says_how_to_set_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="set VISUAL or EDITOR"):
        profiles.edit_profile("p", tmp_path, {})
