"""Outgoing queues bounded in frames and bytes and aged out: the `OutgoingQueue` rules alone, then
the transport with a peer that does not read, a peer that is gone, and one that comes back."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from net_helpers import CHAIN_ID, LOCALHOST, RawPeer, make_keys, make_transport, start_node

from net.frames import TAG_BYTES
from net.handshake import DialerHandshake
from net.outqueue import OutgoingQueue
from net.transport import DEFAULT_QUEUE_BYTES, Transport

KEYS = make_keys(4)
MIB = 1024 * 1024


def test_the_queue_refuses_what_exceeds_its_frames_or_bytes() -> None:
    queue = OutgoingQueue(max_frames=3, max_bytes=1000, max_age_s=10.0)
    assert [queue.put(b"x" * 400, 0.0), queue.put(b"y" * 400, 0.0), queue.put(b"z" * 201, 0.0)] == [
        True,
        True,
        False,
    ]
    assert queue.put(b"z" * 200, 0.0) and (len(queue), queue.size_bytes) == (3, 1000)
    assert not queue.put(b"w", 0.0)
    assert queue.take(1.0, max_bytes=800) == [b"x" * 400, b"y" * 400]
    assert queue.size_bytes == 200
    # At least one payload per take, however large against the batch size.
    assert queue.take(1.0, max_bytes=1) == [b"z" * 200]
    assert (len(queue), queue.size_bytes, queue.expired) == (0, 0, 0)


def test_the_queue_never_hands_out_a_payload_older_than_its_age() -> None:
    queue = OutgoingQueue(max_frames=100, max_bytes=10_000, max_age_s=10.0)
    for t in (0.0, 1.0, 2.0):
        assert queue.put(b"%d" % t, t)
    assert queue.expire(10.0) == 0
    assert queue.expire(11.5) == 2 and queue.oldest_queued_at() == 2.0
    assert queue.put(b"new", 12.5)
    assert queue.take(12.5, max_bytes=10_000) == [b"new"]
    assert (queue.expired, queue.size_bytes) == (3, 0)
    # A full queue of stale payloads makes room for a fresh one instead of refusing it.
    full = OutgoingQueue(max_frames=2, max_bytes=10_000, max_age_s=1.0)
    assert full.put(b"a", 0.0) and full.put(b"b", 0.0) and not full.put(b"c", 0.5)
    assert full.put(b"d", 2.0) and full.take(2.0, 100) == [b"d"] and full.expired == 2


async def test_send_bounds_each_queue_in_bytes_counts_drops_and_reports_queued_bytes() -> None:
    transport = make_transport(0, KEYS, max_frame_bytes=400 + TAG_BYTES, queue_bytes=1000)
    with trio.fail_after(1):
        assert [transport.send(1, b"x" * 400) for _ in range(3)] == [True, True, False]
        assert transport.send(1, b"y" * 200)
        assert not transport.send(1, b"z")
        transport.broadcast(b"b" * 10)
    assert transport.queued_bytes(1) == 1000 and transport.queued_bytes(2) == 10
    stats = transport.stats()
    assert stats["queued_outgoing_bytes"] == {1: 1000, 2: 10, 3: 10}
    assert stats["queued_outgoing"] == {1: 3, 2: 1, 3: 1}
    assert stats["dropped_outgoing"] == {1: 3, 2: 0, 3: 0}
    assert stats["expired_outgoing"] == {1: 0, 2: 0, 3: 0}
    with pytest.raises(ValueError, match="at least one largest payload"):
        make_transport(0, KEYS, max_frame_bytes=400 + TAG_BYTES, queue_bytes=399)
    with pytest.raises(ValueError):
        transport.queued_bytes(0)


async def test_the_default_queue_holds_three_largest_payloads_for_a_peer_that_is_away() -> None:
    transport = make_transport(0, KEYS)
    big = b"\x00" * transport.max_payload_bytes
    assert DEFAULT_QUEUE_BYTES == 16 * MIB
    assert [transport.send(1, big) for _ in range(5)] == [True] * 3 + [False] * 2
    assert transport.queued_bytes(1) == 3 * len(big) <= DEFAULT_QUEUE_BYTES
    assert transport.send(1, b"a vote still fits")


async def authenticated_peer(
    nursery: trio.Nursery, transport: Transport, key_index: int, *, lockstep: bool
) -> tuple[trio.abc.Stream, RawPeer]:
    """Validator `key_index` dialed in over a memory stream; with `lockstep`, what the transport
    writes waits until this side reads it (a peer that stops reading stalls the writer)."""
    client, server = trio.testing.lockstep_stream_pair() if lockstep else trio.testing.memory_stream_pair()
    nursery.start_soon(transport.handle_inbound, server, f"10.0.0.{key_index}:4000")
    handshake = DialerHandshake(KEYS[key_index], CHAIN_ID, KEYS[0].public_key)
    await client.send_all(handshake.start())
    finish = b""
    while handshake.result is None:
        finish = handshake.feed(await client.receive_some(4096))
    await client.send_all(finish)
    return client, RawPeer(handshake.result)


async def payloads_read(client: trio.abc.Stream, peer: RawPeer, count: int) -> list[bytes]:
    """The next `count` non-keepalive payloads the transport wrote to this peer."""
    got: list[bytes] = []
    while len(got) < count:
        data = await client.receive_some(1 << 20)
        assert data, "connection closed"
        got += [p for p in peer.opener.feed(data) if p]
    return got


async def test_a_peer_that_does_not_read_costs_at_most_queue_bytes_released_after_queue_age(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The attack that made a node hold 3.2 GB: answers of 4 MiB queued for a validator that
    keeps its connection but stops reading them."""
    transport = make_transport(0, KEYS, queue_age_s=10.0, keepalive_s=100.0)
    answer = b"\x01" * transport.max_payload_bytes
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            # Running, for the sweep: the writer is stuck, so only the sweep can release the queue.
            await start_node(nursery, transport)
            await authenticated_peer(nursery, transport, 2, lockstep=True)
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connected_peers == {2}
            peaks = []
            for _ in range(250):
                transport.send(2, answer)
                await trio.sleep(0.01)
                peaks.append(transport.queued_bytes(2))
            assert max(peaks) <= DEFAULT_QUEUE_BYTES
            stats = transport.stats()
            # One answer is stuck in the writer; the queue is full; the rest were dropped.
            assert stats["queued_outgoing"][2] == 3 and stats["dropped_outgoing"][2] == 250 - 1 - 3
            await trio.sleep(10.0 + 1.5)
            assert transport.queued_bytes(2) == 0
            assert transport.stats()["expired_outgoing"][2] == 3
            assert transport.connected_peers == {2}
            nursery.cancel_scope.cancel()


async def test_what_waits_for_a_peer_that_is_gone_is_aged_out(autojump_clock: trio.testing.MockClock) -> None:
    transport = make_transport(0, KEYS, queue_age_s=10.0)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            # Running (the sweep is part of run), but peer 1's address is unknown: never connected.
            node = await start_node(nursery, transport)
            for k in range(5):
                assert transport.send(1, b"early %d" % k)
            # Off the sweep's one-second beat, so that no check coincides with a sweep.
            await trio.sleep(5.25)
            assert transport.stats()["queued_outgoing"][1] == 5
            assert transport.send(1, b"later")
            await trio.sleep(6.0)
            stats = transport.stats()
            assert (stats["queued_outgoing"][1], stats["expired_outgoing"][1]) == (1, 5)
            assert stats["queued_outgoing_bytes"][1] == len(b"later")
            await trio.sleep(5.5)
            assert transport.queued_bytes(1) == 0 and transport.stats()["expired_outgoing"][1] == 6
            await node.stop()


async def test_stale_payloads_are_not_sent_when_the_peer_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = make_transport(0, KEYS, queue_age_s=10.0)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            assert transport.send(3, b"stale")
            await trio.sleep(6)
            assert transport.send(3, b"fresh")
            await trio.sleep(5)
            # No sweep runs here (the transport is not running): only the writer can drop it.
            assert transport.stats()["queued_outgoing"][3] == 2
            client, peer = await authenticated_peer(nursery, transport, 3, lockstep=False)
            assert await payloads_read(client, peer, 1) == [b"fresh"]
            assert transport.send(3, b"next")
            assert await payloads_read(client, peer, 1) == [b"next"]
            assert transport.stats()["expired_outgoing"][3] == 1
            nursery.cancel_scope.cancel()


async def test_a_peer_that_comes_up_on_real_sockets_gets_what_is_fresh_only() -> None:
    """Both ends on 127.0.0.1 (real time, so short ages): what was queued for a peer that was
    not up is dropped once older than queue_age_s; what was queued recently is delivered."""
    keys = KEYS[:2]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            a = await start_node(nursery, make_transport(0, keys, queue_age_s=1.0))
            assert a.transport.send(1, b"sent long before 1 came up")
            await trio.sleep(1.2)
            assert a.transport.send(1, b"sent just before 1 came up")
            b = await start_node(nursery, make_transport(1, keys, queue_age_s=1.0))
            a.transport.set_addresses({1: (LOCALHOST, b.transport.listen_port)})
            with trio.fail_after(10):
                peer, payload = await b.transport.incoming.receive()
            assert (peer, payload) == (0, b"sent just before 1 came up")
            assert a.transport.stats()["expired_outgoing"][1] == 1
            nursery.cancel_scope.cancel()
