"""The proxy health checker (``--proxy.check-interval``) of a real ``run``, against loopback proxies.

- a working forward proxy carries the control plane and the MCP channel: both routes healthy,
  and the proxy saw the checker's ``CONNECT`` to each target;
- Harpoon's proxy port is closed: its route is unhealthy in phase ``tcp``;
- a proxy that refuses every CONNECT (502): unhealthy in phase ``connect``, ``bad_status``;
- the checks repeat at the configured interval.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.net_helpers import ForwardingProxy, start_proxy
from tests.support.proc import run_cli, wait_until
from tests.support.relay import Relay, relay, relay_env
from tests.support.servers import background_loop, refused_port


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[ForwardingProxy, ForwardingProxy]]:
    with background_loop() as bg:
        good = start_proxy(bg)
        refusing = start_proxy(bg, only_routes=True)  # answers 502 to every CONNECT
        yield good, refusing
        bg.call(good.stop)
        bg.call(refusing.stop)


def _health(r: Relay) -> dict[tuple[str, str], dict[str, Any]]:
    system = r.ops("/api/system").json()
    return {(h["route"]["kind"], h["route"]["name"]): h for h in system["proxy_health"]}


def _checked(r: Relay, *routes: tuple[str, str], count: int = 1) -> dict[tuple[str, str], dict[str, Any]] | None:
    """/api/system's routes once each of ``routes`` has been checked ``count`` times."""
    health = _health(r)
    return health if all(k in health and len(health[k]["history"]) >= count for k in routes) else None


def _gauge(text: str, name: str, proxy_id: str) -> float | None:
    m = re.search(rf'^{name}\{{proxy_id="{proxy_id}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def test_routes_through_a_working_proxy_are_healthy_and_a_dead_one_is_not(
    tmp_path: Path, proxies: tuple[ForwardingProxy, ForwardingProxy]
) -> None:
    good, _ = proxies
    with refused_port() as dead:
        args = ["--http-proxy", good.url, "--harpoon.http-proxy", f"http://127.0.0.1:{dead}",
                "--harpoon.target", "label=idp,url=http://127.0.0.1:9/token", "--harpoon.allow-plaintext-http",
                "--proxy.check-interval", "1s"]
        with relay(tmp_path, args) as r:
            health = wait_until(lambda: _checked(r, ("control_plane", "control-plane"), ("mcp_channel", "main"),
                                                 ("harpoon", "idp"), count=2), "two rounds of proxy checks")
            cp = health[("control_plane", "control-plane")]
            assert cp["health_state"] == "healthy" and cp["route"]["proxy_source"] == "global"
            assert cp["route"]["proxy_url"] == good.url and cp["history"][-1]["success"] is True
            assert cp["history"][-1]["http_status_category"] == "2xx"
            assert health[("mcp_channel", "main")]["health_state"] == "healthy"
            idp = health[("harpoon", "idp")]
            assert idp["health_state"] == "unhealthy" and idp["route"]["proxy_source"] == "harpoon"
            assert (idp["history"][-1]["error_phase"], idp["history"][-1]["error_reason"]) == ("tcp", "dial_error")
            assert "last_success" not in idp and idp["last_check"]

            service_authority = r.service_url.removeprefix("http://")
            assert [e for e in good.seen(service_authority) if e.method == "CONNECT"]

            system = r.ops("/api/system").json()
            ids = {p["proxy_url"]: p["proxy_id"] for p in system["proxy_identity_map"]}
            assert set(ids) == {good.url, f"http://127.0.0.1:{dead}"}
            text = r.metrics()
            assert _gauge(text, "proxy_health_state", ids[good.url]) == 1
            assert _gauge(text, "proxy_health_state", ids[f"http://127.0.0.1:{dead}"]) == 0
            assert _gauge(text, "proxy_last_success_timestamp", ids[good.url])
            assert _gauge(text, "proxy_last_success_timestamp", ids[f"http://127.0.0.1:{dead}"]) is None
            dead_id = ids[f"http://127.0.0.1:{dead}"]
            failures = re.search(rf'^proxy_check_failures_total\{{phase="tcp",proxy_id="{dead_id}",'
                                 r'reason="dial_error"\} (\S+)$', text, re.M)
            assert failures and float(failures.group(1)) >= 2  # idp was checked twice, besides OAuth's targets
            assert f'proxy_check_phase_duration_seconds_count{{phase="connect",proxy_id="{ids[good.url]}"}}' in text

            routes = r.ops("/api/harpoon/status").json()["proxy_routes"]
            assert ("idp", "unhealthy") in [(x["name"], x["health_state"]) for x in routes]
            assert {x["kind"] for x in routes} == {"harpoon"}  # targets found by OAuth discovery are routes too
            unhealthy = r.client.wait_log("proxy route unhealthy")
            assert unhealthy["route_kind"] == "harpoon" and unhealthy["error_phase"] == "tcp"


def test_a_proxy_refusing_connect_is_a_connect_phase_failure(
    tmp_path: Path, proxies: tuple[ForwardingProxy, ForwardingProxy]
) -> None:
    _, refusing = proxies
    args = ["--harpoon.http-proxy", refusing.url, "--harpoon.target", "label=api,url=https://api.internal.test/x"]
    with relay(tmp_path, args) as r:
        health = wait_until(lambda: _checked(r, ("harpoon", "api")), "the first proxy check")
        api = health[("harpoon", "api")]
        last = api["history"][-1]
        assert api["health_state"] == "unhealthy"
        assert (last["error_phase"], last["error_reason"], last["http_status_category"]) == (
            "connect", "bad_status", "5xx")
        assert [e.target for e in refusing.entries()] == ["api.internal.test:443"]
        # direct routes are listed as such and never checked
        cp = health[("control_plane", "control-plane")]
        assert (cp["health_state"], cp["route"]["route_mode"], cp["history"]) == ("direct", "direct", [])


def test_check_interval_must_be_a_positive_duration(tmp_path: Path) -> None:
    done = run_cli(["run", "--control-plane.tunnel-id", "tunnel_" + "c" * 32, "--embedded-mcp-stub",
                    "--proxy.check-interval", "0s"], relay_env(tmp_path))
    assert done.returncode == 1
    assert "--proxy.check-interval / PROXY_CHECK_INTERVAL / proxy.check_interval: must be greater than 0" in done.stderr
