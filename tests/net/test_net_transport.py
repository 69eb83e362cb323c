"""The trio transport on 127.0.0.1 (and on memory streams with the autojump clock): connectivity,
one connection per pair, reconnects, bounded queues, and attackers that must not disturb honest peers."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from net_helpers import (
    CHAIN_ID,
    LOCALHOST,
    RawPeer,
    fully_connected,
    make_keys,
    make_transport,
    one_connection_per_pair,
    raw_dial,
    read_until_closed,
    running_cluster,
    start_node,
    stranger_key,
    wait_until,
)

from crypto.keys import PrivateKey
from net.frames import encode_plain_frame
from net.handshake import DialerHandshake
from net.transport import Transport

KEYS = make_keys(4)


async def receive_from(transport: Transport, sender: int, count: int, timeout_s: float = 10.0) -> list[bytes]:
    """The next `count` payloads from `sender` (items from other peers are skipped)."""
    got: list[bytes] = []
    with trio.fail_after(timeout_s):
        while len(got) < count:
            peer, payload = await transport.incoming.receive()
            if peer == sender:
                got.append(payload)
    return got


async def honest_traffic(a: Transport, b: Transport, rounds: int, pause_s: float = 0.0) -> None:
    """`rounds` messages each way between a and b, all delivered in order."""
    for i in range(rounds):
        assert a.send(b.me, f"a{i}".encode())
        assert b.send(a.me, f"b{i}".encode())
        assert await receive_from(b, a.me, 1) == [f"a{i}".encode()]
        assert await receive_from(a, b.me, 1) == [f"b{i}".encode()]
        if pause_s:
            await trio.sleep(pause_s)


# --- real transports --------------------------------------------------------------------------


async def test_four_transports_connect_exchange_and_keep_one_connection_per_pair() -> None:
    async with running_cluster(KEYS) as (_, nodes):
        await wait_until(lambda: fully_connected(nodes))
        await wait_until(lambda: one_connection_per_pair(nodes))
        for i, node in nodes.items():
            for j in nodes:
                if i != j:
                    assert node.transport.send(j, f"{i}->{j}".encode())
        for j, node in nodes.items():
            got = set()
            with trio.fail_after(10):
                for _ in range(len(nodes) - 1):
                    got.add(await node.transport.incoming.receive())
            assert got == {(i, f"{i}->{j}".encode()) for i in nodes if i != j}
        node0 = nodes[0].transport
        node0.broadcast(b"to all")
        for j in (1, 2, 3):
            assert await receive_from(nodes[j].transport, 0, 1) == [b"to all"]
        assert one_connection_per_pair(nodes)
        stats = node0.stats()
        assert stats["connected_peers"] == [1, 2, 3]
        assert stats["dropped_outgoing"] == {1: 0, 2: 0, 3: 0}
        assert stats["refused_handshakes"] == {}


async def test_a_stopped_transport_is_redialed_after_restart_and_gets_what_was_queued() -> None:
    keys = KEYS[:3]
    async with running_cluster(keys) as (nursery, nodes):
        await wait_until(lambda: fully_connected(nodes))
        port2 = nodes[2].transport.listen_port
        await nodes[2].stop()
        await wait_until(
            lambda: 2 not in nodes[0].transport.connected_peers | nodes[1].transport.connected_peers
        )
        # Sent while 2 is down: waits in the bounded per-peer queue.
        assert nodes[0].transport.send(2, b"while you were away")
        restarted = make_transport(2, keys, port=port2)
        restarted.set_addresses({i: (LOCALHOST, nodes[i].transport.listen_port) for i in (0, 1)})
        nodes[2] = await start_node(nursery, restarted)
        await wait_until(lambda: fully_connected(nodes))
        assert await receive_from(restarted, 0, 1) == [b"while you were away"]
        await honest_traffic(nodes[1].transport, restarted, 3)
        await honest_traffic(restarted, nodes[0].transport, 3)
        await wait_until(lambda: one_connection_per_pair(nodes))


async def test_transports_started_before_addresses_are_known_wait_then_connect() -> None:
    keys = KEYS[:2]
    async with trio.open_nursery() as nursery:
        a = await start_node(nursery, make_transport(0, keys))
        b = await start_node(nursery, make_transport(1, keys))
        with trio.move_on_after(0.2):
            await wait_until(lambda: bool(a.transport.connected_peers))
        assert a.transport.connected_peers == set()
        # Only one side learns the other's address: its dial alone connects the pair.
        b.transport.set_addresses({0: (LOCALHOST, a.transport.listen_port)})
        await wait_until(lambda: a.transport.connected_peers == {1} and b.transport.connected_peers == {0})
        await honest_traffic(a.transport, b.transport, 2)
        nursery.cancel_scope.cancel()


async def test_send_never_blocks_and_counts_drops_when_the_queue_is_full() -> None:
    transport = make_transport(0, KEYS, queue_frames=4)
    with trio.fail_after(1):
        assert [transport.send(1, b"x") for _ in range(6)] == [True] * 4 + [False] * 2
        transport.broadcast(b"y")
    stats = transport.stats()
    assert stats["dropped_outgoing"] == {1: 3, 2: 0, 3: 0}
    assert stats["queued_outgoing"] == {1: 4, 2: 1, 3: 1}


async def test_send_refuses_caller_mistakes() -> None:
    transport = make_transport(0, KEYS, max_frame_bytes=100)
    with pytest.raises(ValueError):
        transport.send(0, b"to myself")
    with pytest.raises(ValueError):
        transport.send(7, b"to nobody")
    with pytest.raises(ValueError):
        transport.send(1, b"")
    with pytest.raises(ValueError):
        transport.send(1, b"x" * 85)
    assert transport.send(1, b"x" * 84)
    with pytest.raises(ValueError):
        Transport(0, KEYS[1], CHAIN_ID, [k.public_key for k in KEYS], {0: (LOCALHOST, 0)})


async def test_a_full_incoming_channel_drops_and_counts_instead_of_blocking() -> None:
    keys = KEYS[:2]
    async with running_cluster(keys, incoming_frames=2, incoming_wait_s=0.01) as (_, nodes):
        sender, receiver = nodes[0].transport, nodes[1].transport
        await wait_until(lambda: fully_connected(nodes))
        for i in range(10):
            assert sender.send(1, b"%d" % i)
        await wait_until(lambda: receiver.stats()["dropped_incoming"][0] == 8)
        assert [receiver.incoming.receive_nowait() for _ in range(2)] == [(0, b"0"), (0, b"1")]
        # Nothing is stuck: traffic flows again once the consumer reads.
        await honest_traffic(sender, receiver, 2)


# --- attackers against a pair of honest transports ---------------------------------------------

Attack = Callable[[int], Awaitable[None]]


async def attack_unknown_key(port: int) -> None:
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        await stream.send_all(DialerHandshake(stranger_key(), CHAIN_ID, KEYS[0].public_key).start())
        await read_until_closed(stream)


async def attack_wrong_chain_id(port: int) -> None:
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        await stream.send_all(DialerHandshake(KEYS[2], "evil-chain", KEYS[0].public_key).start())
        await read_until_closed(stream)


async def attack_low_order_point(port: int) -> None:
    hello_frame = DialerHandshake(KEYS[2], CHAIN_ID, KEYS[0].public_key).start()
    forged = hello_frame[:-32] + bytes(32)
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        await stream.send_all(forged)
        await read_until_closed(stream)


async def attack_impersonation(port: int) -> None:
    """Presents validator 2's public key, then signs FINISH with a key it actually has."""
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        handshake = DialerHandshake(KEYS[2], CHAIN_ID, KEYS[0].public_key)
        await stream.send_all(handshake.start())
        await stream.receive_some(4096)
        await stream.send_all(encode_plain_frame(b"\x03" + stranger_key().sign(b"anything")))
        await read_until_closed(stream)


async def attack_replay(port: int) -> None:
    """Records a real session of validator 2, then replays its HELLO and FINISH on a new one."""
    recorded: list[bytes] = []
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        handshake = DialerHandshake(KEYS[2], CHAIN_ID, KEYS[0].public_key)
        recorded.append(handshake.start())
        await stream.send_all(recorded[0])
        with trio.fail_after(5):
            while handshake.result is None:
                recorded.append(handshake.feed(await stream.receive_some(4096)))
        await stream.send_all(recorded[-1])
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        await stream.send_all(recorded[0])
        await stream.receive_some(4096)
        await stream.send_all(recorded[-1])
        await read_until_closed(stream)


async def attack_silent(port: int) -> None:
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    async with stream:
        await read_until_closed(stream, timeout_s=5)


async def attack_truncated_frame(port: int) -> None:
    stream, result = await raw_dial(port, KEYS[2], KEYS[0])
    async with stream:
        frame = RawPeer(result).sealer.seal(b"half a vote")
        await stream.send_all(frame[:-5])
        await stream.send_eof()
        await read_until_closed(stream)


async def attack_flipped_bit(port: int) -> None:
    stream, result = await raw_dial(port, KEYS[2], KEYS[0])
    async with stream:
        frame = bytearray(RawPeer(result).sealer.seal(b"a vote for block 7"))
        frame[10] ^= 0x01
        await stream.send_all(bytes(frame))
        await read_until_closed(stream)


async def attack_oversized_frame(port: int) -> None:
    stream, _ = await raw_dial(port, KEYS[2], KEYS[0])
    async with stream:
        await stream.send_all((0xFFFFFFF0).to_bytes(4, "big"))
        await read_until_closed(stream)


ATTACKS: dict[str, tuple[Attack, str, str]] = {
    # name: (attack, log event, reason logged)
    "unknown_key": (attack_unknown_key, "handshake_refused", 'reason="unknown validator key"'),
    "wrong_chain_id": (attack_wrong_chain_id, "handshake_refused", "wrong chain id 'evil-chain'"),
    "low_order_point": (attack_low_order_point, "handshake_refused", 'reason="low-order X25519 point"'),
    "impersonation": (attack_impersonation, "handshake_refused", 'reason="bad handshake signature"'),
    "replay": (attack_replay, "handshake_refused", 'reason="bad handshake signature"'),
    "silent": (attack_silent, "handshake_refused", "handshake not finished within 0.5 s"),
    "truncated_frame": (attack_truncated_frame, "frame_refused", "stream ended inside a frame"),
    "flipped_bit": (attack_flipped_bit, "frame_refused", "failed authentication"),
    "oversized_frame": (attack_oversized_frame, "frame_refused", "exceeds the cap"),
}


async def while_honest_traffic_flows(a: Transport, b: Transport, misbehave: Awaitable[None]) -> int:
    """Run `misbehave` to completion while a and b exchange messages; return the rounds completed."""
    rounds = 0
    done = trio.Event()

    async def traffic() -> None:
        nonlocal rounds
        # Stops between rounds, never inside one, so no reply is left unread for the caller.
        for _ in range(100_000):
            if done.is_set():
                return
            await honest_traffic(a, b, 1)
            rounds += 1
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(traffic)
        await misbehave
        done.set()
    return rounds


def honest_link_kept(caplog: pytest.LogCaptureFixture, since: int, before: object, after: object) -> bool:
    """Validator 0's link to 1 is the same one, or was replaced only by the tie-break that keeps
    the connection dialed by the lower index (both dial at start; a late dial by 0 may land after
    1's was already up). Never dropped for any other reason."""
    records = caplog.records[since:]
    assert isinstance(before, dict)
    # Only the link that was up: the line of one that lost the start-up tie-break just before
    # `before` was read may be written after it.
    mine = f"event=peer_disconnected me=0 peer=1 remote={before['remote']} "
    disconnects = [r.message for r in records if mine in r.message]
    assert isinstance(after, dict)
    # The same link: the same sockets since the same moment (its byte counters move on).
    same = ("dialed_by", "local", "remote", "connected_at")
    if all(after[k] == before[k] for k in same):
        return not disconnects
    return all("replaced by a connection dialed by 0" in line for line in disconnects) and bool(disconnects)


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_attack_is_refused_and_honest_peers_keep_talking(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    attack, event, reason = ATTACKS[name]
    caplog.set_level(logging.INFO, logger="bft.net")

    def logged() -> list[str]:
        return [
            r.message for r in caplog.records if f"event={event} me=0 " in r.message and reason in r.message
        ]

    # Validators 0 and 1 are honest; validator 2's key is the attacker's where it needs one.
    async with running_cluster(KEYS[:3], running=[0, 1], handshake_timeout_s=0.5) as (_, nodes):
        a, b = nodes[0].transport, nodes[1].transport
        await wait_until(lambda: fully_connected(nodes))
        before, since = a.stats()["connections"][1], len(caplog.records)
        assert await while_honest_traffic_flows(a, b, attack(a.listen_port)) >= 1
        await honest_traffic(a, b, 3)
        await wait_until(lambda: bool(logged()))
        # The honest connection was never dropped: at most replaced by the start-up tie-break.
        assert honest_link_kept(caplog, since, before, a.stats()["connections"][1])
        assert "remote=127.0.0.1:" in logged()[0]
        assert 2 not in a.connected_peers
        await wait_until(lambda: a.stats()["pending_handshakes"] == 0)


async def test_a_stranger_with_200_connections_of_random_bytes_does_not_disturb_honest_traffic(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bft.net")
    async with running_cluster(KEYS[:2], handshake_timeout_s=1.0, max_pending_handshakes=16) as (_, nodes):
        a, b = nodes[0].transport, nodes[1].transport
        await wait_until(lambda: fully_connected(nodes))
        before, since = a.stats()["connections"][1], len(caplog.records)

        async def stranger(seed: int) -> None:
            garbage = os.urandom(16 + seed % 200)
            if seed % 2:
                # A plausible handshake length, then never enough bytes: holds a pending slot.
                garbage = (1000).to_bytes(4, "big") + garbage
            stream = await trio.open_tcp_stream(LOCALHOST, a.listen_port)
            async with stream:
                try:
                    await stream.send_all(garbage)
                    await read_until_closed(stream, timeout_s=5)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

        async def flood() -> None:
            async with trio.open_nursery() as nursery:
                for seed in range(200):
                    nursery.start_soon(stranger, seed)

        assert await while_honest_traffic_flows(a, b, flood()) >= 10
        await honest_traffic(a, b, 5)
        await wait_until(lambda: sum(a.stats()["refused_handshakes"].values()) == 200)
        stats = a.stats()
        assert honest_link_kept(caplog, since, before, stats["connections"][1])
        assert stats["connected_peers"] == [1]
        # Beyond 16 pending, each newcomer evicted the oldest silent one instead of being refused.
        assert stats["refused_handshakes"]["evicted"] > 0
        assert stats["refused_handshakes"]["timeout"] <= 16
        assert stats["pending_handshakes"] == 0


# --- memory streams and the autojump clock -------------------------------------------------------


async def _authenticate_as_3(client: trio.abc.Stream) -> RawPeer:
    """Run validator 3's side of the handshake with validator 0 over `client`; its sealer."""
    handshake = DialerHandshake(KEYS[3], CHAIN_ID, KEYS[0].public_key)
    await client.send_all(handshake.start())
    reply = b""
    while handshake.result is None:
        reply = handshake.feed(await client.receive_some(4096))
    await client.send_all(reply)
    return RawPeer(handshake.result)


async def test_an_authenticated_peer_over_a_memory_stream(autojump_clock: trio.testing.MockClock) -> None:
    transport = make_transport(0, KEYS)
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.handle_inbound, server, "peer-3")
            peer = await _authenticate_as_3(client)
            await client.send_all(peer.sealer.seal(b"hello from 3"))
            assert await transport.incoming.receive() == (3, b"hello from 3")
            assert transport.connected_peers == {3}
            assert transport.send(3, b"hello back")
            received: list[bytes] = []
            while not received:
                received += [p for p in peer.opener.feed(await client.receive_some(4096)) if p]
            assert received == [b"hello back"]
            # Idle: keepalives flow, and a peer that goes silent is dropped after three periods.
            await trio.sleep(20)
            assert transport.connected_peers == set()
        assert transport.stats()["live_connections"] == 0


def test_private_key_of_another_validator_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="does not belong"):
        Transport(1, PrivateKey.generate(), CHAIN_ID, [k.public_key for k in KEYS], {1: (LOCALHOST, 0)})


async def test_frame_refusals_of_one_peer_are_thinned_and_counted_by_their_disconnects(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Validator 3 reconnects 50 times, each time with a forged frame: one line per window."""
    caplog.set_level(logging.INFO, logger="bft.net")
    transport = make_transport(0, KEYS)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for k in range(50):
                client, server = trio.testing.memory_stream_pair()
                nursery.start_soon(transport.handle_inbound, server, f"10.0.0.3:{4000 + k}")
                handshake = DialerHandshake(KEYS[3], CHAIN_ID, KEYS[0].public_key)
                await client.send_all(handshake.start())
                finish = b""
                while handshake.result is None:
                    finish = handshake.feed(await client.receive_some(4096))
                frame = bytearray(RawPeer(handshake.result).sealer.seal(b"a vote"))
                frame[-1] ^= 0x01
                await client.send_all(finish + bytes(frame))
                await read_until_closed(client)
    refused = [r.message for r in caplog.records if "event=frame_refused me=0 peer=3 " in r.message]
    disconnects = [r.message for r in caplog.records if "event=peer_disconnected" in r.message]
    assert len(refused) == 1 and "failed authentication" in refused[0]
    assert len(disconnects) == 50 and all("reason=" in line and "bad frame" in line for line in disconnects)


async def test_stats_count_each_peers_wire_bytes_and_the_age_of_its_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = make_transport(0, KEYS)
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.handle_inbound, server, "peer-3")
            peer = await _authenticate_as_3(client)
            frame = peer.sealer.seal(b"x" * 1000)
            await client.send_all(frame)
            assert await transport.incoming.receive() == (3, b"x" * 1000)
            connected_at = transport.stats()["connections"][3]["connected_at"]
            assert connected_at <= trio.current_time()
            assert transport.send(3, b"y" * 500)
            sent = 0
            while sent < 500:
                data = await client.receive_some(4096)
                sent += len(data)
                assert [p for p in peer.opener.feed(data) if p] in ([], [b"y" * 500])
            await trio.sleep(2)
            stats = transport.stats()
            # Only frames count (the handshake does not): our one frame in, its one frame out.
            assert stats["connections"][3]["bytes_received"] == len(frame)
            assert stats["connections"][3]["bytes_sent"] == sent
            assert stats["bytes_received"][3] == len(frame) and stats["bytes_sent"][3] == sent
            assert stats["bytes_sent"][1] == stats["bytes_received"][1] == 0
            assert stats["connections"][3]["connected_at"] == connected_at
            nursery.cancel_scope.cancel()
    # The totals outlive the connection; its age is gone with it.
    stats = transport.stats()
    assert stats["connections"] == {}
    assert stats["bytes_received"][3] == len(frame) and stats["bytes_sent"][3] == sent
