"""A validator with a valid key against a real node: block-sync requests and block requests it never
reads the answers to, and mempool gossip meant to fill the honest mempools. The chain holds large
blocks, so every answer is megabytes. The attacked node keeps committing with the other honest
nodes, stays under its memory bound, and logs why it refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from attack_helpers import NODE_RSS_BOUND_KIB, count_lines, fill_large_blocks, watch_attack
from cluster_fixtures import cluster_maker
from cluster_helpers import Cluster

# About 25 blocks of about the block limit: every sync answer is a full response budget.
CHAIN_BYTES = 24 * 1024 * 1024
FLOOD_DURATION_S = 12.0
HONEST = [0, 1, 2]
ATTACKER = 3
MIN_BLOCKS_DURING_FLOOD = 5
# What the attacked node's log says about each flood (any one of the markers).
REFUSAL_MARKERS = {
    "sync-flood": ('what="sync request"',),
    "block-flood": ('what="block request"',),
    "gossip-fill": ('what="gossiped transactions"',),
}


@pytest.fixture(scope="module")
def large_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 4-node cluster with a chain of large blocks, validator 3's node stopped (its key attacks)."""
    with cluster_maker(tmp_path_factory.mktemp("validator-attacks")) as make:
        cluster = make(4)
        cluster.start_all()
        cluster.wait_heights(cluster.all, 3, 30.0)
        fill_large_blocks(cluster, 0, CHAIN_BYTES)
        cluster.kill([ATTACKER])
        yield cluster


@pytest.mark.parametrize("kind", sorted(REFUSAL_MARKERS))
def test_validator_flood(large_chain: Cluster, kind: str) -> None:
    cluster = large_chain
    home = cluster.procs[ATTACKER].home
    run = watch_attack(
        cluster,
        0,
        HONEST,
        [
            "validator",
            "--home",
            str(home),
            "--target",
            "0",
            "--kind",
            kind,
            "--duration",
            str(FLOOD_DURATION_S),
        ],
        FLOOD_DURATION_S,
    )
    flood = run.report[kind]
    assert flood["messages_sent"] > 0 and flood["connections"] >= 1, flood
    assert run.progress(HONEST) >= MIN_BLOCKS_DURING_FLOOD, run
    assert run.peak_rss_kib < NODE_RSS_BOUND_KIB, f"node 0 peaked at {run.peak_rss_kib // 1024} MB"
    assert any(count_lines(cluster, 0, "event=refusal", marker) for marker in REFUSAL_MARKERS[kind]), kind
