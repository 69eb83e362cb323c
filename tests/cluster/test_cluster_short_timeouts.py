"""Issue 14 with real processes: 4 nodes with 20 ms view timeouts commit from the start (the
leader of view 1 used to defer its proposal, see its timer expire in the same step, and spin on
the past deadline without reading the network again, leaving the cluster at height 0), and a
node frozen with SIGSTOP for 50 of its timeouts, then resumed (every deadline of its clock now
far in the past), goes on committing with the others. No node reports a timer stall."""

from __future__ import annotations

import signal
import time

from cluster_helpers import MakeCluster, set_consensus

BASE_TIMEOUT_S = 0.02
BATCH_DELAY_S = 0.005
FIRST_COMMITS = 20
START_TIMEOUT_S = 60.0
PAUSE_S = 1.0  # 50 base timeouts
# After it resumes, the paused node commits this many blocks beyond the others' height when
# it resumed, within the bound.
COMMITS_AFTER_RESUME = 20
RESUME_BOUND_S = 30.0
PAUSED = 2


def test_twenty_ms_timeouts_commit_from_the_start_and_survive_a_pause(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    set_consensus(cluster, base_timeout_s=BASE_TIMEOUT_S, max_batch_delay_s=BATCH_DELAY_S)
    cluster.start_all()
    cluster.wait_heights(cluster.all, FIRST_COMMITS, START_TIMEOUT_S, "every node to commit from the start")

    cluster.send_signal(PAUSED, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_S)
        others = [i for i in cluster.all if i != PAUSED]
        # The three others go on without it (a quorum of 3 of 4).
        before = cluster.min_height(others)
        cluster.wait_heights(
            others, before + 5, RESUME_BOUND_S, "the others to commit while node 2 is paused"
        )
        target = cluster.min_height(others) + COMMITS_AFTER_RESUME
    finally:
        cluster.send_signal(PAUSED, signal.SIGCONT)
    cluster.wait_heights(
        cluster.all, target, RESUME_BOUND_S, "node 2 to commit with the others after its pause"
    )
    for i in cluster.all:
        stalls = [line for line in cluster.log_lines(i) if "event=timer_stall" in line]
        assert not stalls, (i, stalls[:3])
