"""A validator with a valid key against a real node: block-sync requests and block requests it never
reads the answers to, and mempool gossip meant to fill the honest mempools. The chain holds large
blocks, so every answer is megabytes. The attacked node keeps committing with the other honest
nodes, stays under its memory bound, and logs why it refused."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from attack_helpers import NODE_RSS_BOUND_KIB, count_lines, fill_large_blocks, watch_attack
from cluster_fixtures import cluster_maker
from cluster_helpers import Cluster, set_consensus

# About 25 blocks of about the block limit: every sync answer is a full response budget.
CHAIN_BYTES = 24 * 1024 * 1024
FLOOD_DURATION_S = 10.0
HONEST = [0, 1, 2]
ATTACKER = 3
# During a flood the honest nodes commit at least this share of what they commit in as long
# without one (validator 3 is down, so its views time out either way; a loaded CI machine
# commits fewer blocks in both). Before the budgets, the floods stopped commits altogether.
MIN_SHARE_OF_QUIET = 1 / 4
# What the attacked node's log says about each flood (any one of the markers).
REFUSAL_MARKERS = {
    "sync-flood": ('what="sync request"',),
    "block-flood": ('what="block request"',),
    "gossip-fill": ('what="gossiped transactions"',),
}


@pytest.fixture(scope="module")
def large_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int]]:
    """A 4-node cluster with a chain of large blocks, validator 3's node stopped (its key attacks),
    and the blocks its honest nodes commit in FLOOD_DURATION_S without a flood."""
    with cluster_maker(tmp_path_factory.mktemp("validator-attacks")) as make:
        cluster = make(4)
        # Validator 3 is down during the floods: short timeouts make its views cheap, so that
        # the others commit steadily and a window of a few seconds measures something.
        set_consensus(cluster, base_timeout_s=0.5, max_timeout_s=1.0)
        cluster.start_all()
        cluster.wait_heights(cluster.all, 3, 30.0)
        fill_large_blocks(cluster, 0, CHAIN_BYTES)
        cluster.kill([ATTACKER])
        cluster.wait_heights(HONEST, cluster.min_height(HONEST) + 3, 30.0)
        before = cluster.min_height(HONEST)
        time.sleep(FLOOD_DURATION_S)
        yield cluster, cluster.min_height(HONEST) - before


@pytest.mark.parametrize("kind", sorted(REFUSAL_MARKERS))
def test_validator_flood(large_chain: tuple[Cluster, int], kind: str) -> None:
    cluster, quiet_blocks = large_chain
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
    print(f"blocks committed in {FLOOD_DURATION_S} s without a flood: {quiet_blocks}")
    flood = run.report[kind]
    assert flood["messages_sent"] > 0 and flood["connections"] >= 1, flood
    assert run.progress(HONEST) >= max(1.0, MIN_SHARE_OF_QUIET * quiet_blocks), (quiet_blocks, run)
    assert run.peak_rss_kib < NODE_RSS_BOUND_KIB, f"node 0 peaked at {run.peak_rss_kib // 1024} MB"
    assert any(count_lines(cluster, 0, "event=refusal", marker) for marker in REFUSAL_MARKERS[kind]), kind
