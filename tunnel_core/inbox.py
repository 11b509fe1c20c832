"""``Inbox``: the messages routed to one waiting call, in order of arrival (asyncio only).

One is made per call, by the relay's stdio target (the child's messages for one request) and by
the tunnel service (the answers routed to one caller), so it costs a deque and, while its reader
waits, one future: an unbounded anyio memory stream did the same at twice the cost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import anyio


class Inbox:
    """Messages for one waiting reader, in order of arrival.

    ``send_nowait`` raises ``anyio.ClosedResourceError`` once closed; iterating yields what
    arrived, then ends when the inbox is closed and empty. Either side may close it (in the
    service: the broker when the answer is complete or the caller is released, the front door
    when its caller left or its budget ran out; in the stdio target: the call when it ends).
    """

    __slots__ = ("_items", "_waiter", "closed")

    def __init__(self) -> None:
        self._items: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def send_nowait(self, item: dict[str, Any]) -> None:
        if self.closed:
            raise anyio.ClosedResourceError
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()
