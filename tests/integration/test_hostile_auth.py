"""Hostile clients and callers against real ``tunnel-client serve`` processes (and a real ``redis-server``).

Each test is an attack from docs/self-hosting.md's threat model, run the way an attacker on
the network would: a runtime key of one tunnel (or organisation) used on another, an admin
key of one organisation minting keys for another's tunnel, anonymous and wrong-token calls to
the front door, and a revoked key, a revoked token or a deleted tunnel still used through a
second instance. Every wait is capped; "within 1 s" is the cap of the wait, not a sleep.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.faulty import Session
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env, wait_until
from tests.support.redis_helpers import RedisServer, running_redis
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, new_tunnel_id, start_client

PROPAGATION = 1.0  # the bound for revocation and creation to reach every instance


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def secret(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_urlsafe(24)


@dataclass
class Serve:
    proc: Proc
    base: str
    http: httpx2.Client

    def get(self, path: str, key: str = "", **headers: str) -> httpx2.Response:
        return self.http.get(self.base + path, headers=_auth(key, headers))

    def post(self, path: str, key: str = "", body: Any = None, **headers: str) -> httpx2.Response:
        return self.http.post(self.base + path, headers=_auth(key, headers),
                              content=json.dumps({} if body is None else body))

    def delete(self, path: str, key: str = "") -> httpx2.Response:
        return self.http.delete(self.base + path, headers=_auth(key, {}))

    def door(self, tunnel_id: str, token: str | None = None) -> httpx2.Response:
        """An ``initialize`` through the front door (``token`` None: no caller token header at all)."""
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if token is not None:
            headers["X-Tunnel-Caller-Token"] = token
        return self.http.post(f"{self.base}/v1/mcp/{tunnel_id}", headers=headers,
                              content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                                  "protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "hostile-tests", "version": "1"}}}))


def _auth(key: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, **({"Authorization": f"Bearer {key}"} if key else {})}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start ``tunnel-client serve`` processes; all are stopped (and checked for leaked secrets) afterwards."""
    started: list[tuple[Serve, list[str]]] = []

    def start(*args: str, env: dict[str, str], secrets_: list[str] | None = None) -> Serve:
        # Serve on Redis needs the key that seals queued commands (the same for every instance).
        proc = Proc([TUNNEL_CLIENT, "serve", "--listen", "127.0.0.1:0", "--log.format", "json", *args],
                    base_env(tmp_path, TUNNEL_ENGINE_ENCRYPTION_KEY="qk_" + "e" * 40, **env))
        try:
            base = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
        except BaseException:
            proc.kill()
            raise
        s = Serve(proc, base, httpx2.Client(timeout=WAIT, trust_env=False))
        started.append((s, [*(secrets_ or []), *env.values()]))
        return s

    yield start
    for s, _ in started:
        s.proc.kill()
        s.http.close()
    for s, values in started:
        out = s.proc.output()
        for value in values:
            if value.startswith(("ak_", "rk_", "ct_", "tcrk_", "tcct_")):
                assert value not in out, "a secret appeared in the service's output"


def _error_code(r: httpx2.Response) -> str:
    return str(r.json()["error"]["code"])


# ---- runtime keys are bound to tunnels ----------------------------------------------------------


def test_a_runtime_key_opens_only_its_own_tunnel_on_every_runtime_route(serve: Any) -> None:
    x, y = new_tunnel_id(), new_tunnel_id()
    kx, ky, cy = secret("rk"), secret("rk"), secret("ct")
    svc = serve("--runtime-api-key", f"{x}=env:KX", "--runtime-api-key", f"{y}=env:KY",
                "--caller-token", f"{y}=env:CY", env={"KX": kx, "KY": ky, "CY": cy})
    answers = {
        "metadata": svc.get(f"/v1/tunnels/{y}", kx),
        "poll": svc.get(f"/v1/tunnels/{y}/poll?timeout_ms=0", kx),
        "response": svc.post(f"/v1/tunnels/{y}/response", kx, {"request_id": "req_x", "resp_type": "jsonrpc_response",
                                                               "resp_code": 200, "resp_json": {}},
                             **{"X-Tunnel-Shard-Token": "forged"}),
    }
    for route, r in answers.items():
        assert r.status_code == 403 and _error_code(r) == "tunnel_use_forbidden", (route, r.status_code, r.text)
    assert svc.get(f"/v1/tunnels/{x}", kx).status_code == 200
    assert svc.get(f"/v1/tunnels/{x}/poll?timeout_ms=0", kx).status_code == 204
    assert svc.get(f"/v1/tunnels/{y}/poll?timeout_ms=0", ky).status_code == 204
    unknown = svc.get(f"/v1/tunnels/{y}/poll?timeout_ms=0", secret("rk"))
    assert unknown.status_code == 401 and _error_code(unknown) == "invalid_api_key"


def test_a_key_of_one_tunnel_never_sees_another_tunnels_callers(serve: Any, tmp_path: Path) -> None:
    # The attack of the issue: the holder of tunnel X's key polls tunnel Y while Y's caller waits,
    # hoping for the caller's headers (its bearer token) and a chance to forge the answer.
    x, y = new_tunnel_id(), new_tunnel_id()
    kx, ky, cy = secret("rk"), secret("rk"), secret("ct")
    svc = serve("--runtime-api-key", f"{x}=env:KX", "--runtime-api-key", f"{y}=env:KY",
                "--caller-token", f"{y}=env:CY", "--response-timeout", "3s", env={"KX": kx, "KY": ky, "CY": cy})
    caller: dict[str, httpx2.Response] = {}

    def call() -> None:
        caller["r"] = svc.http.post(f"{svc.base}/v1/mcp/{y}", headers={
            "Content-Type": "application/json", "Accept": "application/json", "X-Tunnel-Caller-Token": cy,
            "Authorization": "Bearer the-users-oauth-token"},
            content=json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                "params": {"name": "transfer", "arguments": {}}}))

    t = threading.Thread(target=call)
    t.start()
    try:
        stolen = svc.get(f"/v1/tunnels/{y}/poll?timeout_ms=1000&limit=25", kx)
        assert stolen.status_code == 403
        assert "the-users-oauth-token" not in stolen.text and "transfer" not in stolen.text
        # The tunnel's own key gets the command, with the caller's Authorization and without its caller token.
        got = wait_until(lambda: _commands(svc.get(f"/v1/tunnels/{y}/poll?timeout_ms=1000&limit=25", ky)),
                         "the command on tunnel Y")
        command = got["commands"][0]
        assert command["headers"]["authorization"] == ["Bearer the-users-oauth-token"]
        assert not {k.lower() for k in command["headers"]} & {"x-tunnel-caller-token"}
        forged = svc.post(f"/v1/tunnels/{y}/response", kx, {
            "request_id": command["request_id"], "resp_type": "jsonrpc_response", "resp_code": 200,
            "resp_json": {"jsonrpc": "2.0", "id": 7, "result": {"forged": True}}},
            **{"X-Tunnel-Shard-Token": command["shard_token"]})
        assert forged.status_code == 403
        real = svc.post(f"/v1/tunnels/{y}/response", ky, {
            "request_id": command["request_id"], "resp_type": "jsonrpc_response", "resp_code": 200,
            "resp_json": {"jsonrpc": "2.0", "id": 7, "result": {"real": True}}},
            **{"X-Tunnel-Shard-Token": command["shard_token"]})
        assert real.status_code == 200
    finally:
        t.join(WAIT)
    assert caller["r"].status_code == 200 and caller["r"].json()["result"] == {"real": True}


def _commands(r: httpx2.Response) -> dict[str, Any] | None:
    return r.json() if r.status_code == 200 else None  # type: ignore[no-any-return]


def test_an_unbound_key_serves_only_the_tunnel_id_tunnels(serve: Any) -> None:
    t = new_tunnel_id()
    rk, admin = secret("rk"), secret("ak")
    svc = serve("--tunnel-id", t, "--runtime-api-key", "env:RK", "--admin-api-key", "env:ADMIN",
                env={"RK": rk, "ADMIN": admin})
    created = svc.post("/v1/tunnels", admin, {"name": "other", "organization_ids": ["org_a"]}).json()["id"]
    assert svc.get(f"/v1/tunnels/{t}/poll?timeout_ms=0", rk).status_code == 204
    r = svc.get(f"/v1/tunnels/{created}/poll?timeout_ms=0", rk)
    assert r.status_code == 403 and _error_code(r) == "tunnel_use_forbidden"


def test_an_admin_key_of_one_organisation_cannot_touch_another_organisations_tunnel(serve: Any) -> None:
    a, b = secret("ak"), secret("ak")
    svc = serve("--admin-api-key", "org_a=env:A", "--admin-api-key", "org_b=env:B", env={"A": a, "B": b})
    ta = svc.post("/v1/tunnels", a, {"name": "a", "organization_ids": ["org_a"]}).json()["id"]
    tb = svc.post("/v1/tunnels", b, {"name": "b", "organization_ids": ["org_b"]}).json()["id"]
    for kind in ("runtime_keys", "caller_tokens"):
        minted = svc.post(f"/v1/tunnels/{tb}/{kind}", a)
        listed = svc.get(f"/v1/tunnels/{tb}/{kind}", a)
        own = svc.post(f"/v1/tunnels/{tb}/{kind}", b).json()
        revoked = svc.delete(f"/v1/tunnels/{tb}/{kind}/{own['id']}", a)
        for r in (minted, listed, revoked):
            assert r.status_code == 404 and _error_code(r) == "tunnel_not_found", r.text
        assert [c["id"] for c in svc.get(f"/v1/tunnels/{tb}/{kind}", b).json()[kind]] == [own["id"]]
    ka = svc.post(f"/v1/tunnels/{ta}/runtime_keys", a).json()["key"]
    ca = svc.post(f"/v1/tunnels/{ta}/caller_tokens", a).json()["token"]
    assert svc.get(f"/v1/tunnels/{ta}/poll?timeout_ms=0", ka).status_code == 204
    cross = svc.get(f"/v1/tunnels/{tb}/poll?timeout_ms=0", ka)
    assert cross.status_code == 403 and _error_code(cross) == "tunnel_use_forbidden"
    assert svc.door(tb, ca).status_code == 401
    # Keys of a tunnel are runtime keys only: no management call, no other organisation's listing.
    manage = svc.post("/v1/tunnels", ka, {"name": "x", "organization_ids": ["org_a"]})
    assert manage.status_code == 403 and _error_code(manage) == "tunnel_management_permission_required"


# ---- the front door needs a caller token ---------------------------------------------------------


@dataclass
class Fleet:
    svc: Serve
    tunnel: str
    other: str
    token: str
    other_token: str
    client: ClientRun


@pytest.fixture
def guarded(serve: Any, mcp_target: MCPTarget, tmp_path: Path) -> Iterator[Fleet]:
    t, other = new_tunnel_id(), new_tunnel_id()
    rk, ct, ct_other = secret("rk"), secret("ct"), secret("ct")
    svc = serve("--runtime-api-key", f"{t}=env:RK", "--caller-token", f"{t}=env:CT", "--tunnel-id", other,
                "--caller-token", f"{other}=env:CT_OTHER", env={"RK": rk, "CT": ct, "CT_OTHER": ct_other})
    client = start_client(service_url=svc.base, tunnel_id=t, runtime_key=rk, home=tmp_path,
                          args=["--mcp.server-url", mcp_target.url])
    try:
        client.wait_readyz()
        yield Fleet(svc, t, other, ct, ct_other, client)
    finally:
        client.proc.kill()


def test_anonymous_and_wrong_token_callers_get_401_and_reach_nothing(guarded: Fleet) -> None:
    svc = guarded.svc
    metrics_before = svc.get("/metrics").text
    refused = {
        "anonymous": svc.door(guarded.tunnel),
        "empty": svc.door(guarded.tunnel, ""),
        "wrong": svc.door(guarded.tunnel, secret("ct")),
        "another tunnel's token": svc.door(guarded.tunnel, guarded.other_token),
        "the runtime key": svc.door(guarded.tunnel, "rk_not_a_caller_token"),
    }
    for who, r in refused.items():
        assert r.status_code == 401, (who, r.status_code, r.text)
        assert "X-Tunnel-Caller-Token" in r.headers["www-authenticate"], who
        body = r.json()
        assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["code"] == -32600, who
        assert body["error"]["data"]["header"] == "X-Tunnel-Caller-Token"
    assert refused["anonymous"].json()["error"]["data"]["code"] == "caller_token_required"
    assert refused["wrong"].json()["error"]["data"]["code"] == "invalid_caller_token"
    # The PRMD route reaches the tunnel client too (an oauth_discovery command): same rule.
    assert svc.get(f"/.well-known/oauth-protected-resource/v1/mcp/{guarded.tunnel}").status_code == 401
    # Nothing was queued: the broker counted no command, the client posted no response.
    after = svc.get("/metrics").text
    assert _broker_event(after, "commands_enqueued") == _broker_event(metrics_before, "commands_enqueued")
    assert svc.door(guarded.tunnel, guarded.token).status_code == 200


def _broker_event(text: str, event: str) -> float:
    for line in text.splitlines():
        if line.startswith(f'tunnel_service_broker_events{{event="{event}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_the_caller_token_is_never_forwarded_and_authorization_is(guarded: Fleet) -> None:
    s = Session(f"{guarded.svc.base}/v1/mcp/{guarded.tunnel}")
    s.headers.update({"X-Tunnel-Caller-Token": guarded.token, "Authorization": "Bearer token-for-the-mcp-server"})
    assert s.initialize().status_code == 200
    r = s.call("seen_headers", {})
    assert r.status_code == 200, r.text
    body = json.loads(r.text.split("data: ")[-1]) if r.text.startswith("event:") else r.json()
    seen = body["result"]["structuredContent"]
    seen = seen.get("result", seen)
    assert seen.get("authorization") == "Bearer token-for-the-mcp-server"
    assert "x-tunnel-caller-token" not in seen
    assert guarded.token not in guarded.client.proc.output()


def test_front_door_auth_none_is_warned_at_start_and_shown_on_healthz(serve: Any) -> None:
    t, u = new_tunnel_id(), new_tunnel_id()
    svc = serve("--tunnel-id", t, "--runtime-api-key", "env:RK", "--front-door-auth", "none",
                "--response-timeout", "1s", env={"RK": secret("rk")})
    health = svc.get("/healthz").json()
    assert health["front_door_auth"] == "none" and "front-door authentication is off" in health["warnings"][0]
    assert any(r.get("level") == "WARN" and "authentication is off" in r.get("msg", "")
               for r in svc.proc.log_records())
    assert svc.door(t).status_code == 504  # anonymous is let through: no client polls, so it times out
    per_tunnel = serve("--tunnel-id", t, "--tunnel-id", u, "--runtime-api-key", "env:RK",
                       "--front-door-auth", f"{t}=none", env={"RK": secret("rk")})
    assert per_tunnel.get("/healthz").json()["front_door_auth"] == "mixed"
    assert per_tunnel.door(u).status_code == 401


def test_serve_has_no_well_known_demo_tunnel_and_refuses_bad_credential_flags(tmp_path: Path) -> None:
    from tests.support.proc import run_cli

    env = base_env(tmp_path, K=secret("rk"))
    cases = {
        ("serve",): "nothing to serve",
        ("serve", "--runtime-api-key", "env:K"): "nothing to serve",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", f"{new_tunnel_id()}=rk_literal"):
            "give a reference",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "env:K", "--caller-token", "env:K"):
            "bind it to a tunnel",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "tunnel_bad=env:K"): "not a tunnel id",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "rk_literal_with_padding=="):
            "not a tunnel id",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "env:K", "--front-door-auth", "off"):
            "--front-door-auth",
        ("serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "env:K", "--tls-client-ca-file", "/x"):
            "--tls-client-ca-file",
    }
    for argv, message in cases.items():
        done = run_cli([*argv, "--listen", "127.0.0.1:0"], env)
        assert done.returncode == 1 and message in done.stderr, (argv, done.stderr)
        assert "rk_literal" not in done.stderr, "a key given by mistake was echoed"


def test_mutual_tls_refuses_a_connection_without_a_client_certificate(serve: Any, tmp_path: Path) -> None:
    from tests.support.net_helpers import CA_BUNDLE, SERVER_CERT, SERVER_KEY, make_client_pki

    pki = make_client_pki(tmp_path)
    t, ct = new_tunnel_id(), secret("ct")
    svc_proc = Proc([TUNNEL_CLIENT, "serve", "--listen", "127.0.0.1:0", "--tunnel-id", t, "--runtime-api-key",
                     "env:RK", "--caller-token", f"{t}=env:CT", "--tls-cert-file", str(SERVER_CERT),
                     "--tls-key-file", str(SERVER_KEY), "--tls-client-ca-file", str(pki.ca_cert)],
                    base_env(tmp_path, RK=secret("rk"), CT=ct))
    try:
        base = svc_proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
        bare = ssl.create_default_context(cafile=str(CA_BUNDLE))
        with pytest.raises(httpx2.HTTPError):
            httpx2.get(base + "/healthz", verify=bare, timeout=WAIT, trust_env=False)
        stranger = ssl.create_default_context(cafile=str(CA_BUNDLE))
        stranger.load_cert_chain(str(pki.other_cert), str(pki.other_key))
        with pytest.raises(httpx2.HTTPError):
            httpx2.get(base + "/healthz", verify=stranger, timeout=WAIT, trust_env=False)
        known = ssl.create_default_context(cafile=str(CA_BUNDLE))
        known.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        with httpx2.Client(verify=known, timeout=WAIT, trust_env=False) as http:
            assert http.get(base + "/healthz").status_code == 200
            # mTLS is a layer under the caller token, not instead of it.
            assert http.post(f"{base}/v1/mcp/{t}", content=b"{}").status_code == 401
    finally:
        svc_proc.kill()


# ---- revocation and creation reach every instance ------------------------------------------------


def _within(check: Any, what: str) -> float:
    """Seconds until ``check`` holds; fails when it does not within PROPAGATION."""
    t0 = time.monotonic()
    wait_until(check, what, timeout=PROPAGATION)
    return time.monotonic() - t0


def test_creation_revocation_and_deletion_on_one_instance_reach_another_within_a_second(
    serve: Any, redis_server: RedisServer, mcp_target: MCPTarget, tmp_path: Path,
) -> None:
    admin = secret("ak")
    redis = ["--engine-queue-backend", "redis", "--engine-redis-url", redis_server.url, "--admin-api-key", "env:A"]
    a = serve(*redis, "--instance-id", "a", env={"A": admin})
    b = serve(*redis, "--instance-id", "b", env={"A": admin})

    # Created on A: B serves it (the client polls B, the caller calls A) within 1 s.
    tunnel = a.post("/v1/tunnels", admin, {"name": "shared", "organization_ids": ["org_a"]}).json()["id"]
    key = a.post(f"/v1/tunnels/{tunnel}/runtime_keys", admin).json()
    token = a.post(f"/v1/tunnels/{tunnel}/caller_tokens", admin).json()
    _within(lambda: b.get(f"/v1/tunnels/{tunnel}/poll?timeout_ms=0", key["key"]).status_code == 204,
            "B to accept the key minted on A for the tunnel created on A")
    assert b.get(f"/v1/tunnels/{tunnel}", admin).json()["name"] == "shared"
    client = start_client(service_url=b.base, tunnel_id=tunnel, runtime_key=key["key"], home=tmp_path,
                          args=["--mcp.server-url", mcp_target.url])
    try:
        client.wait_readyz()
        s = Session(f"{a.base}/v1/mcp/{tunnel}")
        s.headers["X-Tunnel-Caller-Token"] = token["token"]
        assert s.initialize().status_code == 200
        assert s.call("echo", {"text": "across instances"}).status_code == 200

        # A second caller token, revoked on A: B's front door refuses it within 1 s.
        second = a.post(f"/v1/tunnels/{tunnel}/caller_tokens", admin).json()
        _within(lambda: b.door(tunnel, second["token"]).status_code != 401, "B to accept the second token")
        assert a.delete(f"/v1/tunnels/{tunnel}/caller_tokens/{second['id']}", admin).status_code == 200
        _within(lambda: b.door(tunnel, second["token"]).status_code == 401, "B to refuse the revoked token")
        assert b.door(tunnel, token["token"]).status_code == 200  # the other token still works

        # A second runtime key, revoked on A: B refuses it within 1 s, and a poll it has waiting on B ends.
        spare = a.post(f"/v1/tunnels/{tunnel}/runtime_keys", admin).json()
        _within(lambda: b.get(f"/v1/tunnels/{tunnel}", spare["key"]).status_code == 200, "B to accept the spare")
        waiting: dict[str, Any] = {}

        def long_poll() -> None:
            waiting["r"] = b.get(f"/v1/tunnels/{tunnel}/poll?timeout_ms=20000", spare["key"],
                                 **{"X-Tunnel-Client-Instance-Id": "spare-poller"})
            waiting["at"] = time.monotonic()

        poller = threading.Thread(target=long_poll)
        poller.start()
        try:  # the poll has read the queue once (and marked its client alive): it is waiting now
            wait_until(lambda: redis_server.client().exists(f"tc:t:{tunnel}:alive:spare-poller"), "the spare's poll")
            revoked_at = time.monotonic()
            assert a.delete(f"/v1/tunnels/{tunnel}/runtime_keys/{spare['id']}", admin).json()["revoked"] is True
            _within(lambda: b.get(f"/v1/tunnels/{tunnel}", spare["key"]).status_code == 401,
                    "B to refuse the revoked runtime key")
        finally:
            poller.join(WAIT)
        assert waiting["r"].status_code == 204 and waiting["at"] - revoked_at < PROPAGATION + 0.5

        # Deleted on A: the tunnel's tools stop working through B within 1 s, and its key is gone too.
        assert a.delete(f"/v1/tunnels/{tunnel}", admin).status_code == 200
        _within(lambda: b.door(tunnel, token["token"]).status_code in (401, 404), "B to stop serving the tunnel")
        assert b.get(f"/v1/tunnels/{tunnel}/poll?timeout_ms=0", key["key"]).status_code in (401, 404)
        assert b.get(f"/v1/tunnels/{tunnel}", admin).status_code == 404
    finally:
        client.proc.kill()
    raw = redis_server.client()
    stored = json.dumps([raw.hgetall("tc:reg:creds"), raw.hgetall("tc:reg:tunnels")])
    assert key["key"] not in stored and token["token"] not in stored


def test_an_instance_started_later_serves_what_the_registry_holds(serve: Any, redis_server: RedisServer) -> None:
    admin = secret("ak")
    redis = ["--engine-queue-backend", "redis", "--engine-redis-url", redis_server.url, "--admin-api-key", "env:A"]
    a = serve(*redis, env={"A": admin})
    tunnel = a.post("/v1/tunnels", admin, {"name": "early", "organization_ids": ["org_a"]}).json()["id"]
    token = a.post(f"/v1/tunnels/{tunnel}/caller_tokens", admin).json()["token"]
    b = serve(*redis, "--response-timeout", "1s", env={"A": admin})
    assert b.get(f"/v1/tunnels/{tunnel}", admin).status_code == 200
    assert b.door(tunnel, secret("ct")).status_code == 401
    assert b.door(tunnel, token).status_code == 504  # let in; no client polls this tunnel


def test_dev_tunnel_service_keeps_one_key_for_every_tunnel_unless_bound(tmp_path: Path) -> None:
    t, u = new_tunnel_id(), new_tunnel_id()
    key = secret("rk")
    for spec, on_u in (("env:K", 204), (f"{t}=env:K", 403)):
        proc = Proc([TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id", t,
                     "--tunnel-id", u, "--runtime-api-key", spec], base_env(tmp_path, K=key))
        try:
            base = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
            with httpx2.Client(timeout=WAIT, trust_env=False, headers={"Authorization": f"Bearer {key}"}) as http:
                assert http.get(f"{base}/v1/tunnels/{t}/poll?timeout_ms=0").status_code == 204
                assert http.get(f"{base}/v1/tunnels/{u}/poll?timeout_ms=0").status_code == on_u, spec
                # Loopback defaults: no caller token needed at the front door.
                assert http.post(f"{base}/v1/mcp/{t}", content=b"[]").status_code == 400
        finally:
            proc.kill()
        assert key not in proc.output()
