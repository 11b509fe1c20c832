"""`help`, root `--help`, command-line errors: in-process and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.cli_helpers import TUNNEL_CLIENT, clean_env, cli, cli_subprocess
from tunnel_core.ops.help_topics import get_topic

TOPICS = ["doctor", "oauth", "plugin", "quickstart", "samples", "troubleshooting"]
PAGES = [
    "https://platform.openai.com/settings/organization/tunnels",
    "https://platform.openai.com/settings/organization/api-keys",
    "https://platform.openai.com/settings/organization/admin-keys",
    "https://chatgpt.com/#settings/Connectors",
]


def test_root_help_lists_commands_topics_and_setup_pages(tmp_path: Path) -> None:
    for argv in (["--help"], ["help"], []):
        r = cli(argv, clean_env(tmp_path))
        assert r.code == 0, argv
        for word in ("init", "doctor", "health", "profiles", *PAGES):
            assert word in r.out, (argv, word)
        for topic in TOPICS:
            assert f"tunnel-client help {topic}" in r.out


def test_help_topic_prints_the_page(tmp_path: Path) -> None:
    r = cli(["help", "quickstart"], clean_env(tmp_path))
    assert (r.code, r.err) == (0, "")
    assert r.out == get_topic("quickstart").text


def test_help_topic_as_json(tmp_path: Path) -> None:
    r = cli(["help", "samples", "--json"], clean_env(tmp_path))
    data = json.loads(r.out)
    assert set(data) == {"name", "title", "text"} and data["name"] == "samples"


def test_unknown_topic_is_one_line_listing_topics_exit_1(tmp_path: Path) -> None:
    r = cli(["help", "quikstart"], clean_env(tmp_path))
    assert r.code == 1 and r.out == ""
    assert r.err == f"tunnel-client: unknown help topic 'quikstart'; available topics: {', '.join(TOPICS)}\n"


def test_help_falls_back_to_command_help(tmp_path: Path) -> None:
    r = cli(["help", "init"], clean_env(tmp_path))
    assert r.code == 0 and r.out.startswith("usage: tunnel-client init")
    assert "--control-plane-api-key-ref" in r.out
    nested = cli(["help", "profiles", "samples"], clean_env(tmp_path))
    assert nested.code == 0 and nested.out.startswith("usage: tunnel-client profiles samples")


def test_bad_command_line_exits_1_on_the_injected_stream(tmp_path: Path) -> None:
    r = cli(["doctor", "--no-such-flag"], clean_env(tmp_path))
    assert r.code == 1 and r.out == ""
    assert "unrecognized arguments: --no-such-flag" in r.err


def test_subprocess_help_and_error_exit_codes(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert cli_subprocess(["help", "doctor"], env).out == get_topic("doctor").text
    bad = cli_subprocess(["help", "nope"], env)
    assert bad.code == 1 and "available topics: doctor, oauth" in bad.err


def test_root_help_imports_nothing_heavy(tmp_path: Path) -> None:
    # How fast --help is gets measured by bench/relay_bench.py, never asserted here: what keeps it fast is
    # what it does not import.
    probe = (
        "import sys; from tunnel_core.cli.main import build_parser; build_parser().format_help(); "
        "print(','.join(m for m in ('pydantic', 'httpx2', 'anyio', 'yaml', 'uvicorn', 'psutil') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
    assert subprocess.run([TUNNEL_CLIENT, "--help"], env=clean_env(tmp_path), capture_output=True).returncode == 0


def _loaded_after(argv: list[str]) -> set[str]:
    probe = ("import io, sys; from tunnel_core.cli.main import main; "
             f"main({argv!r}, stdout=io.StringIO(), stderr=io.StringIO()); print(chr(10).join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_root_help_and_help_topic_build_no_command_module() -> None:
    # The commands are listed from cli/commands.py; their modules load only when one is run.
    for argv in (["--help"], ["help", "doctor"]):
        loaded = _loaded_after(argv)
        commands = {m for m in loaded if m.startswith("tunnel_core.cli.") and m.endswith("cmd")}
        assert commands <= {"tunnel_core.cli.opscmd"}, (argv, commands)  # `help` lives in opscmd
        assert not loaded & {"dataclasses", "pathlib", "typing", "pydantic"}, argv
    assert "tunnel_core.cli.runcmd" in _loaded_after(["run", "--help"])  # the check sees a command module


def test_root_help_reads_the_same_from_the_table_and_from_every_command() -> None:
    from tunnel_core.cli.main import build_parser

    listed = build_parser(None, only=True).format_help()  # commands listed from cli/commands.py only
    assert listed == build_parser().format_help()  # ... and from each command's own registration
    assert build_parser("run", only=True).format_help() == listed


def test_help_topic_console_script_prints_what_the_help_command_prints(tmp_path: Path) -> None:
    # `tunnel-client help TOPIC` is answered by cli/entry.py before argparse is imported; it must read
    # exactly as the `help` command's own answer, and anything that is not a topic goes on to main.
    env = clean_env(tmp_path)
    for topic in TOPICS:
        fast = cli_subprocess(["help", topic], env)
        assert (fast.code, fast.out, fast.err) == (0, cli(["help", topic], env).out, ""), topic
    nope = cli_subprocess(["help", "nope"], env)
    assert (nope.code, nope.out, nope.err) == (1, "", cli(["help", "nope"], env).err)
    assert cli_subprocess(["help", "run"], env).out.startswith("usage: tunnel-client run ")
    assert cli_subprocess(["help", " "], env).out.startswith("usage: tunnel-client [-h] [-v] COMMAND ...")
    probe = ("import sys; sys.argv = ['tunnel-client', 'help', 'doctor']\n"
             "from tunnel_core.cli.entry import entrypoint\n"
             "try:\n    entrypoint()\nexcept SystemExit:\n    pass\n"
             "sys.stderr.write(','.join(m for m in ('argparse', 're', 'tunnel_core.cli.main') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout == get_topic("doctor").text and done.stderr == ""
