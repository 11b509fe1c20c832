"""``run --open-web-ui`` (``OPEN_WEB_UI``, ``admin_ui.open_browser``) starts a browser on ``/ui``.

The browser is a real program named by ``$BROWSER`` that records the URL it was given; the
URL is then fetched to show it is the live UI of that run.
"""

from __future__ import annotations

import stat
from pathlib import Path

import httpx2
import pytest

from tests.support.proc import wait_until
from tests.support.relay import relay, relay_env
from tunnel_core.opsserver.browser import opener_argv


def _fake_browser(tmp_path: Path) -> tuple[Path, Path]:
    seen = tmp_path / "browser-argv.txt"
    script = tmp_path / "fake-browser"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{seen}.tmp" && mv "{seen}.tmp" "{seen}"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, seen


@pytest.mark.parametrize("how", ["flag", "env", "yaml"])
def test_open_web_ui_opens_the_runs_ui(tmp_path: Path, how: str) -> None:
    script, seen = _fake_browser(tmp_path)
    env = relay_env(tmp_path, BROWSER=f"{script} --new-tab %s")
    args: list[str] = []
    if how == "flag":
        args = ["--open-web-ui"]
    elif how == "env":
        env["OPEN_WEB_UI"] = "true"
    else:
        profile = tmp_path / "ui.yaml"
        profile.write_text("admin_ui:\n  open_browser: true\n")
        args = ["--config", str(profile)]
    with relay(tmp_path, args, env=env) as r:
        argv = wait_until(lambda: seen.exists() and seen.read_text().split(), "the browser to be started")
        assert argv == ["--new-tab", f"{r.health_url}/ui"]
        page = httpx2.get(argv[1], timeout=10.0, trust_env=False)
        assert page.status_code == 200 and r.tunnel_id in page.text
        opened = r.client.wait_log("opening the web UI in a browser")
        assert opened["ui_url"] == f"{r.health_url}/ui"


def test_a_missing_opener_is_a_warning_and_the_client_keeps_running(tmp_path: Path) -> None:
    env = relay_env(tmp_path, BROWSER=str(tmp_path / "no-such-browser"))
    with relay(tmp_path, ["--open-web-ui"], env=env) as r:
        warned = r.client.wait_log("cannot open the web UI in a browser; open it yourself")
        assert warned["ui_url"] == f"{r.health_url}/ui"
        assert r.ops("/healthz").status_code == 200


def test_opener_follows_browser_variable_then_platform() -> None:
    url = "http://127.0.0.1:9/ui"
    assert opener_argv(url, {}, "linux") == ["xdg-open", url]
    assert opener_argv(url, {}, "darwin") == ["open", url]
    assert opener_argv(url, {"BROWSER": "firefox:chromium"}, "linux") == ["firefox", url]
    assert opener_argv(url, {"BROWSER": "my-open --tab=%s"}, "linux") == ["my-open", f"--tab={url}"]
