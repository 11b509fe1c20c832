"""What the local tunnel service tells an operator: one log line per front-door outcome, a 504 that says
why, refused runtime requests, and /healthz with the last poll of each tunnel. A real
``tunnel-client dev tunnel-service`` process; no tunnel-client runs unless a test polls by hand."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env

TID = "tunnel_" + "7" * 32
KEY = "rk_outcomes_" + "x1" * 12
INIT = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


def fields(line: str) -> dict[str, str]:
    """The key=value fields of one struct-text log line."""
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


class Service:
    def __init__(self, proc: Proc, base: str) -> None:
        self.proc, self.base = proc, base

    def outcome_lines(self, status: int) -> dict[str, str]:
        return fields(self.proc.wait_stderr(rf'msg="front door request" status_code={status} .*').group(0))

    def post(self, tunnel_id: str = TID, **kw: object) -> httpx2.Response:
        return httpx2.post(f"{self.base}/v1/mcp/{tunnel_id}", json=INIT, timeout=WAIT, trust_env=False,
                           **kw)  # type: ignore[arg-type]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    proc = Proc([TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id", TID,
                 "--response-timeout", "1s"], base_env(tmp_path, CONTROL_PLANE_API_KEY=KEY))
    try:
        base = proc.wait_stdout(r"^Tunnel service: (http://127\.0\.0\.1:\d+)$").group(1)
        yield Service(proc, base)
        assert proc.terminate() == 0
        assert "Traceback" not in proc.output(), proc.tail()
        assert KEY not in proc.output()
    finally:
        proc.kill()


def test_504_with_no_poller_says_nobody_polled_and_is_logged(service: Service) -> None:
    health = httpx2.get(service.base + "/healthz", timeout=WAIT, trust_env=False).json()
    assert health["tunnels"] == [{"tunnel_id": TID, "last_poll": None, "seconds_since_last_poll": None}]
    resp = service.post()
    assert resp.status_code == 504
    error = resp.json()["error"]
    assert error["message"].startswith(f"Gateway Timeout: no tunnel-client polled tunnel {TID} within 1s")
    assert "never polled" in error["message"] and "tunnel-client run" in error["message"]
    assert error["data"]["tunnel_service"]["reason"] == "no_poller"
    line = service.outcome_lines(504)
    assert (line["tunnel_id"], line["channel"], line["failure_source"], line["rpc_method"]) == (
        TID, "main", "no_poller", "tools/list")
    assert float(line["duration_ms"]) >= 1000


def test_504_after_a_poll_says_the_client_took_it_and_healthz_shows_the_poll(service: Service) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    answers: list[httpx2.Response] = []
    caller = threading.Thread(target=lambda: answers.append(service.post()), daemon=True)
    caller.start()
    polled = httpx2.get(f"{service.base}/v1/tunnels/{TID}/poll?limit=1&timeout_ms=5000", headers=auth,
                        timeout=WAIT, trust_env=False)
    assert polled.status_code == 200 and len(polled.json()["commands"]) == 1
    caller.join(WAIT)
    assert answers and answers[0].status_code == 504
    assert "the tunnel-client took the request but sent no answer within 1s" in answers[0].json()["error"]["message"]
    assert service.outcome_lines(504)["failure_source"] == "client_timeout"
    tunnels = httpx2.get(service.base + "/healthz", timeout=WAIT, trust_env=False).json()["tunnels"]
    assert tunnels[0]["last_poll"] is not None and tunnels[0]["seconds_since_last_poll"] < 60


def test_refusals_are_logged_404_front_door_and_401_runtime(service: Service) -> None:
    other = "tunnel_" + "8" * 32
    assert service.post(other).status_code == 404
    line = service.outcome_lines(404)
    assert (line["tunnel_id"], line["failure_source"]) == (other, "tunnel_not_found")
    bad = httpx2.get(f"{service.base}/v1/tunnels/{TID}/poll", headers={"Authorization": "Bearer nope"},
                     timeout=WAIT, trust_env=False)
    assert bad.status_code == 401
    refused = fields(service.proc.wait_stderr(r'msg="runtime request refused" .*').group(0))
    assert (refused["status_code"], refused["error_code"], refused["tunnel_id"]) == ("401", "invalid_api_key", TID)
    assert "nope" not in service.proc.output()



def test_a_flood_of_refused_calls_is_throttled_in_the_log_and_counted(service: Service) -> None:
    other = "tunnel_" + "9" * 32
    with httpx2.Client(timeout=WAIT, trust_env=False) as c:
        for _ in range(200):
            assert c.post(f"{service.base}/v1/mcp/{other}", json=INIT).status_code == 404
        logged = [ln for ln in service.proc.output().splitlines() if other in ln and "front door request" in ln]
        assert 1 <= len(logged) <= 40, len(logged)  # a burst, then at most a few a second
        # The next line let through says how many were dropped; keep calling until the bucket refills.
        deadline = time.monotonic() + WAIT
        while "suppressed_similar=" not in service.proc.output():
            assert time.monotonic() < deadline, service.proc.tail()
            assert c.post(f"{service.base}/v1/mcp/{other}", json=INIT).status_code == 404
    line = fields(service.proc.wait_stderr(r'msg="front door request" .*suppressed_similar=.*').group(0))
    assert int(line["suppressed_similar"]) >= 100
