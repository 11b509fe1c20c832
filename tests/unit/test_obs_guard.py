"""Who may use the operator UI: loopback-only by default, same-origin for changes (opsserver.guard).

The rules are checked as functions, then against the real ops app through an ASGI transport
whose client address is a non-loopback IP, which real sockets on this machine cannot produce.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest

from tunnel_core import logs
from tunnel_core.opsserver import guard
from tunnel_core.opsserver.app import build_ops_app
from tunnel_core.opsserver.context import OpsContext
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState

REMOTE = ("203.0.113.7", 40000)  # TEST-NET-3: never a real peer
TID = "tunnel_" + "c" * 32


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("127.255.255.254", True), ("::1", True),
    ("::ffff:127.0.0.1", True), ("10.0.0.5", False), ("192.168.1.2", False), ("203.0.113.7", False),
    ("::ffff:10.0.0.1", False), ("localhost", False), ("", False), (None, False), ("testclient", False),
])
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert guard.is_loopback_address(host) is loopback


@pytest.mark.parametrize(("host", "ok"), [
    ("127.0.0.1:8080", True), ("localhost:8080", True), ("LOCALHOST", True), ("ui.localhost:9", True),
    ("[::1]:8080", True), ("127.0.0.1", True),
    ("evil.example:8080", False), ("10.1.2.3:8080", False), ("localhost.evil.example", False), ("[fe80::1]:80", False),
])
def test_host_header_must_name_loopback(host: str, ok: bool) -> None:
    assert guard.is_loopback_host_header(host) is ok


@pytest.mark.parametrize(("headers", "same"), [
    ({}, True),  # curl and scripts send none of these
    ({"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:8080"}, True),
    ({"sec-fetch-site": "none"}, True),
    ({"sec-fetch-site": "cross-site"}, False),
    ({"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:9999"}, False),  # another local app
    ({"origin": "http://127.0.0.1:8080"}, True),
    ({"origin": "HTTP://127.0.0.1:8080"}, True),
    ({"origin": "http://evil.example"}, False),
    ({"origin": "null"}, False),
    ({"referer": "http://127.0.0.1:8080/ui#logs"}, True),
    ({"referer": "http://127.0.0.1:9999/page"}, False),
    ({"origin": "http://127.0.0.1:8080", "referer": "http://evil.example/"}, True),  # Origin wins
])
def test_same_origin_rule(headers: dict[str, str], same: bool) -> None:
    assert guard.is_same_origin(headers, scheme="http", host="127.0.0.1:8080") is same


def _scope(path: str, client: tuple[str, int] | None, host: str = "127.0.0.1:8080", method: str = "GET",
           **headers: str) -> dict[str, Any]:
    raw = [(b"host", host.encode())] + [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "path": path, "method": method, "scheme": "http", "client": client, "headers": raw}


def test_check_applies_the_rules_per_path() -> None:
    local, remote = ("127.0.0.1", 5000), REMOTE
    for path in ("/healthz", "/readyz", "/metrics"):
        assert guard.check(_scope(path, remote, host="10.0.0.1:8080"), allow_remote=False) is None
    assert guard.check(_scope("/api/status", remote), allow_remote=False) == guard.LOOPBACK_ONLY
    assert guard.check(_scope("/assets/app.js", ("", 0)), allow_remote=False) == guard.LOOPBACK_ONLY
    assert guard.check(_scope("/api/status", None, host="localhost"), allow_remote=False) is None  # unix socket
    assert guard.check(_scope("/ui", local, host="rebound.example:8080"), allow_remote=False) == guard.BAD_HOST
    assert guard.check(_scope("/ui", local), allow_remote=False) is None
    assert guard.check(_scope("/api/status", remote, host="ops.example:8080"), allow_remote=True) is None
    put = _scope("/api/log-level", remote, method="PUT", origin="http://evil.example")
    assert guard.check(put, allow_remote=True) == guard.CROSS_ORIGIN


# ---------------------------------------------------------------------------- the real app


def _app(allow_remote: bool = False) -> Any:
    state = RuntimeState(tunnel_id=TID, instance_id="i" * 32)
    return build_ops_app(OpsContext(state=state, metrics=RelayMetrics(),
                                    status=lambda: {"control_plane_tunnel_id": TID, "channels": []},
                                    allow_remote_ui=allow_remote, logs=logs.LogBuffer()))


@pytest.mark.anyio
async def test_remote_clients_get_probes_but_not_the_ui_or_apis() -> None:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(_app(), client=REMOTE),
                                  base_url="http://127.0.0.1:8080") as c:
        for path in ("/healthz", "/metrics"):
            assert (await c.get(path)).status_code == 200, path
        assert (await c.get("/readyz")).status_code == 503  # answered (not ready yet), not refused
        for path in ("/", "/ui", "/ui/", "/assets/app.js", "/api/status", "/api/logs", "/api/logs/export",
                     "/api/log-level", "/favicon.ico", "/api/nope"):
            resp = await c.get(path)
            assert (resp.status_code, resp.text.strip()) == (403, guard.LOOPBACK_ONLY), path
        assert (await c.put("/api/log-level", json={"level": "debug"})).status_code == 403


@pytest.mark.anyio
async def test_allow_remote_ui_opens_the_ui_but_keeps_changes_same_origin() -> None:
    root = logging.getLogger()
    saved = root.level
    try:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(_app(allow_remote=True), client=REMOTE),
                                      base_url="http://ops.example:8080") as c:
            assert (await c.get("/api/status")).json()["allow_remote_ui"] is True
            assert TID in (await c.get("/ui")).text
            cross = await c.put("/api/log-level", json={"level": "debug"},
                                headers={"Origin": "http://evil.example"})
            assert (cross.status_code, cross.text.strip()) == (403, guard.CROSS_ORIGIN)
            assert root.level == saved
            same = await c.put("/api/log-level", json={"level": "debug"},
                               headers={"Origin": "http://ops.example:8080", "Sec-Fetch-Site": "same-origin"})
            assert same.json() == {"level": "debug", "supported_levels": ["debug", "info", "warn"]}
    finally:
        root.setLevel(saved)


@pytest.mark.anyio
async def test_loopback_client_with_a_foreign_host_header_is_refused() -> None:
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(_app(), client=("127.0.0.1", 5000)),
                                  base_url="http://rebound.example:8080") as c:
        resp = await c.get("/api/status")
        assert (resp.status_code, resp.text.strip()) == (403, guard.BAD_HOST)
        assert (await c.get("/healthz")).status_code == 200
