"""The poll limit rules of ``relay/slots.py``: working + limit <= N, held + limit <= 2N + 1."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from tunnel_core.relay.slots import Slots


@pytest.mark.parametrize(
    ("capacity", "held", "parked", "reserved", "room"),
    [
        (1, 0, 0, 0, 1),
        (1, 1, 0, 0, 0),  # the only slot works
        (1, 1, 1, 0, 1),  # it waits for its caller: a poll may bring the answer
        (1, 2, 1, 0, 0),  # one parked, one working: the working one fills N
        (1, 2, 2, 0, 1),  # two parked: the last slot of 2N + 1
        (1, 3, 3, 0, 0),  # 2N + 1 held
        (1, 1, 1, 1, 0),  # the open poll's limit counts
        (4, 3, 0, 0, 1),
        (4, 6, 3, 0, 1),
        (4, 8, 8, 0, 1),
        (4, 9, 9, 0, 0),
        (20, 0, 0, 0, 20),
        (20, 30, 15, 0, 5),
        (20, 38, 30, 0, 3),  # 2N + 1 - held binds before N - working
    ],
)
def test_room_keeps_both_bounds(capacity: int, held: int, parked: int, reserved: int, room: int) -> None:
    slots = Slots(capacity)
    slots.hold(held)
    for _ in range(parked):
        slots.park()
    slots.reserved = reserved
    assert slots.room() == room
    assert slots.working + reserved + room <= capacity or room == 0
    assert held + reserved + room <= 2 * capacity + 1


def test_parking_the_only_working_call_wakes_the_poller() -> None:
    async def go() -> int:
        slots = Slots(1)
        slots.hold()
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slots.wait_for_room)
                await anyio.lowlevel.checkpoint()  # let the waiter see no room
                assert slots.room() == 0
                slots.park()
        return slots.room()

    assert anyio.run(go) == 1
