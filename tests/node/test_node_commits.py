"""CommitWaiters and CommitFeed: requests waiting for commits and event-stream fan-out, both bounded.

Time-dependent tests use the autojump clock, so deadlines of many seconds pass instantly and a
waiter that woke "before its deadline" is told apart from one that timed out by the clock.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from bft.node.commits import FEED_BUFFER_BLOCKS, CommitFeed, CommitWaiters, TooManyWaiting

DEADLINE_S = 30.0
H1, H2, H3, H4 = (bytes([i]) * 32 for i in range(1, 5))


class Waiter:
    """One `wait` call run as a task; records when it returned and whether it was cancelled."""

    def __init__(self, waiters: CommitWaiters, hashes: list[bytes], deadline: float) -> None:
        self.waiters = waiters
        self.hashes = hashes
        self.deadline = deadline
        self.returned_at: float | None = None
        self.cancel_scope = trio.CancelScope()

    async def run(self) -> None:
        with self.cancel_scope:
            await self.waiters.wait(self.hashes, self.deadline)
            self.returned_at = trio.current_time()

    @property
    def done(self) -> bool:
        return self.returned_at is not None


# --- CommitWaiters -------------------------------------------------------------------------------


async def test_a_waiter_wakes_once_all_its_hashes_commit(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    waiter = Waiter(waiters, [H1, H2], deadline)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 2
        waiters.on_commit([H1, H3])  # H3 is awaited by nobody: ignored
        await trio.testing.wait_all_tasks_blocked()
        assert not waiter.done, "one of its two transactions is still uncommitted"
        assert len(waiters) == 1
        waiters.on_commit([H2])
    assert waiter.returned_at is not None
    assert waiter.returned_at < deadline, "woke by the commit, not by the deadline"
    assert len(waiters) == 0


async def test_every_request_waiting_on_a_hash_wakes(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    group = [Waiter(waiters, [H1], deadline) for _ in range(3)] + [Waiter(waiters, [H1, H2], deadline)]
    async with trio.open_nursery() as nursery:
        for waiter in group:
            nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        # One shared entry per hash, however many requests wait on it.
        assert len(waiters) == 2
        waiters.on_commit([H1])
        await trio.testing.wait_all_tasks_blocked()
        assert [w.done for w in group] == [True, True, True, False]
        waiters.on_commit([H2])
    assert all(w.returned_at is not None and w.returned_at < deadline for w in group)
    assert len(waiters) == 0


async def test_deadline_returns_without_a_commit(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    start = trio.current_time()
    await waiters.wait([H1, H2], start + DEADLINE_S)
    assert trio.current_time() >= start + DEADLINE_S
    assert len(waiters) == 0


async def test_a_partial_commit_then_the_deadline_releases_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    waiter = Waiter(waiters, [H1, H2], deadline)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter.run)
        await trio.testing.wait_all_tasks_blocked()
        waiters.on_commit([H1])
    assert waiter.returned_at is not None and waiter.returned_at >= deadline
    assert len(waiters) == 0


async def test_a_deadline_already_past_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    start = trio.current_time()
    await waiters.wait([H1], start - 1.0)
    assert trio.current_time() == start
    assert len(waiters) == 0


async def test_cancellation_releases_the_entries(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    cancelled = Waiter(waiters, [H1, H2], deadline)
    other = Waiter(waiters, [H1], deadline)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancelled.run)
        nursery.start_soon(other.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 2
        cancelled.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert cancelled.cancel_scope.cancelled_caught
        assert not cancelled.done
        # H2 had only the cancelled request; H1 still has the other one.
        assert len(waiters) == 1
        waiters.on_commit([H1])
    assert other.returned_at is not None and other.returned_at < deadline
    assert len(waiters) == 0


async def test_all_waiters_cancelled_leaves_nothing(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(Waiter(waiters, [H1, H2], deadline).run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 2
        nursery.cancel_scope.cancel()
    assert len(waiters) == 0


async def test_a_rewaited_hash_is_not_released_by_the_old_waiter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """H1 commits while A still waits for H2; B then waits on H1 afresh. A returning must not take
    B's entry away (B would never be woken and the count would be wrong)."""
    waiters = CommitWaiters(max_waiting=10)
    deadline = trio.current_time() + DEADLINE_S
    a = Waiter(waiters, [H1, H2], deadline)
    b = Waiter(waiters, [H1], deadline)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.run)
        await trio.testing.wait_all_tasks_blocked()
        waiters.on_commit([H1])
        nursery.start_soon(b.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 2  # H2 (A) and a fresh H1 (B)
        waiters.on_commit([H2])
        await trio.testing.wait_all_tasks_blocked()
        assert a.done and not b.done
        assert len(waiters) == 1, "B's entry for H1 survives A's release"
        waiters.on_commit([H1])
    assert b.returned_at is not None and b.returned_at < deadline
    assert len(waiters) == 0


async def test_the_bound_refuses_and_registers_nothing(autojump_clock: trio.testing.MockClock) -> None:
    waiters = CommitWaiters(max_waiting=3)
    deadline = trio.current_time() + DEADLINE_S
    with pytest.raises(TooManyWaiting):
        await waiters.wait([H1, H2, H3, H4], deadline)
    assert len(waiters) == 0
    holder = Waiter(waiters, [H1, H2], deadline)
    sharer = Waiter(waiters, [H1, H2, H3, H3], deadline)  # one new hash (duplicates count once)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder.run)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(TooManyWaiting):
            await waiters.wait([H3, H4], deadline)  # two new hashes: 2 + 2 > 3
        assert len(waiters) == 2, "the refused request registered nothing"
        nursery.start_soon(sharer.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(waiters) == 3
        waiters.on_commit([H1, H2, H3])
    assert holder.done and sharer.done
    assert len(waiters) == 0


# --- CommitFeed ----------------------------------------------------------------------------------


def _event(height: int) -> dict[str, Any]:
    return {"height": height, "id": f"{height:064x}"}


def _drain(channel: trio.MemoryReceiveChannel[dict[str, Any]]) -> tuple[list[int], bool]:
    """Heights buffered in `channel`, and whether the channel then ended (sender closed)."""
    heights: list[int] = []
    while True:
        try:
            heights.append(channel.receive_nowait()["height"])
        except trio.WouldBlock:
            return heights, False
        except trio.EndOfChannel:
            return heights, True


async def test_subscribers_get_every_event_in_order() -> None:
    feed = CommitFeed(max_subscribers=4)
    early = feed.subscribe()
    feed.publish(_event(1))
    late = feed.subscribe()
    for height in (2, 3, 4):
        feed.publish(_event(height))
    assert _drain(early) == ([1, 2, 3, 4], False)
    assert _drain(late) == ([2, 3, 4], False), "a subscriber sees the blocks committed from now on"
    assert len(feed) == 2


async def test_a_lagging_subscriber_is_dropped_and_its_channel_ends() -> None:
    feed = CommitFeed(max_subscribers=4)
    lagging = feed.subscribe()
    reading = feed.subscribe()
    read: list[int] = []
    for height in range(1, FEED_BUFFER_BLOCKS + 1):
        feed.publish(_event(height))
        read += _drain(reading)[0]
    assert len(feed) == 2, "a full buffer is not yet a lag"
    feed.publish(_event(FEED_BUFFER_BLOCKS + 1))
    read += _drain(reading)[0]
    assert len(feed) == 1, "the subscriber that did not read is dropped"
    heights, ended = _drain(lagging)
    assert heights == list(range(1, FEED_BUFFER_BLOCKS + 1))
    assert ended, "the dropped subscriber's channel ends after what was buffered"
    with pytest.raises(trio.EndOfChannel):
        await lagging.receive()
    # The subscriber that kept up got everything, the event that overflowed the other included.
    assert read == list(range(1, FEED_BUFFER_BLOCKS + 2))
    feed.publish(_event(FEED_BUFFER_BLOCKS + 2))
    assert _drain(reading) == ([FEED_BUFFER_BLOCKS + 2], False)


async def test_a_closed_receiver_is_dropped_on_the_next_publish() -> None:
    feed = CommitFeed(max_subscribers=4)
    gone = feed.subscribe()
    staying = feed.subscribe()
    gone.close()
    assert len(feed) == 2, "nothing notices the close until a publish"
    feed.publish(_event(1))
    assert len(feed) == 1
    assert _drain(staying) == ([1], False)


async def test_the_subscriber_bound() -> None:
    feed = CommitFeed(max_subscribers=2)
    first = feed.subscribe()
    feed.subscribe()
    with pytest.raises(TooManyWaiting):
        feed.subscribe()
    assert len(feed) == 2
    first.close()
    feed.publish(_event(1))
    assert len(feed) == 1
    third = feed.subscribe()  # the dropped subscriber's place is free again
    feed.publish(_event(2))
    assert _drain(third) == ([2], False)
