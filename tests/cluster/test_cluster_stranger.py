"""Strangers on a node's p2p port: random bytes and a flood of connections. The node refuses
them (and says so in its log), keeps serving its honest peers, and its memory stays bounded."""

from __future__ import annotations

import random
import socket

from cluster_helpers import (
    LOCALHOST,
    MakeCluster,
    assert_same_chain,
    close_all,
    height_window,
    send_quietly,
    vm_rss_kib,
)

FLOOD_CONNECTIONS = 200
RANDOM_CONNECTIONS = 20
RANDOM_BYTES_PER_CONNECTION = 256 * 1024
MAX_RSS_GROWTH_KIB = 50 * 1024
NEW_HEIGHTS = 20
# The node's handshake deadline is a few seconds; a stranger that never completes one must be
# dropped well within this.
STRANGER_DROP_TIMEOUT_S = 20.0


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the node has closed (or reset) this connection; never blocks."""
    s.setblocking(False)
    for _ in range(64):
        try:
            if not s.recv(65536):
                return True
        except BlockingIOError:
            return False
        except OSError:
            return True
    return False


def test_stranger_random_bytes_and_connection_flood(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 10, 20.0)
    target = cluster.procs[0]
    address = (LOCALHOST, target.p2p_port)
    rss_before_kib = vm_rss_kib(target.pid)
    rng = random.Random(20240601)

    # Random bytes, from first byte to last, on connections that are then dropped.
    for _ in range(RANDOM_CONNECTIONS):
        with socket.create_connection(address, timeout=5.0) as s:
            for _ in range(RANDOM_BYTES_PER_CONNECTION // 16384):
                if not send_quietly(s, rng.randbytes(16384)):
                    break

    # Hundreds of connections held open; junk on every fourth, silence on the rest.
    flood: list[socket.socket] = []
    refused_connects = 0
    try:
        for k in range(FLOOD_CONNECTIONS):
            try:
                s = socket.create_connection(address, timeout=5.0)
            except OSError:
                refused_connects += 1
                continue
            flood.append(s)
            if k % 4 == 0:
                send_quietly(s, rng.randbytes(rng.randrange(1, 4096)))
        start = cluster.min_height(cluster.all)
        cluster.wait_heights(
            cluster.all,
            start + NEW_HEIGHTS,
            30.0,
            f"every node to keep committing while {len(flood)} stranger connections are open",
        )
        for s in flood[1::4]:
            send_quietly(s, rng.randbytes(rng.randrange(1, 65536)))
        rss_after_kib = vm_rss_kib(target.pid)
        # Strangers that never finish a handshake do not hold on to the node's resources.
        cluster.wait(
            lambda: all(_closed_by_peer(s) for s in flood),
            STRANGER_DROP_TIMEOUT_S,
            "node 0 to close every stranger connection",
        )
    finally:
        close_all(flood)

    start = cluster.min_height(cluster.all)
    cluster.wait_heights(
        cluster.all, start + NEW_HEIGHTS, 30.0, "every node to keep committing after the flood"
    )
    cluster.check_alive()
    growth_kib = rss_after_kib - rss_before_kib
    assert growth_kib < MAX_RSS_GROWTH_KIB, (
        f"node 0's resident memory grew by {growth_kib} KiB ({rss_before_kib} -> {rss_after_kib})"
    )
    refusals = [line for line in cluster.log_lines(0) if "event=handshake_refused" in line]
    assert refusals, "node 0 logged no handshake refusal for the strangers"
    assert all("reason=" in line for line in refusals), f"a refusal without a reason: {refusals[:3]}"
    top = cluster.min_height(cluster.all)
    assert_same_chain(cluster, cluster.all, height_window(top, 40))
    print(
        f"{len(flood)} flood connections open ({refused_connects} refused at connect), "
        f"{len(refusals)} refusals logged, RSS {rss_before_kib} -> {rss_after_kib} KiB"
    )
