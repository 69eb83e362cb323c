"""Telling API clients about commits: requests waiting for their transactions, and event streams.

Owns: `CommitWaiters` (a request that submitted with `wait=commit` sleeps until its transactions
are committed or its deadline passes) and `CommitFeed` (fan-out of committed blocks to
server-sent-event subscribers), both bounded.
May not: decide or store anything; the runtime calls `on_commit` after a commit is durable and
executed, so whatever a waiter or subscriber learns is already permanent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

import trio

from bft.node.logs import kv

log = logging.getLogger("bft.node")

# How many committed blocks a subscriber may lag behind before it is dropped (it reconnects).
FEED_BUFFER_BLOCKS: Final = 256


class TooManyWaiting(Exception):
    """The node already holds as many waiting transactions or subscribers as it allows."""


class CommitWaiters:
    """Transaction hashes that requests wait on, each with one event shared by its waiters."""

    def __init__(self, max_waiting: int) -> None:
        self._max_waiting = max_waiting
        # hash -> (event set on commit, number of requests waiting on it)
        self._waiting: dict[bytes, tuple[trio.Event, int]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    async def wait(self, hashes: Iterable[bytes], deadline: float) -> None:
        """Return once every hash is committed (see `on_commit`) or at `deadline`, whichever is
        first. TooManyWaiting, waiting for nothing, if the bound would be exceeded."""
        wanted = list(dict.fromkeys(hashes))
        new = sum(1 for h in wanted if h not in self._waiting)
        if len(self._waiting) + new > self._max_waiting:
            raise TooManyWaiting(f"{len(self._waiting)} transactions are already awaited")
        events = []
        for h in wanted:
            event, count = self._waiting.get(h, (trio.Event(), 0))
            self._waiting[h] = (event, count + 1)
            events.append(event)
        try:
            with trio.move_on_at(deadline):
                for event in events:
                    await event.wait()
        finally:
            for h, event in zip(wanted, events, strict=True):
                self._release(h, event)

    def _release(self, h: bytes, event: trio.Event) -> None:
        entry = self._waiting.get(h)
        if entry is None or entry[0] is not event:
            return  # already committed and removed
        if entry[1] <= 1:
            del self._waiting[h]
        else:
            self._waiting[h] = (event, entry[1] - 1)

    def on_commit(self, hashes: Iterable[bytes]) -> None:
        for h in hashes:
            entry = self._waiting.pop(h, None)
            if entry is not None:
                entry[0].set()


class CommitFeed:
    """Committed blocks (as JSON-ready dicts) to every subscriber, each through a bounded channel;
    a subscriber that falls `FEED_BUFFER_BLOCKS` behind is dropped, never waited for.

    Why `on_drop`: a subscriber lags because its client does not read, so the task serving it is
    stuck sending; closing the channel alone would leave that task, its connection and up to
    FEED_BUFFER_BLOCKS buffered events in place until the client reads or the send deadline
    passes. The callback lets the server cut the connection at once."""

    def __init__(self, max_subscribers: int) -> None:
        self._max_subscribers = max_subscribers
        # send channel -> what to call if it is dropped for lagging
        self._subscribers: dict[trio.MemorySendChannel[dict[str, Any]], Callable[[], None]] = {}

    def __len__(self) -> int:
        return len(self._subscribers)

    def subscribe(
        self, on_drop: Callable[[], None] | None = None
    ) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """A channel of the blocks committed from now on; it closes if the subscriber lags, and
        then `on_drop` is called (from `publish`: it must not block). TooManyWaiting if the
        subscriber bound is reached."""
        if len(self._subscribers) >= self._max_subscribers:
            raise TooManyWaiting(f"{len(self._subscribers)} event subscribers already")
        send, receive = trio.open_memory_channel[dict[str, Any]](FEED_BUFFER_BLOCKS)
        self._subscribers[send] = on_drop if on_drop is not None else _nothing
        return receive

    def publish(self, event: dict[str, Any]) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                log.warning(kv(event="event_subscriber_dropped", reason="lagging", buffer=FEED_BUFFER_BLOCKS))
                self._drop(send)()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(send)

    def _drop(self, send: trio.MemorySendChannel[dict[str, Any]]) -> Callable[[], None]:
        send.close()
        return self._subscribers.pop(send)


def _nothing() -> None:
    pass
