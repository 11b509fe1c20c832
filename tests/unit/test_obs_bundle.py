"""The support bundle's pieces: window, argv/env/config redaction, archive layout (opsserver.bundle)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.support.obs_helpers import unpack_bundle
from tunnel_core.config.settings import default_flags, load_settings
from tunnel_core.logs import REDACTED
from tunnel_core.opsserver import bundle

SECRET = "PLANTED-unit-secret-4242"
TID = "tunnel_" + "d" * 32


@pytest.mark.parametrize(("raw", "minutes"), [
    (None, 30), ("", 30), ("x", 30), ("0", 30), ("-5", 30), ("5", 5), ("1440", 1440), ("99999", 1440),
])
def test_export_window(raw: str | None, minutes: int) -> None:
    assert bundle.window_minutes(raw) == minutes


@pytest.mark.parametrize(("seconds", "text"), [(1800, "30m0s"), (300, "5m0s"), (3600, "1h0m0s"),
                                                (86400, "24h0m0s"), (45, "45s")])
def test_window_is_spelled_like_go(seconds: int, text: str) -> None:
    assert bundle.go_duration(seconds) == text


def test_argv_values_of_secret_flags_are_masked_but_references_kept() -> None:
    argv = ["tunnel-client", "run", "--control-plane.api-key", SECRET, "--control-plane.api-key=env:KEY",
            f"--client-secret={SECRET}", "--mcp.server-url", f"https://u:{SECRET}@h/mcp?access_token={SECRET}",
            "--log.level", "debug", f"--note=Bearer {SECRET}"]
    out = bundle.redact_argv(argv)
    assert SECRET not in json.dumps(out)
    assert out[:3] == ["tunnel-client", "run", "--control-plane.api-key"]
    assert out[3] == REDACTED and out[4] == "--control-plane.api-key=env:KEY"
    assert out[8:10] == ["--log.level", "debug"]
    assert out[7].startswith("https://[REDACTED]@h/mcp?access_token=")


def test_environment_keeps_relevant_keys_and_masks_secrets() -> None:
    env = {"CONTROL_PLANE_API_KEY": SECRET, "CONTROL_PLANE_TUNNEL_ID": TID, "MCP_SERVER_URL": "http://h/mcp",
           "HTTPS_PROXY": f"http://user:{SECRET}@proxy:3128", "MY_KEY_REF": SECRET, "OTEL_EXPORTER_OTLP_HEADERS":
           f"authorization=Bearer {SECRET}", "LOG_LEVEL": "debug", "HOME": "/root", "PATH": "/bin",
           "MCP_PLANTED_TOKEN": SECRET, "OPENAI_API_KEY": SECRET}
    out = bundle.relevant_environment(env, referenced={"MY_KEY_REF"})
    assert SECRET not in json.dumps(out)
    assert set(out) == {"CONTROL_PLANE_API_KEY", "CONTROL_PLANE_TUNNEL_ID", "MCP_SERVER_URL", "HTTPS_PROXY",
                        "MY_KEY_REF", "OTEL_EXPORTER_OTLP_HEADERS", "LOG_LEVEL", "MCP_PLANTED_TOKEN", "OPENAI_API_KEY"}
    assert out["CONTROL_PLANE_TUNNEL_ID"] == TID and out["LOG_LEVEL"] == "debug"
    assert out["MY_KEY_REF"] == out["CONTROL_PLANE_API_KEY"] == out["OPENAI_API_KEY"] == REDACTED
    assert out["HTTPS_PROXY"] == "http://[REDACTED]@proxy:3128"


def test_runtime_snapshot_redacts_the_config_file_and_never_holds_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "client.yaml"
    cfg.write_text(yaml.safe_dump({
        "config_version": 1,
        "control_plane": {"tunnel_id": TID, "api_key": SECRET},
        "mcp": {"server_urls": [{"url": f"http://127.0.0.1:9/mcp?access_token={SECRET}"}],
                "extra_headers": {"Authorization": f"Bearer {SECRET}", "X-Team": "billing"}},
    }))
    flags = {**default_flags(), "config": str(cfg)}
    settings = load_settings(flags, {"RUNTIME_KEY": "rk_" + SECRET, "CONTROL_PLANE_API_KEY": "rk_" + SECRET})
    snap = bundle.runtime_snapshot(settings, ["tunnel-client", "run", "--config", str(cfg)],
                                   {"CONTROL_PLANE_API_KEY": "rk_" + SECRET, "TERM": "xterm"})
    text = json.dumps(snap)
    assert SECRET not in text
    contents = snap["actual_config"]["contents"]
    assert snap["actual_config"]["path"] == str(cfg)
    assert contents["control_plane"] == {"tunnel_id": TID, "api_key": REDACTED}
    assert contents["mcp"]["extra_headers"] == {"Authorization": REDACTED, "X-Team": "billing"}
    assert snap["environment"] == {"CONTROL_PLANE_API_KEY": REDACTED}
    assert snap["client"]["client_name"] == "oai-tunnel-client"
    eff = snap["effective_config"]
    assert "api_key" not in eff and eff["tunnel_id"] == TID
    assert eff["bindings"] == [{"channel": "main", "kind": "http",
                                "target": "http://127.0.0.1:9/mcp?access_token=[REDACTED]"}]
    yaml.safe_dump(snap)  # plain data all the way down


def test_archive_layout_and_manifest() -> None:
    now = time.time()
    events = [{"seq": 1, "time": "t", "level": "INFO", "message": f"token={SECRET}", "attrs": {}},
              {"seq": 2, "time": "t", "level": "WARN", "message": "two", "attrs": {"password": SECRET}}]
    metrics = b"# TYPE liveness gauge\nliveness 1.0\n"
    data = bundle.build_bundle(
        events=events, now=now, minutes=30, log_buffer_capacity=2000,
        runtime={"argv": ["tunnel-client", "run"], "environment": {"X_SECRET": SECRET}},
        metrics_text=metrics,
        admin={"status": {"control_plane_tunnel_id": TID, "note": f"Bearer {SECRET}"}, "system": {},
               "oauth": {"configured": False}, "traffic": {"calls": []}},
    )
    files = unpack_bundle(data)
    assert list(files) == ["manifest.json", "README.txt", "tunnel-client.runtime.yaml", "tunnel-client.logs.ndjson",
                           "tunnel-client.metrics.prom", "admin/status.json", "admin/system.json",
                           "admin/oauth.json", "admin/traffic.json"]
    assert all(SECRET.encode() not in body for body in files.values())
    manifest = json.loads(files["manifest.json"])
    assert manifest["files"] == list(files)
    assert (manifest["window"], manifest["event_count"], manifest["log_buffer_capacity"]) == ("30m0s", 2, 2000)
    assert manifest["metrics_bytes"] == len(metrics) and manifest["redacted"] is True
    assert set(manifest) >= {"generated_at", "window_start", "window_end", "runtime"}
    assert [json.loads(line)["seq"] for line in files["tunnel-client.logs.ndjson"].splitlines()] == [1, 2]
    assert files["tunnel-client.metrics.prom"] == metrics
    assert yaml.safe_load(files["tunnel-client.runtime.yaml"])["argv"] == ["tunnel-client", "run"]
    assert json.loads(files["admin/status.json"])["control_plane_tunnel_id"] == TID
    assert bundle.bundle_filename(0) == "tunnel-client-logs-19700101T000000Z.tar.gz"
