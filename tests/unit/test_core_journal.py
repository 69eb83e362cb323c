"""The block journal: after every replica crashes at once, the cluster commits again.

Without it, locks point at certified blocks that no replica remembers, every proposal conflicts
with them, and the cluster never commits again (found by the kill -9 all-four cluster test).
"""

from __future__ import annotations

from collections.abc import Sequence

from core_helpers import Cluster, N, make_replica

from bft.core.journal import MemoryJournal
from bft.core.messages import Block
from bft.core.refusals import RefusalReason
from bft.core.replica import Replica


class ForgetfulJournal(MemoryJournal):
    """A journal that keeps nothing: what a replica without one would have after a crash."""

    def add(self, blocks: Sequence[Block]) -> None:
        pass


def _replica(i: int, cluster: Cluster, journal: MemoryJournal) -> Replica:
    # The committed chain and the safety record survive a crash; the replica restarts from them.
    return make_replica(i, cluster.stores[i], cluster.now, chain=cluster.chains[i], journal=journal)


def _crash_all_and_restart(journaled: bool) -> tuple[Cluster, list[int]]:
    journals = [MemoryJournal() if journaled else ForgetfulJournal() for _ in range(N)]
    cluster = Cluster()
    cluster.replicas = [_replica(i, cluster, journals[i]) for i in range(N)]
    cluster.run(lambda: min(cluster.heights()) >= 5)
    # Every process dies at once: messages in flight are lost, memory is gone; the safety record,
    # the committed chain and (if any) the journal survive.
    cluster.queue.clear()
    before = cluster.heights()
    locked = [s.state.locked_view for s in cluster.stores if s.state is not None]
    assert max(locked) > min(r.last_committed.view for r in cluster.replicas), "locks above the roots"
    cluster.replicas = [_replica(i, cluster, journals[i]) for i in range(N)]
    assert cluster.heights() == before, "each replica restarted from its committed chain"
    return cluster, before


def test_with_a_journal_a_cluster_that_crashed_entirely_commits_again() -> None:
    cluster, before = _crash_all_and_restart(journaled=True)
    cluster.run(lambda: min(cluster.heights()) >= max(before) + 3)
    ids = [[b.id for b in commits] for commits in cluster.commits]
    shortest = min(len(c) for c in ids)
    assert all(c[:shortest] == ids[0][:shortest] for c in ids)


def test_without_a_journal_the_locks_stall_the_cluster_for_good() -> None:
    cluster, before = _crash_all_and_restart(journaled=False)
    for _ in range(3000):
        cluster.step()
    assert max(cluster.heights()) == max(before)
    # Every replica looks for the certified blocks its lock and high QC name, and nobody has them.
    assert any(r.reason is RefusalReason.UNKNOWN_BLOCK for refused in cluster.refused for r in refused)
