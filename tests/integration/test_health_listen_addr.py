"""``--health.listen-addr :PORT`` binds every interface, as in the reference, and says so in the log.

A container's liveness probe written for the reference (``HEALTH_LISTEN_ADDR=:8080``, probed
on the pod IP) must work here too; ``/ui`` and ``/api/*`` stay loopback-only regardless.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx2
import psutil

from tests.support.proc import run_cli
from tests.support.relay import relay, relay_env

EXPOSED = "operator listener is reachable from other machines"


def _listening_ips(pid: int, port: int) -> set[str]:
    conns = psutil.Process(pid).net_connections(kind="tcp")
    return {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def _non_loopback_ipv4() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family.name == "AF_INET" and not ipaddress.ip_address(a.address).is_loopback:
                return str(a.address)
    return None


def test_empty_host_binds_all_interfaces_and_warns(tmp_path: Path) -> None:
    with relay(tmp_path, ["--health.listen-addr", ":0"]) as r:
        port = int(r.health_url.rsplit(":", 1)[1])
        assert r.health_url == f"http://127.0.0.1:{port}"  # a wildcard is shown as loopback, which works
        assert _listening_ips(r.client.pid, port) & {"::", "0.0.0.0"}
        warning = r.client.wait_log(EXPOSED + ": /healthz, /readyz and /metrics answer anyone; "
                                    "/ui and /api/* stay loopback-only")
        assert warning["level"] == "WARN" and warning["listen_addr"] == ":0"
        assert r.ops("/healthz").status_code == 200
        lan = _non_loopback_ipv4()
        if lan is not None:  # this machine has another interface: a probe from there is answered
            assert httpx2.get(f"http://{lan}:{port}/healthz", timeout=10.0, trust_env=False).text == "live"
            ui = httpx2.get(f"http://{lan}:{port}/ui", timeout=10.0, trust_env=False)
            assert ui.status_code == 403


def test_loopback_address_binds_loopback_only_without_warning(tmp_path: Path) -> None:
    with relay(tmp_path) as r:  # the helper binds 127.0.0.1:0
        port = int(r.health_url.rsplit(":", 1)[1])
        assert _listening_ips(r.client.pid, port) == {"127.0.0.1"}
        # the warning would precede "tunnel-client started", which the helper already waited for
        assert not [rec for rec in r.client.log_records() if str(rec.get("msg", "")).startswith(EXPOSED)]


def test_doctor_checks_the_same_all_interfaces_bind(tmp_path: Path) -> None:
    env = relay_env(tmp_path, HEALTH_LISTEN_ADDR=":0")  # the reference guide's form, as a variable
    done = run_cli(["doctor", "--control-plane.tunnel-id", "tunnel_" + "d" * 32, "--mcp.server-url",
                    "http://127.0.0.1:9/mcp"], env)
    line = next(x for x in done.stdout.splitlines() if x.startswith("CHECK health_listener"))
    assert line.split()[2] == "PASS" and "http://127.0.0.1:" in line
