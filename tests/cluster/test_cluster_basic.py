"""Four honest nodes as real processes: they start, commit, agree, and stop cleanly on a signal."""

from __future__ import annotations

import signal

import pytest
from cluster_helpers import MakeCluster, assert_same_chain

# Heights compared block by block on every node.
COMPARED_HEIGHTS = 200


def test_four_nodes_commit_and_agree_on_every_height(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_up()
    cluster.wait_heights(cluster.all, 1, 15.0, "every node's first commit")
    first = cluster.min_height(cluster.all)
    cluster.wait_heights(cluster.all, first + 10, 30.0, "heights to keep growing on every node")
    top = min(cluster.min_height(cluster.all), COMPARED_HEIGHTS)
    assert_same_chain(cluster, cluster.all, range(1, top + 1))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_a_node_cleanly(make_cluster: MakeCluster, signum: int) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 5, 20.0)
    cluster.send_signal(1, signum)
    code = cluster.wait_exit(1, 7.0)
    assert code == 0, f"node 1 exit code after {signal.Signals(signum).name}: {code} (None: still running)"
    lines = [line for line in cluster.log_lines(1) if line.strip()]
    assert lines and "event=stopped" in lines[-1], (
        f"node 1's log does not end with event=stopped: {lines[-3:]}"
    )
    # The others are undisturbed by the one that left.
    cluster.check_alive([0, 2, 3])
