"""What ``--control-plane.max-inflight`` bounds, with calls parked on their caller.

A command is *held* from the poll that delivered it until its terminal response is posted (or
it is dropped); the ``limit`` of the open poll is *reserved*. A held call is *parked* while it
waits only for its caller: it has relayed a server-to-client request (elicitation, sampling,
``roots/list``, ``ping``) and the answer has not come back through this client yet. The answer
is a new command that only a poll can bring, so a parked call must not keep the poll shut.
Two rules bound every poll (N = max-inflight):

1. *working* commands (held, not parked) + the open poll's limit <= N: what the client works
   on stays bounded by N, however many calls wait for their callers;
2. *held* commands, parked included, + the open poll's limit <= 2N + 1: a caller that never
   answers cannot make the client hold more than that.

So the client stops polling only while N commands are working (they end or park by
themselves) or while 2N + 1 held calls all wait for their callers (they end by their server's
own timeout or their deadline). The ``+ 1`` is what lets ``max-inflight 1`` serve two
elicitations at once: two parked calls and the answer that frees the first.
"""

from __future__ import annotations

import anyio


class Slots:
    """Counts of held, parked and reserved commands; the poller waits here for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.bound = 2 * capacity + 1
        self.held = 0
        self.parked = 0
        self.reserved = 0
        self._changed = anyio.Event()

    @property
    def working(self) -> int:
        return self.held - self.parked

    def room(self) -> int:
        """How many more commands a poll may ask for now (both rules, the open poll's limit included)."""
        return max(0, min(self.capacity - self.working, self.bound - self.held) - self.reserved)

    async def wait_for_room(self) -> None:
        while self.room() == 0:
            await self._changed.wait()

    async def wait_empty(self) -> None:
        while self.held:
            await self._changed.wait()

    def hold(self, count: int = 1) -> None:
        self.held += count

    def release(self) -> None:
        self.held -= 1
        self._wake()

    def park(self) -> None:
        self.parked += 1
        self._wake()

    def unpark(self) -> None:
        self.parked -= 1

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()
