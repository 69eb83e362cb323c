"""Pending (unauthenticated) handshakes on memory streams with the autojump clock: strangers can
hold a slot for about a second at most, one address only its share of the table, and a newcomer
evicts a silent stranger instead of being refused, so an honest dialer always gets in."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from net_helpers import CHAIN_ID, make_keys, make_transport

from crypto.keys import PrivateKey
from net.handshake import DialerHandshake
from net.transport import Transport, _host_of

KEYS = make_keys(4)


class Stranger:
    """An inbound connection that the test drives from the client side."""

    def __init__(self, nursery: trio.Nursery, transport: Transport, remote: str) -> None:
        self.client, server = trio.testing.memory_stream_pair()
        self.remote = remote
        nursery.start_soon(transport.handle_inbound, server, remote)

    async def closed(self) -> bool:
        """Whether the transport has closed its end (reads EOF; never waits beyond a moment)."""
        with trio.move_on_after(0.001):
            return await self.client.receive_some(4096) == b""
        return False


async def admitted(nursery: trio.Nursery, transport: Transport, remotes: list[str]) -> list[Stranger]:
    """Strangers connecting one after the other (trio runs tasks started together in random
    order, and the table's order is the order they were admitted in)."""
    strangers = []
    for remote in remotes:
        strangers.append(Stranger(nursery, transport, remote))
        await trio.testing.wait_all_tasks_blocked()
    return strangers


async def honest_dial(
    nursery: trio.Nursery, transport: Transport, key: PrivateKey, remote: str, finish_after_s: float = 0.0
) -> Stranger:
    """Complete a handshake as validator `key`, the way our own dial loop does: HELLO at once."""
    conn = Stranger(nursery, transport, remote)
    handshake = DialerHandshake(key, CHAIN_ID, KEYS[0].public_key)
    await conn.client.send_all(handshake.start())
    finish = b""
    while handshake.result is None:
        data = await conn.client.receive_some(4096)
        assert data, "the transport closed an honest dialer's connection"
        finish = handshake.feed(data)
    await trio.sleep(finish_after_s)
    await conn.client.send_all(finish)
    return conn


async def hello_only(nursery: trio.Nursery, transport: Transport, remote: str) -> Stranger:
    """A stranger that claims validator 2's (public) key in a valid HELLO, then never finishes."""
    conn = Stranger(nursery, transport, remote)
    await conn.client.send_all(DialerHandshake(KEYS[2], CHAIN_ID, KEYS[0].public_key).start())
    assert await conn.client.receive_some(4096), "no REPLY to a valid HELLO"
    return conn


async def settle(transport: Transport, pending: int) -> None:
    """Let every started handle_inbound run up to its first wait (no virtual time passes)."""
    await trio.testing.wait_all_tasks_blocked()
    assert transport.stats()["pending_handshakes"] == pending


def test_the_per_address_cap_is_keyed_by_host_without_port() -> None:
    assert _host_of("127.0.0.1:5555") == "127.0.0.1"
    assert _host_of("[::1]:5555") == "::1"
    assert _host_of("stranger-3") == "stranger-3"
    assert _host_of("::1") == "::1"


async def test_a_full_table_of_silent_strangers_evicts_the_oldest_and_the_honest_dialer_gets_in(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bft.net")
    transport = make_transport(0, KEYS, max_pending_handshakes=8)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            strangers = await admitted(nursery, transport, [f"10.0.0.{k}:4000" for k in range(8)])
            await settle(transport, 8)
            await honest_dial(nursery, transport, KEYS[3], "10.0.1.1:4000")
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connected_peers == {3}
            assert [await s.closed() for s in strangers] == [True] + [False] * 7
            stats = transport.stats()
            assert stats["refused_handshakes"] == {"evicted": 1}
            assert stats["pending_handshakes"] == 7
            nursery.cancel_scope.cancel()
    [line] = [r.message for r in caplog.records if "kind=evicted" in r.message]
    assert "remote=10.0.0.0:4000" in line and "8 pending handshakes" in line


async def test_a_silent_stranger_is_evicted_before_older_ones_that_spoke(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = make_transport(0, KEYS, max_pending_handshakes=4)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            talkers = [await hello_only(nursery, transport, f"10.0.0.{k}:4000") for k in range(3)]
            silent = Stranger(nursery, transport, "10.0.0.9:4000")
            await settle(transport, 4)
            newcomer = Stranger(nursery, transport, "10.0.0.10:4000")
            await settle(transport, 4)
            assert await silent.closed()
            assert not any([await t.closed() for t in talkers]) and not await newcomer.closed()
            # With no silent one left, the oldest of all goes.
            Stranger(nursery, transport, "10.0.0.11:4000")
            await settle(transport, 4)
            assert await newcomer.closed()
            Stranger(nursery, transport, "10.0.0.12:4000")
            await settle(transport, 4)
            assert [await t.closed() for t in talkers] == [False, False, False]
            assert transport.stats()["refused_handshakes"] == {"evicted": 3}
            nursery.cancel_scope.cancel()


async def test_one_address_holds_only_its_share_and_an_honest_peer_on_it_still_gets_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = make_transport(0, KEYS, max_pending_handshakes=64, max_pending_per_host=4)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            others = await admitted(nursery, transport, [f"10.0.0.2:{5000 + k}" for k in range(3)])
            flood = await admitted(nursery, transport, [f"10.0.0.1:{6000 + k}" for k in range(100)])
            await settle(transport, 3 + 4)
            # Each newcomer from 10.0.0.1 evicted that address's own oldest: the last 4 remain.
            assert [await s.closed() for s in flood] == [True] * 96 + [False] * 4
            assert not any([await s.closed() for s in others])
            # A validator sharing the flooded address (as peers on 127.0.0.1 do) still gets in.
            await honest_dial(nursery, transport, KEYS[1], "10.0.0.1:7000")
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connected_peers == {1}
            assert transport.stats()["refused_handshakes"] == {"evicted": 97}
            assert transport.stats()["pending_handshakes"] == 3 + 3
            nursery.cancel_scope.cancel()


async def test_an_honest_dialer_completes_while_a_flood_keeps_evicting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """2,000 strangers arrive from three addresses, interleaved with every step of the honest
    handshake: its HELLO makes it a connection that spoke, which silent newcomers never evict."""
    transport = make_transport(0, KEYS, max_pending_handshakes=16, max_pending_per_host=8)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                for k in range(2000):
                    Stranger(nursery, transport, f"127.0.0.{1 + k % 3}:{10000 + k}")
                    await trio.sleep(0)

            nursery.start_soon(flood)
            for _ in range(50):
                await trio.sleep(0)
            await honest_dial(nursery, transport, KEYS[2], "127.0.0.1:9999")
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connected_peers == {2}
            stats = transport.stats()
            assert stats["pending_handshakes"] <= 16
            assert stats["refused_handshakes"]["evicted"] >= 2000 - 16
            nursery.cancel_scope.cancel()


async def test_a_stranger_gets_one_second_for_its_first_message_and_the_whole_handshake_its_deadline(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bft.net")
    transport = make_transport(0, KEYS, handshake_timeout_s=5.0, first_bytes_timeout_s=1.0)
    start = trio.current_time()
    closed_at: dict[str, float] = {}

    async def watch(conn: Stranger) -> None:
        while await conn.client.receive_some(4096):
            pass
        closed_at[conn.remote] = trio.current_time() - start

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            silent = Stranger(nursery, transport, "10.0.0.1:1")
            nursery.start_soon(watch, silent)
            # Most of a HELLO frame, never the rest: still not one complete message.
            partial = Stranger(nursery, transport, "10.0.0.2:1")
            await partial.client.send_all(DialerHandshake(KEYS[2], CHAIN_ID, KEYS[0].public_key).start()[:-1])
            nursery.start_soon(watch, partial)
            talker = await hello_only(nursery, transport, "10.0.0.3:1")
            nursery.start_soon(watch, talker)
            # An honest dialer slower than a second between its messages is not cut short.
            await honest_dial(nursery, transport, KEYS[3], "10.0.0.4:1", finish_after_s=3.0)
            await trio.testing.wait_all_tasks_blocked()
            assert transport.connected_peers == {3}
            await trio.sleep(10)
            nursery.cancel_scope.cancel()
    assert closed_at == {
        "10.0.0.1:1": pytest.approx(1.0),
        "10.0.0.2:1": pytest.approx(1.0),
        "10.0.0.3:1": pytest.approx(5.0),
    }
    reasons = [r.message for r in caplog.records if "event=handshake_refused" in r.message]
    assert sum("no complete handshake message within 1.0 s" in line for line in reasons) == 2
    assert sum("handshake not finished within 5.0 s" in line for line in reasons) == 1
    assert transport.stats()["refused_handshakes"] == {"timeout": 3}


async def test_refusal_lines_are_thinned_per_kind_and_host_and_the_counters_stay_exact(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bft.net")
    transport = make_transport(0, KEYS, max_pending_handshakes=8)

    def lines(kind: str) -> list[str]:
        return [r.message for r in caplog.records if f"kind={kind}" in r.message]

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for k in range(1000):
                Stranger(nursery, transport, f"10.0.0.1:{k}")
            await settle(transport, 8)
            Stranger(nursery, transport, "10.0.0.2:1")
            await settle(transport, 8)
            assert transport.stats()["refused_handshakes"] == {"evicted": 1000 - 8 + 1}
            # All 993 evicted came from the flooding host (the last to make room for 10.0.0.2's):
            # one line.
            assert len(lines("evicted")) == 1
            await trio.sleep(2)
            assert transport.stats()["refused_handshakes"] == {"evicted": 993, "timeout": 8}
            assert len(lines("timeout")) == 2
            # After the window, the next line of a key says how many of its lines were left out.
            await trio.sleep(5)
            for k in range(9):
                Stranger(nursery, transport, f"10.0.0.1:{2000 + k}")
            await settle(transport, 8)
            assert lines("evicted")[-1].endswith("suppressed=992")
            nursery.cancel_scope.cancel()
    assert transport.stats()["refused_handshakes"]["evicted"] == 994
