"""Byzantine node processes over real TCP: the honest nodes keep committing identical chains."""

from __future__ import annotations

import random
import re
import time

import pytest
from cluster_helpers import Cluster, MakeCluster, assert_same_chain, height_window

from bft.adversary import BEHAVIOURS as ADVERSARY_BEHAVIOURS
from bft.adversary import LEADER_REPUTATION_BEHAVIOURS, QUORUM_STORE_BEHAVIOURS

# The behaviours the issue names for a real process, and any the node has beyond them: a missing
# one makes `bft node --byzantine` refuse to start, which fails its case below.
EXPECTED_BEHAVIOURS = {
    "double-vote",
    "equivocate",
    "far-future",
    "forged-qc",
    "garbage",
    "invalid-block",
    "omit",
    "replay",
    "silent",
}
BEHAVIOURS = sorted(EXPECTED_BEHAVIOURS | set(ADVERSARY_BEHAVIOURS))
# Behaviours every one of whose bad messages is refusable on sight (out-of-turn's proposals, by
# the leader rule; request-flood's requests past its serving budget); the honest nodes must log
# refusals naming the Byzantine node. (An equivocating leader may be seen by each node on one
# side only; silent and omit send nothing wrong.)
REFUSED_BEHAVIOURS = {
    "cross-chain",
    "double-vote",
    "false-blame",
    "far-future",
    "forged-qc",
    "garbage",
    "invalid-block",
    "out-of-turn",
    "replay",
    "request-flood",
}
NEW_HEIGHTS = 5
# The honest nodes are watched for at least this long, so that each behaviour gets many views
# (and its own turns as leader) to do damage; every node must stay up the whole time.
OBSERVE_S = 8.0
# A Byzantine node can slow commits down as much as a dead one (its views need timeouts).
PROGRESS_TIMEOUT_S = 45.0
WINDOW = 40
SAMPLE = 40


def _honest_keep_committing(cluster: Cluster) -> None:
    """Run the cluster, watch it for OBSERVE_S and until the honest nodes have committed
    NEW_HEIGHTS more blocks, then compare their chains: the first and last heights block by
    block, and a random sample in between (the parent links make a common block at height h
    a common prefix, but a sample also catches a node whose store disagrees with itself)."""
    honest = cluster.honest
    cluster.start_all()
    cluster.wait_up()
    started = time.monotonic()
    start = cluster.min_height(honest)

    def progressed() -> bool:
        if time.monotonic() - started < OBSERVE_S:
            return False
        heights = cluster.heights(honest).values()
        return all(h is not None and h >= start + NEW_HEIGHTS for h in heights)

    cluster.wait(
        progressed,
        PROGRESS_TIMEOUT_S,
        f"honest nodes {honest} to commit {NEW_HEIGHTS} blocks beside {dict(cluster.byzantine)} "
        f"(watched for at least {OBSERVE_S} s, every node staying up)",
    )
    top = cluster.min_height(honest)
    heights = set(height_window(min(top, WINDOW), WINDOW)) | set(height_window(top, WINDOW))
    heights |= set(random.Random(top).sample(range(1, top + 1), min(top, SAMPLE)))
    assert_same_chain(cluster, honest, heights)
    cluster.check_alive()
    # The behaviour was really at work over TCP: honest nodes refused its messages, and said so.
    for index, behaviour in cluster.byzantine.items():
        if behaviour not in REFUSED_BEHAVIOURS:
            continue
        pattern = re.compile(rf"event=\w*refus\w*\b.*\bpeer={index}\b")
        refusals = sum(1 for i in honest for line in cluster.log_lines(i) if pattern.search(line))
        assert refusals > 0, f"no honest node logged a refusal of a message from node {index} ({behaviour})"


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_one_byzantine_of_four(make_cluster: MakeCluster, behaviour: str) -> None:
    # The quorum store's own behaviours need its data path to act at all (inline they are honest);
    # false-blame, leader reputation (without it, its records are refused on sight).
    quorum_store = behaviour in QUORUM_STORE_BEHAVIOURS
    reputation = behaviour in LEADER_REPUTATION_BEHAVIOURS
    cluster = make_cluster(4, {3: behaviour}, quorum_store=quorum_store, leader_reputation=reputation)
    _honest_keep_committing(cluster)


@pytest.mark.parametrize("behaviours", [("equivocate", "double-vote"), ("silent", "garbage")], ids="+".join)
def test_two_byzantine_of_seven(make_cluster: MakeCluster, behaviours: tuple[str, str]) -> None:
    _honest_keep_committing(make_cluster(7, {5: behaviours[0], 6: behaviours[1]}))
