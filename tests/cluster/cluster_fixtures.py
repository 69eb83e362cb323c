"""The cluster fixtures' one implementation: clusters made under a directory, all stopped after.

Owns: `cluster_maker`, which the `make_cluster` fixture (tests/cluster) and the attack suite's
module-wide cluster (tests/attacks) both use, so that every cluster test stops every process it
started and fails if one crashed, exited non-zero on SIGTERM or had to be killed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cluster_helpers import Cluster, MakeCluster


@contextlib.contextmanager
def cluster_maker(root: Path) -> Iterator[MakeCluster]:
    """Yield a `MakeCluster` writing testnets under `root`; on exit stop every node (SIGTERM,
    SIGKILL past 10 s) and fail if one crashed, exited non-zero on SIGTERM or had to be killed."""
    made: list[Cluster] = []

    def make(
        nodes: int = 4,
        byzantine: Mapping[int, str] | None = None,
        *,
        commit_chain: int = 3,
        quorum_store: bool = False,
        leader_reputation: bool = False,
        state_sync: bool = False,
    ) -> Cluster:
        cluster = Cluster(
            root / f"cluster{len(made)}",
            nodes,
            dict(byzantine or {}),
            commit_chain=commit_chain,
            quorum_store=quorum_store,
            leader_reputation=leader_reputation,
            state_sync=state_sync,
        )
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
