"""The incoming channel's byte bound per peer: a peer sending large frames faster than the node
takes them holds at most its bound, waits (back-pressure), then drops; other peers are unaffected,
and what the consumer takes makes room again."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from net.incoming import IncomingChannel

MIB = 1024 * 1024
FRAME = bytes(4 * MIB)


async def test_a_peer_holds_at_most_its_bytes_and_others_are_unaffected(
    autojump_clock: trio.abc.Clock,
) -> None:
    channel = IncomingChannel(max_frames=1024, peer_bytes=8 * MIB)
    with trio.fail_after(60):
        added = [await channel.put(3, FRAME, wait_s=0.1) for _ in range(100)]
        assert added.count(True) == 2 and channel.waiting_bytes(3) == 8 * MIB
        # Another peer's frames still go in, and the consumer gets them in order.
        assert await channel.put(1, b"vote", wait_s=0.1)
        assert [(await channel.receive())[0] for _ in range(3)] == [3, 3, 1]
        assert channel.waiting_bytes(3) == 0 and channel.waiting_bytes(1) == 0


async def test_a_waiting_reader_gets_in_once_the_consumer_takes_a_frame(
    autojump_clock: trio.abc.Clock,
) -> None:
    channel = IncomingChannel(max_frames=1024, peer_bytes=8 * MIB)
    results: list[bool] = []
    with trio.fail_after(60):
        assert await channel.put(3, FRAME, 0.1) and await channel.put(3, FRAME, 0.1)
        async with trio.open_nursery() as nursery:

            async def third() -> None:
                results.append(await channel.put(3, FRAME, wait_s=10.0))

            nursery.start_soon(third)
            await trio.sleep(1.0)
            assert results == []  # waiting: back-pressure, not loss
            await channel.receive()
        assert results == [True] and channel.waiting_bytes(3) == 8 * MIB


async def test_one_frame_larger_than_the_bound_still_gets_in_alone(autojump_clock: trio.abc.Clock) -> None:
    channel = IncomingChannel(max_frames=8, peer_bytes=MIB)
    with trio.fail_after(60):
        assert await channel.put(2, FRAME, 0.1)
        assert not await channel.put(2, b"x", 0.1)
        assert channel.receive_nowait() == (2, FRAME)
        assert await channel.put(2, b"x", 0.1)


async def test_a_full_frame_bound_times_out_and_uncounts(autojump_clock: trio.abc.Clock) -> None:
    channel = IncomingChannel(max_frames=1, peer_bytes=8 * MIB)
    with trio.fail_after(60):
        assert await channel.put(1, b"a", 0.1)
        assert not await channel.put(2, b"b", 0.1)
        assert channel.waiting_bytes(2) == 0


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        IncomingChannel(0, 1)
    with pytest.raises(ValueError):
        IncomingChannel(1, 0)
