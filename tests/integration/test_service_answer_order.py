"""The tunnel service writes a caller's answer before its 200 to the tunnel client that posted it.

Both are written from the same event loop, so the order is exact: the writes of every connection
are recorded in one list as the service's own server (``svcserver``, on 127.0.0.1:0) makes them;
raw sockets are the caller and the tunnel client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_service_fastpath import TUNNEL, _exchange, _read_answer, call_and_poll, connect
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core import svcserver
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker


class _Recorder:
    def __init__(self, transport: asyncio.Transport, writes: list[tuple[int, bytes]], conn: int) -> None:
        self._t, self._writes, self._conn = transport, writes, conn

    def write(self, data: bytes) -> None:
        self._writes.append((self._conn, bytes(data)))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


@pytest.fixture
def recorded(bg: BackgroundLoop, runtime_key: str, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[RunningServer, list[tuple[int, bytes]]]]:
    writes: list[tuple[int, bytes]] = []
    count = [0]

    class Recording(svcserver._Connection):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            count[0] += 1
            super().connection_made(_Recorder(transport, writes, count[0]))  # type: ignore[arg-type]

    monkeypatch.setattr(svcserver.ServiceServer, "protocol", Recording)
    broker: Broker = bg.call(Broker)
    bg.call(broker.add_tunnel, TUNNEL)
    server = bg.serve_service(build_service_app(broker, ServiceConfig(runtime_keys={runtime_key},
                                                                      response_timeout=30.0)))
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
        cmd, shard = call_and_poll(caller, client, b'{"jsonrpc":"2.0","id":3,"method":"tools/list"}',
                                   "application/json", auth)
        answer = b'{"jsonrpc":"2.0","id":3,"result":{"tools":[]}}'
        body = (f'{{"request_id": "{cmd["request_id"]}", "resp_json": {answer.decode()}, "resp_code": 200, '
                f'"resp_type": "jsonrpc_response"}}').encode()
        assert _exchange(client, "POST", f"/v1/tunnels/{TUNNEL}/response", body, auth + shard)[0] == 200
        assert _read_answer(caller) == (200, answer)
    finally:
        caller.close()
        client.close()
    to_caller = next(i for i, (_, data) in enumerate(writes) if answer in data)
    ok_to_client = next(i for i, (_, data) in enumerate(writes) if b'{"status":"ok"}' in data)
    assert writes[to_caller][0] != writes[ok_to_client][0]
    assert to_caller < ok_to_client, "the tunnel client's 200 went out before the caller's answer"
