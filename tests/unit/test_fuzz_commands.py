"""Property tests: arbitrary JSON never crashes poll-body or command decoding, and nothing invalid gets through."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunnel_core.wire.models import (
    CHANNEL_RE,
    CommandDecodeError,
    JsonRpcCommand,
    SessionTerminationCommand,
    commands_from_poll_body,
    decode_command,
    header_value,
)

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                                                kids, max_size=5),
                           max_leaves=20)

FIELDS = ["request_id", "shard_token", "command_type", "channel", "created_at", "response_timeout", "headers",
          "jsonrpc"]
VALID = {
    "request_id": "req_1", "shard_token": "s:1", "command_type": "jsonrpc", "channel": "main",
    "created_at": "2026-01-01T00:00:00Z", "headers": {"x": ["y"]},
    "jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
}


def check(raw: Any) -> None:
    """decode_command either raises CommandDecodeError or returns something safe to forward."""
    try:
        cmd = decode_command(raw)
    except CommandDecodeError as exc:
        assert exc.reason
        return
    assert isinstance(cmd.request_id, str) and cmd.request_id
    assert isinstance(cmd.shard_token, str) and cmd.shard_token
    assert CHANNEL_RE.match(cmd.channel)
    assert all(isinstance(k, str) and all(isinstance(v, str) for v in vs) for k, vs in cmd.headers.items())
    if isinstance(cmd, JsonRpcCommand):
        assert cmd.jsonrpc.get("jsonrpc") == "2.0"
    if isinstance(cmd, SessionTerminationCommand):
        assert header_value(cmd.headers, "mcp-session-id")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_command_never_crashes_decoding(raw: Any) -> None:
    check(raw)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), json_values, st.booleans())
def test_mutating_one_field_of_a_valid_command_is_decoded_or_refused(field: str, value: Any, drop: bool) -> None:
    raw = dict(VALID)
    if drop:
        raw.pop(field, None)
    else:
        raw[field] = value
    check(raw)


@settings(max_examples=300)
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_poll_bodies_yield_a_list_or_a_value_error(body: bytes) -> None:
    try:
        commands = commands_from_poll_body(body)
    except ValueError:
        return  # the poller counts it as a failed poll and backs off
    assert isinstance(commands, list)
    for raw in commands:
        check(raw)


def test_the_valid_command_itself_is_accepted() -> None:
    assert isinstance(decode_command(dict(VALID)), JsonRpcCommand)
