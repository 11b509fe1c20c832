"""``--control-plane.extra-headers`` and the ``enqueue_to_response`` latency, with real processes.

The dev tunnel service's request record shows what ``run`` really sent: the operator's
headers on metadata, poll and response requests, next to the client's own identity headers.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.faulty import Session, result_text
from tests.support.proc import run_cli
from tests.support.relay import relay, relay_env

GATEWAY_VALUE = "route-value-from-env-7c1"


def test_extra_headers_reach_every_control_plane_request(tmp_path: Path) -> None:
    env = relay_env(tmp_path, GW_ROUTE=GATEWAY_VALUE)
    args = ["--control-plane.extra-headers", "X-Gateway-Tenant: blue",
            "--control-plane.extra-headers", "X-Gateway-Route: env:GW_ROUTE"]
    with relay(tmp_path, args, env=env) as r:
        poll = r.wait_record("poll")["headers"]
        assert poll["x-gateway-tenant"] == "blue"
        assert poll["x-gateway-route"] == GATEWAY_VALUE
        assert poll["x-tunnel-client-name"] == "oai-tunnel-client" and poll["authorization"] == "[MASKED]"
        metadata = r.wait_record("metadata")["headers"]
        assert metadata["x-gateway-tenant"] == "blue"

        session = Session(r.mcp_url)
        try:
            session.initialize()
            assert "hi" in result_text(session.call("echo", {"input": "hi"}))
        finally:
            session.close()
        posted = r.records("response")
        assert posted and all(p["headers"]["x-gateway-route"] == GATEWAY_VALUE for p in posted)
        # header values given by reference are secrets: never in the client's logs
        assert GATEWAY_VALUE not in r.client.output()


def test_env_variable_replaces_the_profile_map_and_is_comma_separated(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("control_plane:\n  extra_headers:\n    X-From-Yaml: yes-yaml\n")
    env = relay_env(tmp_path, CONTROL_PLANE_EXTRA_HEADERS="X-One: 1, X-Two: 2")
    with relay(tmp_path, ["--config", str(profile)], env=env) as r:
        poll = r.wait_record("poll")["headers"]
        assert (poll.get("x-one"), poll.get("x-two"), poll.get("x-from-yaml")) == ("1", "2", None)


def test_profile_map_applies_when_nothing_else_sets_headers(tmp_path: Path) -> None:
    profile = tmp_path / "p.yaml"
    profile.write_text("control_plane:\n  extra_headers:\n    X-From-Yaml: yes-yaml\n")
    with relay(tmp_path, ["--config", str(profile)]) as r:
        assert r.wait_record("poll")["headers"].get("x-from-yaml") == "yes-yaml"


def test_client_headers_cannot_be_overridden(tmp_path: Path) -> None:
    env = relay_env(tmp_path)
    for header in ("Authorization: Bearer x", "X-Tunnel-Client-Instance-Id: 0", "x-tunnel-mcp-server-info: {}"):
        done = run_cli(["run", "--control-plane.tunnel-id", "tunnel_" + "a" * 32, "--embedded-mcp-stub",
                        "--control-plane.extra-headers", header], env)
        name = header.split(":")[0]
        assert done.returncode == 1, done.stderr
        assert f"--control-plane.extra-headers / CONTROL_PLANE_EXTRA_HEADERS / control_plane.extra_headers: {name} " \
               "is set by tunnel-client itself and cannot be overridden" in done.stderr
        assert "Traceback" not in done.stderr


def _samples(text: str, latency_type: str, method: str) -> float:
    rx = re.compile(r'^command_end_to_end_latency_milliseconds_count\{(.*)\} (\S+)$')
    total = 0.0
    for line in text.splitlines():
        m = rx.match(line)
        if m and f'latency_type="{latency_type}"' in m.group(1) and f'request_method="{method}"' in m.group(1):
            total += float(m.group(2))
    return total


def test_each_answered_call_records_both_latency_types(tmp_path: Path) -> None:
    with relay(tmp_path) as r:
        session = Session(r.mcp_url)
        try:
            session.initialize()
            for i in range(3):
                assert str(i) in result_text(session.call("echo", {"input": str(i)}))
        finally:
            session.close()
        text = r.metrics()
        assert _samples(text, "poll_to_response", "tools/call") == 3
        assert _samples(text, "enqueue_to_response", "tools/call") == 3
        assert _samples(text, "enqueue_to_response", "initialize") == 1
