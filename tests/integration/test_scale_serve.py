"""``tunnel-client serve`` (production mode) and ``dev proxy`` on the Redis queue, as real processes.

TLS with a test certificate, keys from a file and an env reference, the Redis URL from a
reference, the request-body cap, the per-tunnel rate limit, /healthz, /readyz and /metrics.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.faulty import Session, result_text
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.redis_helpers import RedisServer, metric, running_redis
from tests.support.targets import MCPTarget
from tests.support.tunnel import new_tunnel_id, start_client


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (test only)."""
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "service.crt", tmp / "service.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def test_serve_production_mode_tls_keys_by_reference_limits_health_and_metrics(
    redis_server: RedisServer, runtime_key: str, mcp_target: MCPTarget, tmp_path: Path,
) -> None:
    cert, key = self_signed(tmp_path)
    key_file = tmp_path / "runtime.key"
    key_file.write_text(runtime_key + "\n")
    key_file.chmod(0o600)
    admin_key = "ak_test_" + "z" * 24
    caller_token = "ct_test_" + "y" * 24
    tunnel = new_tunnel_id()
    queue_key = "qk_" + "q" * 40
    env = base_env(tmp_path, ADMIN_KEY=admin_key, REDIS_URL=redis_server.url, CALLER_TOKEN=caller_token,
                   QUEUE_KEY=queue_key)
    proc = Proc([TUNNEL_CLIENT, "serve", "--listen", "127.0.0.1:0", "--tunnel-id", tunnel,
                 "--runtime-api-key", f"file:{key_file}", "--admin-api-key", "env:ADMIN_KEY",
                 "--caller-token", f"{tunnel}=env:CALLER_TOKEN",
                 "--tls-cert-file", str(cert), "--tls-key-file", str(key), "--max-request-body", "64KiB",
                 "--rate-limit", "2", "--rate-limit-burst", "5", "--engine-queue-backend", "redis",
                 "--engine-redis-url", "env:REDIS_URL", "--engine-encryption-key", "env:QUEUE_KEY",
                 "--instance-id", "edge-1", "--log.format", "json"], env)
    run = None
    try:
        base = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
        assert base.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cafile=str(cert))
        http = httpx2.Client(verify=tls, timeout=WAIT, trust_env=False)
        health = http.get(base + "/healthz")
        assert health.status_code == 200
        assert health.json() | {"uptime_seconds": 0} == {"status": "ok", "instance_id": "edge-1",
                                                         "queue_backend": "redis", "uptime_seconds": 0,
                                                         "front_door_auth": "token"}
        assert http.get(base + "/readyz").status_code == 200
        admin = http.get(f"{base}/v1/tunnels/{tunnel}", headers={"Authorization": f"Bearer {admin_key}"})
        assert admin.status_code == 200 and admin.json()["id"] == tunnel

        run = start_client(service_url=base, tunnel_id=tunnel, runtime_key=runtime_key, home=tmp_path,
                           args=["--mcp.server-url", mcp_target.url, "--ca-bundle", str(cert)])
        run.wait_readyz()

        big = http.post(f"{base}/v1/tunnels/{tunnel}/response", content=b"x" * (70 * 1024),
                        headers={"Content-Type": "application/json", "X-Tunnel-Shard-Token": "s"})
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_body_too_large"

        s = Session(f"{base}/v1/mcp/{tunnel}")
        s.client = http
        s.headers["X-Tunnel-Caller-Token"] = caller_token
        s.initialize()  # 2 requests of the burst of 5
        assert result_text(s.call("echo", {"text": "over tls"})) == "over tls"
        statuses = [s.call("echo", {"text": "again"}) for _ in range(3)]
        limited = [r for r in statuses if r.status_code == 429]
        assert limited, [r.status_code for r in statuses]
        assert limited[0].json()["error"]["code"] == "rate_limit_exceeded"
        assert int(limited[0].headers["retry-after"]) >= 1

        text = http.get(base + "/metrics").text
        assert metric(text, 'tunnel_service_rate_limited_total{route="front_door"}') >= 1
        assert metric(text, "tunnel_service_request_body_too_large_total") == 1
        assert metric(text, "tunnel_service_queue_backend_up") == 1
        assert tunnel not in text, "a tunnel id (a capability on the front door) leaked into /metrics"
    finally:
        if run is not None:
            run.proc.kill()
        proc.kill()
    out = proc.output()
    assert runtime_key not in out and admin_key not in out and caller_token not in out and queue_key not in out


def test_serve_refuses_a_key_given_inline_and_an_unreachable_redis(tmp_path: Path) -> None:
    env = base_env(tmp_path, K="rk_" + "a" * 20, TUNNEL_ENGINE_ENCRYPTION_KEY="qk_" + "b" * 40)
    inline = Proc([TUNNEL_CLIENT, "serve", "--runtime-api-key", "rk_plainkey"], env)
    assert inline.wait() == 1 and "give a reference" in inline.output()
    down = Proc([TUNNEL_CLIENT, "serve", "--tunnel-id", new_tunnel_id(), "--runtime-api-key", "env:K",
                 "--engine-queue-backend", "redis",
                 "--engine-redis-url", "redis://:hunter2@127.0.0.1:1/0", "--listen", "127.0.0.1:0"], env)
    assert down.wait() == 1
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in down.output()
    assert "hunter2" not in down.output()


def test_dev_proxy_runs_on_the_redis_queue(redis_server: RedisServer, tmp_path: Path) -> None:
    proc = Proc([TUNNEL_CLIENT, "dev", "proxy", "--print-json", "--engine-queue-backend", "redis",
                 "--engine-redis-url", redis_server.url, "--tunnel-id", new_tunnel_id()], base_env(tmp_path))
    try:
        desc = json.loads(proc.wait_stdout(r"^\{.*\}$").group(0))
        s = Session(desc["mcp_url"])
        s.initialize()
        r = s.call("echo", {"input": "via redis"})
        assert r.status_code == 200 and "via redis" in r.text
        assert redis_server.client().exists(f"tc:t:{desc['tunnel_id']}:chans") == 1, "the queue was not in Redis"
    finally:
        proc.kill()
