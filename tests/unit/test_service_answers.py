"""The service's raw answers and checks match what they replaced, byte for byte and verdict for verdict.

The hot routes answer without Starlette's Response classes and check response payloads without
always building the pydantic model; these tables hold them to the originals.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tunnel_core.devservice.answers import error_reply, header, json_reply, last, query, reply
from tunnel_core.devservice.app import api_error
from tunnel_core.devservice.runtime import plainly_valid, valid_payload
from tunnel_core.wire.models import TunnelResponsePayload

BODIES: list[Any] = [{"status": "ok"}, {"commands": [{"a": "é", "n": 1.5, "z": None}]}, [], "x", {"u": "\u2028😀"}]
HEADERS: list[dict[str, str] | None] = [None, {}, {"Retry-After": "1"}, {"Content-Type": "text/x"},
                                        {"content-length": "3", "X-A": "b"}, {"Allow": "POST, DELETE"}]
STATUSES = [200, 204, 304, 101, 400, 405, 504]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("headers", HEADERS)
def test_json_reply_is_byte_identical_to_starlette(status: int, headers: dict[str, str] | None) -> None:
    for body in BODIES:
        theirs = JSONResponse(body, status_code=status, headers=headers)
        ours = json_reply(body, status, headers)
        assert (ours.status, ours.headers, ours.body) == (theirs.status_code, theirs.raw_headers, theirs.body)


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("headers", HEADERS)
@pytest.mark.parametrize("media_type", [None, "application/json", "text/event-stream", "text/plain; charset=x"])
def test_reply_is_byte_identical_to_starlette(status: int, headers: dict[str, str] | None,
                                              media_type: str | None) -> None:
    for body in (b"", b"abc"):
        theirs = Response(body, status_code=status, headers=headers, media_type=media_type)
        ours = reply(status, body, headers, media_type)
        assert (ours.status, ours.headers, ours.body) == (theirs.status_code, theirs.raw_headers, theirs.body)


def test_error_reply_is_api_error() -> None:
    for args in ((404, "Tunnel x not found.", "tunnel_not_found"), (400, "bad", None)):
        theirs, ours = api_error(*args), error_reply(*args)
        assert (ours.status, ours.headers, ours.body) == (theirs.status_code, theirs.raw_headers, theirs.body)
    theirs = api_error(503, "down", "x", typ="server_error", headers={"Retry-After": "1"})
    ours = error_reply(503, "down", "x", typ="server_error", headers={"Retry-After": "1"})
    assert (ours.headers, ours.body) == (theirs.raw_headers, theirs.body)


@pytest.mark.parametrize("qs", [b"", b"channel=a", b"channel=a&channel=b", b"limit=&x=1", b"a=%20b&c", b"c=%E9"])
def test_query_and_headers_read_as_starlette_reads_them(qs: bytes) -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": qs,
             "headers": [(b"accept", b"text/event-stream"), (b"x-a", b"1"), (b"x-a", b"2")]}
    request = Request(scope)
    pairs = query(scope)
    assert pairs == request.query_params.multi_items()
    for name in ("channel", "limit", "a", "c", "missing"):
        assert last(pairs, name, "dflt") == request.query_params.get(name, "dflt")
    for name in ("accept", "x-a", "missing"):
        assert header(scope, name.encode()) == request.headers.get(name, "")


def _pydantic_accepts(raw: Any) -> bool:
    try:
        TunnelResponsePayload.model_validate(raw)
    except ValidationError:
        return False
    return True


PAYLOADS: list[Any] = [
    {"request_id": "r"},
    {"request_id": "r", "resp_type": "jsonrpc_response", "resp_code": 200, "resp_json": {"id": 1},
     "resp_headers": {"Mcp-Session-Id": ["s"]}, "channel": "main"},
    {"request_id": "r", "resp_type": "jsonrpc_notify", "resp_json": None, "resp_headers": None},
    {"request_id": "r", "resp_type": "oauth_discovery_response"},
    {"request_id": "r", "resp_type": "nonsense"},
    {"request_id": 1},
    {"request_id": None},
    {},
    {"request_id": "r", "extra": 1},
    {"request_id": "r", "resp_code": "200"},
    {"request_id": "r", "resp_code": "abc"},
    {"request_id": "r", "resp_code": 200.0},
    {"request_id": "r", "resp_code": 200.5},
    {"request_id": "r", "resp_code": True},
    {"request_id": "r", "resp_code": None},
    {"request_id": "r", "resp_json": []},
    {"request_id": "r", "resp_json": "x"},
    {"request_id": "r", "resp_headers": {"a": "b"}},
    {"request_id": "r", "resp_headers": {"a": [1]}},
    {"request_id": "r", "resp_headers": {"a": []}},
    {"request_id": "r", "resp_headers": []},
    {"request_id": "r", "channel": 5},
    {"request_id": "r", "channel": None},
    {"request_id": "\ud800", "resp_json": {"\ud800": "\udfff"}},
    [],
    None,
    "r",
]


@pytest.mark.parametrize("raw", PAYLOADS, ids=range(len(PAYLOADS)))
def test_payload_check_agrees_with_the_wire_model(raw: Any) -> None:
    accepted = _pydantic_accepts(raw)
    assert valid_payload(raw) == accepted
    if plainly_valid(raw):
        assert accepted, "the fast check accepted what the model refuses"


def test_the_fast_check_covers_what_the_relay_sends() -> None:
    from tunnel_core.wire.messages import ResponsePayload

    sent = ResponsePayload(request_id="req_1", channel="main", resp_json={"jsonrpc": "2.0", "id": 1, "result": {}},
                           resp_headers={"Content-Type": ["application/json"]}, resp_code=200).wire()
    assert plainly_valid(sent)


BODIES_TO_PARSE: list[bytes] = [
    b'{"request_id":"r","resp_json":{"jsonrpc":"2.0","id":1,"result":{}}}',
    b' { "resp_json" : { "a" : [1, 2.50, "\\u00e9", null] } , "x" : true } ',
    "{\"resp_json\":{\"t\":\"é\"}}".encode(),
    "{\"resp_json\":{\"t\":\"é\"}}".encode("utf-16"),
    b'\xef\xbb\xbf{"resp_json":{}}',
    b'{"resp_json":{"a":1},"resp_json":{"b":2}}',
    b'{"re\\u0073p_json":{"a":1}}',
    b'{"resp_json":[1]}', b'{"resp_json":"x"}', b'{"resp_json":NaN}', b"[1, 2]", b'"x"', b"1", b"{}", b"{ }",
    b'{"a":1,}', b'{"a" 1}', b'{"a":1 "b":2}', b'{"a":1}x', b'{"a":}', b'{"a":1', b'{"\x01":1}', b"",
    b'{"a":"\x01"}', b"{'a':1}", b'{"a":1}}', b"[" * 100_000 + b"]" * 100_000,
]


@pytest.mark.parametrize("body", BODIES_TO_PARSE, ids=range(len(BODIES_TO_PARSE)))
def test_parse_members_reads_as_json_loads_and_keeps_the_exact_text(body: bytes) -> None:
    import json

    from tunnel_core.devservice.jsonbody import dumps_keeping, loads_keeping, parse_members

    try:
        expected: Any = json.loads(body)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc) if isinstance(exc, RecursionError) else ValueError):
            parse_members(body, "resp_json")
        return
    value, text = parse_members(body, "resp_json")
    assert value == expected or value != value  # NaN
    if isinstance(expected, dict) and "resp_json" in expected:
        assert text is not None and text.strip() == text
        assert json.loads(text) == expected["resp_json"] or expected["resp_json"] != expected["resp_json"]
        kept = loads_keeping(body, "resp_json")
        if isinstance(expected["resp_json"], dict):
            assert getattr(kept["resp_json"], "text", None) == text
            again = dumps_keeping(kept, "resp_json")
            assert json.loads(again) == expected and text in again
    else:
        assert text is None
