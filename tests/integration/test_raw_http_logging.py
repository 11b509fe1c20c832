"""``run --log.http-raw-unsafe``: MCP HTTP exchanges in the log at debug level, secrets still masked."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2

from tests.support.faulty import Session, result_text
from tests.support.proc import wait_until
from tests.support.relay import relay, relay_env

CONNECTOR_TOKEN = "connector-token-5b0e1f2a9c"


def _raw(records: list[dict[str, object]], msg: str) -> list[dict[str, object]]:
    return [r for r in records if r.get("msg") == msg]


def _call_echo(mcp_url: str, text: str) -> None:
    session = Session(mcp_url)
    try:
        session.initialize()
        session.headers["Authorization"] = f"Bearer {CONNECTOR_TOKEN}"  # forwarded to main: must be masked
        answer = session.call("echo", {"input": text})
        assert text in result_text(answer)
    finally:
        session.close()


def test_raw_exchanges_are_logged_with_secrets_masked(tmp_path: Path) -> None:
    env = relay_env(tmp_path)
    with relay(tmp_path, ["--log.http-raw-unsafe", "--log.level", "debug"], env=env) as r:
        warning = r.client.wait_log(
            "raw HTTP logging is on (--log.http-raw-unsafe): MCP request and response bodies are written to the log "
            "at debug level; known secrets are masked, other private data is not")
        assert warning["level"] == "WARN"
        _call_echo(r.mcp_url, "raw-probe-4411")

        def exchange() -> tuple[dict[str, object], dict[str, object]] | None:
            records = r.client.log_records()
            req = next((x for x in _raw(records, "raw http request") if "raw-probe-4411" in str(x.get("body"))), None)
            body = next((x for x in _raw(records, "raw http response body")
                         if "raw-probe-4411" in str(x.get("body"))), None)
            return (req, body) if req and body else None

        req, _body = wait_until(exchange, "the raw request and response of the echo call")
        assert req["component"] == "mcpclient" and req["method"] == "POST"
        assert str(req["url"]).endswith("/mcp")
        headers = req["headers"]
        assert isinstance(headers, dict)
        assert {k.lower(): v for k, v in headers.items()}["authorization"] == "[REDACTED]"
        assert any(x.get("status_code") == 200 for x in _raw(r.client.log_records(), "raw http response"))
        assert CONNECTOR_TOKEN not in r.client.output()

        status = r.ops("/api/status").json()
        assert status["raw_http_logging_enabled"] is True
        assert any("--log.http-raw-unsafe" in w for w in status["warnings"])


def test_debug_level_alone_logs_no_raw_exchanges(tmp_path: Path) -> None:
    with relay(tmp_path, ["--log.level", "debug"]) as r:
        _call_echo(r.mcp_url, "plain-probe-8")
        # the front door answered, so the exchange is over: nothing raw was written for it
        assert not any(str(rec.get("msg", "")).startswith("raw http") for rec in r.client.log_records())
        assert r.ops("/api/status").json()["raw_http_logging_enabled"] is False


def test_raw_logging_from_env_waits_for_debug_level(tmp_path: Path) -> None:
    env = relay_env(tmp_path, LOG_HTTP_RAW_UNSAFE="true")
    with relay(tmp_path, env=env) as r:  # info level: switched on, but nothing raw until debug
        _call_echo(r.mcp_url, "before-debug-1")
        assert not _raw(r.client.log_records(), "raw http request")
        put = httpx2.put(r.health_url + "/api/log-level", content=json.dumps({"level": "debug"}), timeout=10.0,
                         trust_env=False)
        assert put.status_code == 200
        _call_echo(r.mcp_url, "after-debug-2")
        wait_until(lambda: any("after-debug-2" in str(x.get("body")) for x in
                               _raw(r.client.log_records(), "raw http request")), "raw records after PUT debug")
