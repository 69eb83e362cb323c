"""Clients against a real node's HTTP API: request heads and bodies trickled a byte at a time,
event streams never read, large block answers pipelined and never read, all at once and reopened as
soon as the node closes them. The node cuts each within its deadlines, keeps committing, stays
under its memory bound and logs why it refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from attack_helpers import NODE_RSS_BOUND_KIB, count_lines, fill_large_blocks, watch_attack
from cluster_fixtures import cluster_maker
from cluster_helpers import LOCALHOST, MakeCluster, set_table

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
SEND_TIMEOUT_S = 3.0
# Each connection is cut by its deadline, not by the end of the attack: several times over, and
# none held for more than this (the deadlines are 2-3 s; a burst of hundreds of connections
# expiring together delays a cut by a few seconds on a loaded 2-core machine).
MAX_HELD_S = 12.0
CUTS_PER_SLOT = 2
ATTACK_DURATION_S = 20.0
# Blocks of about 1 MB: a block answer is about 1.4 MB of JSON.
CHAIN_BYTES = 8 * 1024 * 1024
MIN_BLOCKS_DURING_ATTACK = 5
SLOTS = {"slow-headers": 100, "slow-body": 200, "idle-sse": 100, "unread-blocks": 100}


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    with cluster_maker(tmp_path) as make:
        yield make


def test_slow_and_unread_clients_are_cut_within_their_deadlines(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    set_table(
        cluster,
        "api",
        header_timeout_s=HEADER_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
        send_timeout_s=SEND_TIMEOUT_S,
        keep_alive_timeout_s=HEADER_TIMEOUT_S,
    )
    cluster.start_all()
    cluster.wait_heights(cluster.all, 3, 30.0)
    large = fill_large_blocks(cluster, 0, CHAIN_BYTES)
    target = cluster.procs[0]
    kinds = ",".join(f"{kind}={count}" for kind, count in SLOTS.items())
    run = watch_attack(
        cluster,
        0,
        cluster.all,
        [
            "hostile",
            "--api",
            f"{LOCALHOST}:{target.api_port}",
            "--kinds",
            kinds,
            "--trickle",
            "0.5",
            "--block-height",
            str(large),
            "--duration",
            str(ATTACK_DURATION_S),
        ],
        ATTACK_DURATION_S,
    )
    report = run.report
    assert all(report[kind]["opened"] >= slots for kind, slots in SLOTS.items()), report
    # Trickled heads and bodies are cut by their deadlines; unread answers once a send makes no
    # progress for SEND_TIMEOUT_S.
    for kind in ("slow-headers", "slow-body", "unread-blocks"):
        assert report[kind]["closed_by_node"] >= CUTS_PER_SLOT * SLOTS[kind], (kind, report[kind])
        assert report[kind]["held_s_max"] <= MAX_HELD_S, (kind, report[kind])
    assert run.progress(cluster.all) >= MIN_BLOCKS_DURING_ATTACK, run
    assert run.peak_rss_kib < NODE_RSS_BOUND_KIB, f"node 0 peaked at {run.peak_rss_kib // 1024} MB"
    assert count_lines(cluster, 0, "event=request_refused", "status=408") >= 1
    # The API still answers once the attack is over.
    assert cluster.status(0) is not None
