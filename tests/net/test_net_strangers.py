"""Strangers churning connections from hosts that are no validator's: beyond a burst, each is reset
at accept, before it costs a pending slot or any handshake state; a validator's own host is not
rate-limited, and honest peers connect while it happens. Real sockets on 127.0.0.x."""

from __future__ import annotations

import socket

import trio
from net_helpers import LOCALHOST, fully_connected, make_keys, running_cluster, wait_until

KEYS = make_keys(2)
STRANGER_HOST = "127.0.0.2"
STRANGERS = 100
BURST = 8


def _connect_from(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.connect((LOCALHOST, port))
    return s


async def test_strangers_beyond_their_hosts_burst_are_reset_at_accept() -> None:
    with trio.fail_after(30):
        async with running_cluster(KEYS, stranger_burst=BURST, stranger_rate_per_s=0.5) as (_, nodes):
            await wait_until(lambda: fully_connected(nodes))
            transport = nodes[0].transport
            port = transport.listen_port
            strangers = [_connect_from(STRANGER_HOST, port) for _ in range(STRANGERS)]
            await wait_until(lambda: transport.stats()["refused_handshakes"].get("rate_limited", 0) >= 1)
            await wait_until(
                lambda: (
                    transport.stats()["refused_handshakes"].get("rate_limited", 0)
                    + transport.stats()["pending_handshakes"]
                    >= STRANGERS
                )
            )
            stats = transport.stats()
            assert stats["pending_handshakes"] <= BURST
            assert stats["refused_handshakes"]["rate_limited"] >= STRANGERS - BURST
            # Strangers on a validator's own host are left to the pending table, not rate-limited.
            locals_ = [_connect_from(LOCALHOST, port) for _ in range(BURST * 2)]
            await wait_until(lambda: transport.stats()["pending_handshakes"] >= BURST * 2)
            assert (
                transport.stats()["refused_handshakes"]["rate_limited"]
                == stats["refused_handshakes"]["rate_limited"]
            )
            # The honest link is untouched.
            assert fully_connected(nodes)
            for s in strangers + locals_:
                s.close()
