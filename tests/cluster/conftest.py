"""Fixtures of the cluster tests: clusters of real node processes that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cluster_helpers import Cluster, MakeCluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Write testnets under tmp_path; at teardown stop every node (SIGTERM, SIGKILL past 10 s) and
    fail if one crashed, exited non-zero on SIGTERM or had to be killed."""
    made: list[Cluster] = []

    def make(nodes: int = 4, byzantine: Mapping[int, str] | None = None) -> Cluster:
        cluster = Cluster(tmp_path / f"cluster{len(made)}", nodes, dict(byzantine or {}))
        made.append(cluster)
        return cluster

    yield make
    problems: list[str] = []
    for cluster in made:
        try:
            problems += cluster.close()
        except Exception as exc:  # one cluster's trouble must not leave another's processes running
            problems.append(f"stopping {cluster.root}: {exc!r}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
