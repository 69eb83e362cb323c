"""Crashes of real node processes (kill -9): the survivors keep committing, a restarted node
catches up to the same chain, and a cluster that loses every process at once loses no block."""

from __future__ import annotations

import time

import pytest
from cluster_helpers import Cluster, MakeCluster, assert_same_chain, height_window

# With one of four nodes dead a commit needs four consecutive views with live leaders, so the
# survivors commit every few seconds, not hundreds of times a second: generous deadlines.
DEGRADED_PROGRESS_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 60.0
# Heights compared block by block around each point of interest.
WINDOW = 60


def _kill_one_and_restart(cluster: Cluster, victim: int) -> None:
    survivors = [i for i in cluster.all if i != victim]
    before_kill = cluster.min_height(cluster.all)
    cluster.kill([victim])
    killed_at = time.monotonic()
    start = cluster.min_height(survivors)
    cluster.wait_heights(
        survivors,
        start + 3,
        DEGRADED_PROGRESS_TIMEOUT_S,
        f"nodes {survivors} to commit 3 blocks without node {victim}",
    )
    degraded_s = time.monotonic() - killed_at

    target = max(h for h in cluster.heights(survivors).values() if h is not None)
    cluster.start(victim)
    cluster.wait_up([victim])
    cluster.wait_heights(
        [victim], target, CATCH_UP_TIMEOUT_S, f"restarted node {victim} to catch up to height {target}"
    )
    heights = set(height_window(before_kill, WINDOW)) | set(height_window(target, WINDOW))
    assert_same_chain(cluster, [victim, *survivors], heights)
    print(f"node {victim}: 3 commits without it in {degraded_s:.1f} s; caught up to {target}")


@pytest.mark.parametrize("who", ["leader", "non-leader"])
def test_kill_one_node_others_continue_and_it_catches_up(make_cluster: MakeCluster, who: str) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 10, 20.0)
    status = cluster.wait(lambda: cluster.status(0), 5.0, "/status of node 0")
    leader = int(status["leader"])
    victim = leader if who == "leader" else (leader + 1) % cluster.nodes
    _kill_one_and_restart(cluster, victim)


def test_kill_all_four_at_once_loses_no_committed_block(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 20, 20.0)
    # Heights read before the kill; nodes may commit more between this read and the kill.
    before = {i: h for i, h in cluster.heights(cluster.all).items() if h is not None}
    assert len(before) == cluster.nodes, f"a node did not answer /status: {before}"
    common = min(before.values())
    recorded = assert_same_chain(cluster, cluster.all, height_window(common, WINDOW))
    cluster.kill(cluster.all)

    cluster.start_all()
    cluster.wait_up()
    after = {i: h for i, h in cluster.heights(cluster.all).items() if h is not None}
    for i, h in before.items():
        assert i in after and after[i] >= h, (
            f"node {i} was at height {h} before kill -9, at {after.get(i)} after"
        )
    again = assert_same_chain(cluster, cluster.all, recorded)
    assert again == recorded, "a committed block changed across the crash"
    top = max(after.values())
    cluster.wait_heights(cluster.all, top + 5, 30.0, "new commits after restarting every node")
    assert_same_chain(cluster, cluster.all, height_window(top + 5, WINDOW))
