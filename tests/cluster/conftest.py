"""Fixtures of the cluster tests: clusters of real node processes that are always stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_fixtures import cluster_maker
from cluster_helpers import MakeCluster


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[MakeCluster]:
    """Write testnets under tmp_path; at teardown stop every node (SIGTERM, SIGKILL past 10 s) and
    fail if one crashed, exited non-zero on SIGTERM or had to be killed."""
    with cluster_maker(tmp_path) as make:
        yield make
