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
KILL_ALL_ROUNDS = 3
PIPELINE_DRAIN_S = 1.0
RESTART_PROGRESS_TIMEOUT_S = 30.0


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

    # Blocks already certified when the node died commit within milliseconds; what counts is
    # that the survivors go on committing after that pipeline has drained: heights read once
    # PIPELINE_DRAIN_S has passed must grow again.
    def heights_after_drain() -> list[int] | None:
        if time.monotonic() - killed_at < PIPELINE_DRAIN_S:
            return None
        found = [h for h in cluster.heights(survivors).values() if h is not None]
        return found if len(found) == len(survivors) else None

    drained = cluster.wait(
        heights_after_drain,
        PIPELINE_DRAIN_S + 10.0,
        "the survivors' heights after the pipeline drained",
        survivors,
    )
    later = max(drained)
    cluster.wait_heights(
        survivors,
        later + 3,
        DEGRADED_PROGRESS_TIMEOUT_S,
        f"nodes {survivors} to keep committing without node {victim} (past height {later})",
    )
    degraded_s = time.monotonic() - killed_at

    target = max(h for h in cluster.heights(survivors).values() if h is not None)
    cluster.start(victim)
    cluster.wait_up([victim])
    cluster.wait_heights(
        [victim], target, CATCH_UP_TIMEOUT_S, f"restarted node {victim} to catch up to height {target}"
    )
    # Back at full strength, every node (the restarted one included) commits on.
    cluster.wait_heights(cluster.all, target + 10, 30.0, f"all four nodes to commit past {target + 10}")
    heights = set(height_window(before_kill, WINDOW)) | set(height_window(target, WINDOW))
    assert_same_chain(cluster, [victim, *survivors], heights)
    print(f"node {victim}: survivors {start} -> {target} in {degraded_s:.1f} s without it; it caught up")


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
    """Several rounds of: commit, kill -9 every node at once, restart them all. Each round kills
    the cluster at a different point of its pipeline (blocks certified and locked, not committed)."""
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 20, 20.0)
    recorded: dict[int, str] = {}
    for round_ in range(1, KILL_ALL_ROUNDS + 1):
        # Heights read before the kill; nodes may commit more between this read and the kill.
        before = {i: h for i, h in cluster.heights(cluster.all).items() if h is not None}
        assert len(before) == cluster.nodes, f"round {round_}: a node did not answer /status: {before}"
        recorded |= assert_same_chain(cluster, cluster.all, height_window(min(before.values()), WINDOW))
        cluster.kill(cluster.all)

        cluster.start_all()
        cluster.wait_up()
        after = {i: h for i, h in cluster.heights(cluster.all).items() if h is not None}
        for i, h in before.items():
            assert i in after and after[i] >= h, (
                f"round {round_}: node {i} was at height {h} before kill -9, at {after.get(i)} after restart"
            )
        again = assert_same_chain(cluster, cluster.all, recorded)
        assert again == recorded, f"round {round_}: a committed block changed across the crash"
        top = max(after.values())
        cluster.wait_heights(
            cluster.all,
            top + 5,
            RESTART_PROGRESS_TIMEOUT_S,
            f"round {round_}: new commits on every node after restarting all four at height {top}",
        )
    top = cluster.min_height(cluster.all)
    assert_same_chain(cluster, cluster.all, height_window(top, WINDOW))
