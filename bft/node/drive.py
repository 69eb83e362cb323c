"""The drive loop's schedule: when the replica gets a timer step and when it gets a message.

Owns: `drive`, the one loop that alternates between the program's deadline and the frames that
peers sent, and its two guarantees:
- incoming frames always get a turn: each pass of the loop either runs a due timer step or takes
  one frame, and a timer step is never run twice at the same instant (below), so frames waiting
  are read between any two timer steps; the loop yields to the other tasks (the API, the
  transport) after every timer step;
- a timer step never repeats at once: if the program's next deadline is not later than the
  `now` its timer step was given (a core bug: a deadline left in the past), the next timer step
  waits at least `MIN_TIMER_INTERVAL_S`, and `on_stall` is told (the runtime logs and counts it).
A due timer is never kept waiting by a backlog of frames either: the deadline is checked before
every frame. Another task (the API admitting a client's transactions) may end the wait with a
`Waker`: the loop then gives the program a payload step (`on_wake`) before the next frame, so a
leader waiting idle proposes the moment its own clients' transactions arrive instead of at its
pacing deadline.
May not: decode, decide or send anything; the runtime passes in what a timer step and a frame do.

Why: the loop used to wait for a frame under `move_on_at(deadline)`. With a deadline already in
the past, trio cancels that wait before it looks at the channel, so a deadline that stayed in
the past (a deferred proposal re-armed at a past time, or a clock that jumped past every
deadline after a SIGSTOP pause or a long stall) had the node handle timer steps forever and
never read the network again: a fresh testnet with 20 ms view timeouts stayed at height 0. The
simulator checks the core side (`timer-progress`); this loop makes the node survive it anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, Protocol

import trio

from bft.node.clock import NodeClock

Frame = tuple[int, bytes]


class FrameSource(Protocol):
    """Where frames come from: the transport's `IncomingChannel` (a trio memory channel in tests)."""

    async def receive(self) -> Frame: ...


# The shortest time between two timer steps when the program's deadline did not move forward.
MIN_TIMER_INTERVAL_S: Final = 0.001


class Waker:
    """A flag another task sets to end the drive loop's wait (`wake`); the loop takes it once."""

    def __init__(self) -> None:
        self._pending = False
        self._scope: trio.CancelScope | None = None

    def wake(self) -> None:
        self._pending = True
        if self._scope is not None:
            self._scope.cancel()

    def take(self) -> bool:
        pending, self._pending = self._pending, False
        return pending

    @contextmanager
    def ends(self, scope: trio.CancelScope) -> Iterator[None]:
        """While in this block, `wake` cancels `scope` (the loop's wait for a frame)."""
        self._scope = scope
        try:
            yield
        finally:
            self._scope = None


async def drive(
    incoming: FrameSource,
    next_deadline: Callable[[], float | None],
    on_timer: Callable[[float], None],
    on_frame: Callable[[int, bytes, float], None],
    on_stall: Callable[[float, float], None],
    clock: NodeClock,
    waker: Waker | None = None,
    on_wake: Callable[[float], None] = lambda now: None,
) -> None:
    """Run the program's steps until cancelled (or the channel closes): `on_timer(now)` when its
    `next_deadline()` is due, `on_frame(peer, data, now)` for each frame. `on_stall(now, deadline)`
    is called when a timer step left the deadline at or before its `now`; `on_wake(now)` after
    the `waker` was woken (once however many wakes came). Every time is the `clock`'s."""
    not_before = -math.inf
    waker = Waker() if waker is None else waker
    while True:
        deadline = next_deadline()
        due_at = math.inf if deadline is None else max(deadline, not_before)
        now = clock.now()
        if due_at <= now:
            on_timer(now)
            after = next_deadline()
            if after is not None and after <= now:
                on_stall(now, after)
                not_before = now + MIN_TIMER_INTERVAL_S
            await trio.lowlevel.checkpoint()
            continue
        if waker.take():
            on_wake(now)
            await trio.lowlevel.checkpoint()
            continue
        received: Frame | None = None
        with trio.move_on_at(clock.trio_time(due_at)) as scope:
            with waker.ends(scope):
                received = await incoming.receive()
        if received is not None:
            on_frame(received[0], received[1], clock.now())
