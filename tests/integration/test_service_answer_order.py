"""The tunnel service writes a caller's answer before its 200 to the tunnel client that posted it.

Both are written from the same event loop, so the order is exact: the writes of every connection
are recorded in one list as the service makes them (real uvicorn server with the service's own
protocol on 127.0.0.1:0, raw sockets as the caller and the tunnel client).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_service_fastpath import TUNNEL, _exchange, _read_answer, connect
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker
from tunnel_core.httpproto import FastHttpProtocol


class _Recorder:
    def __init__(self, transport: asyncio.Transport, writes: list[tuple[int, bytes]], conn: int) -> None:
        self._t, self._writes, self._conn = transport, writes, conn

    def write(self, data: bytes) -> None:
        self._writes.append((self._conn, bytes(data)))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


@pytest.fixture
def recorded(bg: BackgroundLoop, runtime_key: str) -> Iterator[tuple[RunningServer, list[tuple[int, bytes]]]]:
    writes: list[tuple[int, bytes]] = []
    count = [0]

    class Recording(FastHttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            count[0] += 1
            super().connection_made(_Recorder(transport, writes, count[0]))  # type: ignore[arg-type]

    broker: Broker = bg.call(Broker)
    bg.call(broker.add_tunnel, TUNNEL)
    server = bg.serve(build_service_app(broker, ServiceConfig(runtime_keys={runtime_key}, response_timeout=30.0)),
                      http=Recording)
    try:
        yield server, writes
    finally:
        server.stop()


def test_the_caller_is_answered_before_the_tunnel_client(recorded: tuple[RunningServer, list[tuple[int, bytes]]],
                                                          runtime_key: str) -> None:
    server, writes = recorded
    auth = f"Authorization: Bearer {runtime_key}\r\n"
    caller = connect(server)
    client = connect(server)
    try:
        call = b'{"jsonrpc":"2.0","id":3,"method":"tools/list"}'
        caller.sendall(f"POST /v1/mcp/{TUNNEL} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Type: "
                       f"application/json\r\nContent-Length: {len(call)}\r\n\r\n".encode() + call)
        _, polled = _exchange(client, "GET", f"/v1/tunnels/{TUNNEL}/poll?timeout_ms=5000", headers=auth)
        (cmd,) = json.loads(polled)["commands"]
        answer = b'{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}'
        body = (f'{{"request_id": "{cmd["request_id"]}", "resp_json": {answer.decode()}, "resp_code": 200, '
                f'"resp_type": "jsonrpc_response"}}').encode()
        shard = f"X-Tunnel-Shard-Token: {cmd['shard_token']}\r\nContent-Type: application/json\r\n"
        assert _exchange(client, "POST", f"/v1/tunnels/{TUNNEL}/response", body, auth + shard)[0] == 200
        assert _read_answer(caller) == (200, answer)
    finally:
        caller.close()
        client.close()
    to_caller = next(i for i, (_, data) in enumerate(writes) if answer in data)
    ok_to_client = next(i for i, (_, data) in enumerate(writes) if b'{"status":"ok"}' in data)
    assert writes[to_caller][0] != writes[ok_to_client][0]
    assert to_caller < ok_to_client, "the tunnel client's 200 went out before the caller's answer"
