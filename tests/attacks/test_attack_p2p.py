"""Strangers and a validator's key against the p2p port of a real node: pre-authentication churn
from many addresses, and the handshake and frame catalogue. The node stays up, keeps committing,
stays under its memory bound, refuses each attempt with a logged reason, and does not let the flood
rotate its log away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from attack_helpers import NODE_RSS_BOUND_KIB, count_lines, watch_attack
from cluster_fixtures import cluster_maker
from cluster_helpers import LOCALHOST, MakeCluster

CHURN_CONNECTIONS = 1000
CHURN_DURATION_S = 15.0
SOURCES = 8
MIN_BLOCKS_DURING_ATTACK = 10
# Refusal lines are thinned per kind and source every few seconds: far fewer lines than attempts.
MAX_REFUSAL_LINES = 500


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    with cluster_maker(tmp_path) as make:
        yield make


def test_preauth_churn_from_many_addresses(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 5, 30.0)
    target = cluster.procs[0]
    run = watch_attack(
        cluster,
        0,
        cluster.all,
        [
            "hostile",
            "--p2p",
            f"{LOCALHOST}:{target.p2p_port}",
            "--kinds",
            f"preauth={CHURN_CONNECTIONS // 2},preauth-trickle={CHURN_CONNECTIONS // 2}",
            "--sources",
            str(SOURCES),
            "--duration",
            str(CHURN_DURATION_S),
        ],
        CHURN_DURATION_S,
    )
    opened = sum(kind["opened"] for kind in run.report.values())
    assert opened >= CHURN_CONNECTIONS, run.report
    assert run.progress(cluster.all) >= MIN_BLOCKS_DURING_ATTACK, run
    assert run.peak_rss_kib < NODE_RSS_BOUND_KIB, run.peak_rss_kib
    status = cluster.status(0)
    assert status is not None and status["peers"] == 3, status
    refusals = count_lines(cluster, 0, "event=handshake_refused")
    assert 0 < refusals <= MAX_REFUSAL_LINES, f"{refusals} refusal lines for {opened} connections"


def test_handshake_and_frame_catalogue(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 5, 30.0)
    # The catalogue speaks as validator 3: its own node must not hold the connection to node 0.
    cluster.kill([3])
    honest = [0, 1, 2]
    run = watch_attack(
        cluster, 0, honest, ["catalogue", "--home", str(cluster.procs[3].home), "--target", "0"], 30.0
    )
    assert len(run.report) == 10, run.report
    for name, probe in run.report.items():
        assert probe["closed_by_node"] == probe["should_close"], (name, probe)
        assert count_lines(cluster, 0, probe["expect"]) >= 1, (
            f"{name}: no line with {probe['expect']} in node 0's log"
        )
    # The catalogue takes a few seconds, right after validator 3 went down: ask for progress
    # after it rather than during it.
    cluster.wait_heights(honest, max(run.heights_after.values()) + 3, 30.0)
    assert run.peak_rss_kib < NODE_RSS_BOUND_KIB, run.peak_rss_kib
