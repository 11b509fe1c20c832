"""health: locating the daemon, input rules, metric parsing and process checks (no daemon needed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tunnel_core.errors import UsageError
from tunnel_core.ops import health


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("  http://127.0.0.1:8080/\n", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/readyz", "http://127.0.0.1:8080"),
        ("http://h:1/prefix/", "http://h:1/prefix"),
        ("", ""),
    ],
)
def test_normalize_base_url(raw: str, expected: str) -> None:
    assert health.normalize_base_url(raw) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of --url, --url-file or --port"),
        ({"url": "http://x", "port": 1}, "(got --url, --port)"),
        ({"url": "http://x", "url_file": "f"}, "exactly one of"),
        ({"port": 70000}, "--port: 70000 is not a port"),
        ({"port": -1}, "--port"),
        ({"url": "127.0.0.1:8080"}, "--url: '127.0.0.1:8080' is not an http(s) URL"),
        ({"port": 1, "pid": -5}, "--pid"),
        ({"port": 1, "pid": 5, "pid_file": "f"}, "at most one of --pid or --pid-file"),
    ],
)
def test_bad_input_is_a_usage_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as err:
        health.inspect_health(**kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_url_file_problems_are_reported_not_raised(tmp_path: Path) -> None:
    missing = health.locate("", str(tmp_path / "none.url"), 0)
    assert missing.kind == "url_file" and "cannot read" in missing.error
    empty = tmp_path / "empty.url"
    empty.write_text("\n")
    assert "holds no URL" in health.locate("", str(empty), 0).error
    good = tmp_path / "good.url"
    good.write_text("http://127.0.0.1:1234\n")
    assert health.locate("", str(good), 0).resolved_base_url == "http://127.0.0.1:1234"


METRICS = """# HELP commands_poll_last_successful_timestamp_seconds Unix time of the last successful poll
# TYPE commands_poll_last_successful_timestamp_seconds gauge
commands_poll_last_successful_timestamp_seconds 1.7e+09
commands_poll_last_successful_timestamp_seconds_extra 5
other{a="b"} 2
"""


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("commands_poll_last_successful_timestamp_seconds", 1.7e9),
        ("other", 2.0),
        ("missing_metric", None),
    ],
)
def test_metric_value(name: str, expected: float | None) -> None:
    assert health.metric_value(METRICS, name) == expected


def test_process_checks(tmp_path: Path) -> None:
    assert health.probe_process(os.getpid(), "").running
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not health.probe_process(child.pid, "").running
    pid_file = tmp_path / "pid"
    pid_file.write_text(f"{os.getpid()}\n")
    assert health.probe_process(0, str(pid_file)).running
    pid_file.write_text("not-a-pid")
    bad = health.probe_process(0, str(pid_file))
    assert not bad.running and "does not hold a process id" in bad.error
    assert "cannot read" in health.probe_process(0, str(tmp_path / "none")).error


def test_nothing_listening_is_a_failed_result_with_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        report = health.inspect_health(port=port, pid=os.getpid())
    assert report.result == "fail"
    assert not report.healthz.ok and report.healthz.error and report.healthz.url.endswith("/healthz")
    assert report.process is not None and report.process.running
    assert report.control_plane_poll is None
