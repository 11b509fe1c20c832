"""Wire contract: the reference fixtures decode, and every payload shape we send matches the OpenAPI schemas."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from tests.support.schema import (
    assert_valid_response_payload,
    load_fixture,
    openapi,
    schema_errors,
    tunnel_failure_validator,
)
from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.devservice.app import api_error
from tunnel_core.targets.failures import TargetFailure, synthesized_error
from tunnel_core.wire.models import (
    APIErrorResponse,
    CommandDecodeError,
    FailureSource,
    JsonRpcCommand,
    MCPServerInfo,
    PolledCommandList,
    ResponsePayload,
    RespType,
    ServerInfoChannel,
    SessionTerminationCommand,
    TunnelClientMetadata,
    TunnelFailure,
    TunnelResponsePayload,
    decode_command,
)

FAILURE_SCHEMA = openapi()["components"]["schemas"]["TunnelResponsePayload"]["properties"]["resp_json"][
    "x-tunnel-failure-schema"]


def envelope() -> dict[str, Any]:
    data: dict[str, Any] = load_fixture("poll_command_envelope.json")
    return data


# ---- reference fixtures -------------------------------------------------------------------------


def test_poll_envelope_fixture_matches_openapi() -> None:
    assert schema_errors("PolledCommandList", envelope()) == []
    assert len(PolledCommandList.model_validate(envelope()).commands) == 2


def test_notify_response_fixture_matches_openapi_and_the_model() -> None:
    fixture = load_fixture("jsonrpc_notify_response.json")
    assert_valid_response_payload(fixture)
    model = TunnelResponsePayload.model_validate(fixture)
    assert model.resp_type == "jsonrpc_notify"
    assert not model.terminal
    expected = {k: v for k, v in fixture.items() if v != {}}  # empty resp_headers are omitted on the wire
    assert model.wire() == expected
    assert_valid_response_payload(model.wire())


def test_jsonrpc_command_fixture_decodes_with_payload_untouched() -> None:
    raw = envelope()["commands"][0]
    cmd = decode_command(raw)
    assert isinstance(cmd, JsonRpcCommand)
    assert (cmd.request_id, cmd.shard_token, cmd.channel) == ("cmd_fixture_jsonrpc", "fixture:jsonrpc", "harpoon")
    assert cmd.created_at == "2026-06-12T12:13:14.000Z"
    assert cmd.headers == {"x-test": ["alpha"]}
    assert cmd.jsonrpc == raw["jsonrpc"]
    assert parse_response_timeout(cmd.response_timeout) is None  # absent: no deadline


def test_session_termination_fixture_without_session_id_is_dropped() -> None:
    # The reference drops session_termination commands that carry no Mcp-Session-Id (no response).
    with pytest.raises(CommandDecodeError) as info:
        decode_command(envelope()["commands"][1])
    assert info.value.reason == "missing_session_id"
    assert info.value.request_id == "cmd_fixture_session_end"


def test_session_termination_with_session_id_decodes() -> None:
    raw = copy.deepcopy(envelope()["commands"][1])
    raw["headers"] = {"MCP-Session-Id": ["s-1"]}
    cmd = decode_command(raw)
    assert isinstance(cmd, SessionTerminationCommand)
    assert cmd.channel == "main"


# ---- tolerant decoding ----------------------------------------------------------------------------


def base_command(**over: Any) -> dict[str, Any]:
    cmd: dict[str, Any] = {"request_id": "r1", "shard_token": "s1", "command_type": "jsonrpc", "created_at": "",
                           "jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "ping"}}
    cmd.update(over)
    return {k: v for k, v in cmd.items() if v is not None}


def test_unknown_fields_are_tolerated_and_kept() -> None:
    cmd = decode_command(base_command(future_field={"x": 1}))
    assert cmd.extra == {"future_field": {"x": 1}}


def test_missing_command_type_means_jsonrpc() -> None:
    raw = base_command()
    del raw["command_type"]
    assert isinstance(decode_command(raw), JsonRpcCommand)


@pytest.mark.parametrize(("given", "expected"), [(" Main ", "main"), ("", "main"), (None, "main"), ("docs_2", "docs_2")])
def test_channel_is_canonicalised(given: str | None, expected: str) -> None:
    assert decode_command(base_command(channel=given)).channel == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (["not", "an", "object"], "invalid_command"),
        (base_command(command_type="telepathy"), "invalid_command_type"),
        (base_command(channel="bad channel!"), "invalid_channel"),
        (base_command(channel="x" * 65), "invalid_channel"),
        (base_command(request_id=""), "invalid_command"),
        ({"shard_token": "s", "jsonrpc": {"jsonrpc": "2.0", "method": "x"}}, "invalid_command"),
        (base_command(shard_token=""), "invalid_command"),
        (base_command(jsonrpc={"jsonrpc": "1.0", "id": 1, "method": "x"}), "invalid_jsonrpc"),
        (base_command(jsonrpc="not an object"), "invalid_command"),
        (base_command(headers={"X": "not-a-list"}), "invalid_command"),
    ],
)
def test_malformed_command_is_rejected_with_a_stable_reason(raw: Any, reason: str) -> None:
    with pytest.raises(CommandDecodeError) as info:
        decode_command(raw)
    assert info.value.reason == reason


def test_unknown_command_type_keeps_the_request_id_for_logs() -> None:
    with pytest.raises(CommandDecodeError) as info:
        decode_command(base_command(request_id="req_9", command_type="telepathy"))
    assert info.value.request_id == "req_9"


def test_metadata_tolerates_extra_management_fields() -> None:
    body = {"id": "tunnel_x", "name": "n", "description": "d", "owner": "someone", "created_at": 1}
    assert schema_errors("TunnelClientMetadata", body) == []
    meta = TunnelClientMetadata.parse(json.dumps(body))
    assert meta.name == "n" and meta.as_dict()["owner"] == "someone"


def test_dev_service_error_bodies_match_the_api_error_schema() -> None:
    for resp in (api_error(404, "Tunnel x not found.", "tunnel_not_found"), api_error(400, "bad", None)):
        body = json.loads(bytes(resp.body))
        assert schema_errors("APIErrorResponse", body) == []
        APIErrorResponse.model_validate(body)


# ---- what the client sends ------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": ["application/json"]}

PRODUCED: list[Any] = [
    pytest.param(ResponsePayload(
        request_id="r", resp_json={"jsonrpc": "2.0", "id": 1, "result": {"tools": []}},
        resp_headers={"Content-Type": ["application/json"], "Mcp-Session-Id": ["s1"]}, resp_code=200,
        resp_type="jsonrpc_response"), id="jsonrpc_response"),
    pytest.param(ResponsePayload(
        request_id="r", channel="docs", resp_json={"jsonrpc": "2.0", "id": "a", "error": {
            "code": -32001, "message": "Unauthorized", "data": {"x": 1}}},
        resp_headers={"Content-Type": ["application/json"], "Www-Authenticate": ['Bearer realm="x"']}, resp_code=401,
        resp_type="jsonrpc_response"), id="preserved_target_error"),
    pytest.param(ResponsePayload(
        request_id="r", resp_json={"jsonrpc": "2.0", "method": "notifications/progress",
                                   "params": {"progressToken": "t", "progress": 1, "total": 2}},
        resp_headers={"Content-Type": ["text/event-stream"]}, resp_code=200, resp_type="jsonrpc_notify"),
        id="jsonrpc_notify"),
    pytest.param(ResponsePayload(request_id="r", resp_code=202, resp_type="notify_ack"), id="notify_ack"),
    pytest.param(ResponsePayload(request_id="r", resp_code=502, resp_type="notify_ack"), id="notify_ack_502"),
    pytest.param(ResponsePayload(
        request_id="r", resp_code=204, resp_headers={"Mcp-Session-Id": ["s1"]},
        resp_type="session_termination_response"), id="session_termination_response"),
    pytest.param(ResponsePayload(request_id="r", resp_code=400, resp_type="session_termination_response"),
                 id="session_termination_unsupported_channel"),
    pytest.param(ResponsePayload(
        request_id="r", channel="nope", resp_json={"jsonrpc": "2.0", "id": 3, "error": {
            "code": -32603, "message": 'Bad Request: unsupported channel "nope"'}},
        resp_headers=JSON_HEADERS, resp_code=400), id="unsupported_channel"),
    pytest.param(ResponsePayload(
        request_id="r", resp_json=synthesized_error(None, 504, None), resp_code=504), id="failure_without_provenance"),
]

# Every (source, kind, status, upstream_status) the client can synthesize (targets/failures.py, targets/http.py).
FAILURES = [
    ("connect", "connection_refused", 502, None), ("connect", "network_unreachable", 502, None),
    ("connect", "host_unreachable", 502, None), ("connect", "dial", 502, None), ("dns", "dns", 502, None),
    ("tls", "tls", 502, None), ("timeout", "timeout", 502, None),
    ("transport_closed", "connection_reset", 502, None), ("transport_closed", "closed_pipe", 502, None),
    ("transport_closed", "connection_aborted", 502, None), ("transport_closed", "unexpected_eof", 502, None),
    ("transport_closed", "connection_closed", 502, None), ("transport_closed", "eof", 502, None),
    ("protocol", "malformed_json", 502, None), ("protocol", "invalid_protocol_response", 502, None),
    ("protocol", "response_body_missing", 502, None), ("client_internal", "unknown", 502, None),
    ("target_http", "malformed_json", 503, 503), ("target_http", "invalid_mcp_error", 400, 400),
    ("target_http", "response_body_missing", 500, 500), ("target_http", "response_body_too_large", 413, 413),
    ("target_http", "malformed_json", 599, 599),
]


@pytest.mark.parametrize("payload", PRODUCED)
def test_produced_payload_matches_openapi(payload: ResponsePayload) -> None:
    assert_valid_response_payload(payload.wire())


@pytest.mark.parametrize(("source", "kind", "status", "upstream"), FAILURES, ids=lambda v: str(v))
@pytest.mark.parametrize("rpc_id", ["rpc-1", 7, None])
def test_synthesized_failure_payload_matches_openapi_and_failure_schema(
    source: Any, kind: str, status: int, upstream: int | None, rpc_id: Any
) -> None:
    body = TargetFailure(source, kind, status, upstream).envelope(rpc_id)
    payload = ResponsePayload(request_id="req_1", resp_json=body, resp_headers=JSON_HEADERS,
                                    resp_code=status, resp_type="jsonrpc_response").wire()
    assert_valid_response_payload(payload)
    failure = body["error"]["data"]["tunnel_failure"]
    assert source in FAILURE_SCHEMA["properties"]["source"]["x-known-values"]
    assert kind in FAILURE_SCHEMA["properties"]["transport_error_kind"]["x-known-values"]
    assert failure["upstream_response_received"] is (upstream is not None)


def test_failure_schema_rejects_inconsistent_provenance() -> None:
    # Proves the nested validator is live: target_http without upstream_status is invalid.
    bad = {"version": 1, "source": "target_http", "upstream_response_received": False}
    assert list(tunnel_failure_validator().iter_errors(bad))


def test_every_failure_source_is_a_known_schema_value() -> None:
    assert set(get_args(FailureSource)) == set(FAILURE_SCHEMA["properties"]["source"]["x-known-values"])


def test_tunnel_failure_fields_are_the_published_ones_plus_detail() -> None:
    # detail is this client's extension (why a stdio server is down, in words); the schema allows it.
    assert {f.name for f in dataclasses.fields(TunnelFailure)} == set(FAILURE_SCHEMA["properties"]) | {"detail"}
    assert FAILURE_SCHEMA["additionalProperties"] is True
    wire = TunnelFailure(source="connect", transport_error_kind="dial", detail="executable not found: x").wire()
    assert list(tunnel_failure_validator().iter_errors(wire)) == []
    assert "detail" not in TunnelFailure(source="connect").wire()


def test_resp_types_are_exactly_the_openapi_enum() -> None:
    enum = openapi()["components"]["schemas"]["ResponsePayloadType"]["enum"]
    assert list(get_args(RespType)) == enum


def test_oauth_discovery_response_is_an_extension_outside_the_openapi_enum() -> None:
    payload = ResponsePayload(request_id="r", resp_code=404, resp_type="oauth_discovery_response").wire()
    assert schema_errors("TunnelResponsePayload", payload)


def test_wire_omits_empty_parts_but_always_sets_channel_and_type() -> None:
    wire = ResponsePayload(request_id="r", resp_json={}, resp_headers={}, resp_code=202,
                                 resp_type="notify_ack").wire()
    assert wire == {"request_id": "r", "channel": "main", "resp_code": 202, "resp_type": "notify_ack"}


def test_response_payload_model_is_strict() -> None:
    with pytest.raises(ValidationError):
        TunnelResponsePayload.model_validate({"request_id": "r", "resp_code": 200, "surprise": 1})
    with pytest.raises(ValidationError):
        TunnelResponsePayload.model_validate({"request_id": "r", "resp_code": 200, "resp_type": "other"})


def test_server_info_header_is_version_1_and_omits_false_affinity() -> None:
    info = MCPServerInfo(channels=[ServerInfoChannel(name="main"), ServerInfoChannel(name="cli", proc_affinity=True)])
    header = info.header()
    assert json.loads(header) == {"version": 1, "channels": [{"name": "main"}, {"name": "cli", "proc_affinity": True}]}
    assert len(header.encode()) <= 4096


ODD_JSON = (b'{ "result" : {"z":1, "a":[1.0000000000000000001, 123456789012345678901234567890, 1e400],'
            b' "s":"caf\\u00e9 \xc3\xa9 \\ud83d\\ude00 \\"q\\""},\n\t"id":7,"jsonrpc":"2.0" }')


def test_spliced_payload_carries_the_servers_bytes_and_is_the_same_json() -> None:
    payload = ResponsePayload(request_id="r", channel="tools", resp_json=json.loads(ODD_JSON),
                              resp_headers=JSON_HEADERS, resp_code=200, resp_raw=ODD_JSON)
    body = payload.encode()
    assert body.endswith(b',"resp_json":' + ODD_JSON + b"}")
    assert json.loads(body) == {**payload.wire(), "resp_json": json.loads(ODD_JSON)}
    assert not schema_errors("TunnelResponsePayload", json.loads(body))


def test_a_payload_without_raw_bytes_is_encoded_as_before() -> None:
    payload = ResponsePayload(request_id="r", resp_json={"jsonrpc": "2.0", "id": 1, "result": {"t": "é"}})
    assert payload.encode() == json.dumps(payload.wire(), separators=(",", ":"), ensure_ascii=False).encode()
