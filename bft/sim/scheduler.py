"""The simulator's event heap and simulated clock.

Owns: `Scheduler`, a priority queue of events ordered by (time, insertion sequence), and the
simulated `now` it advances. Ties in time pop in insertion order, so a run is a pure function of
the order in which events were scheduled.
May not: know what an event means, read the real clock, or use randomness.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

E = TypeVar("E")


class Scheduler(Generic[E]):
    """A deterministic discrete-event queue. `now` only moves forward, and only in `pop`."""

    __slots__ = ("_heap", "_now", "_seq")

    def __init__(self, start_s: float = 0.0) -> None:
        self._heap: list[tuple[float, int, E]] = []
        self._seq = 0
        self._now = start_s

    @property
    def now(self) -> float:
        """The time of the event popped last (or the start time)."""
        return self._now

    def schedule(self, at_s: float, event: E) -> None:
        """Queue `event` at absolute time `at_s`; scheduling into the past is a bug."""
        if at_s < self._now:
            raise ValueError(f"cannot schedule at {at_s} before now ({self._now})")
        heapq.heappush(self._heap, (at_s, self._seq, event))
        self._seq += 1

    def schedule_after(self, delay_s: float, event: E) -> None:
        """Queue `event` `delay_s` (>= 0) after now."""
        self.schedule(self._now + delay_s, event)

    def peek_time(self) -> float | None:
        """The time of the next event, or None if the queue is empty."""
        return self._heap[0][0] if self._heap else None

    def pop(self) -> tuple[float, E] | None:
        """Remove the earliest event, advance `now` to its time and return (time, event)."""
        if not self._heap:
            return None
        at_s, _, event = heapq.heappop(self._heap)
        self._now = at_s
        return at_s, event

    def __len__(self) -> int:
        return len(self._heap)
