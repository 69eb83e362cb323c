"""The two-chain commit option (Jolteon / DiemBFT v4): its commit rule, app claims, and the vote
and timeout rules its safety needs, and a cluster that runs it."""

from __future__ import annotations

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    Cluster,
    MemoryStore,
    chain,
    leader,
    make_block,
    make_replica,
    make_tc,
    qc_for,
    safety_rules,
    tree_with,
)
from test_core_app_state import Once

from bft.core.app_state import claim_height
from bft.core.commit_rule import THREE_CHAIN, TWO_CHAIN, commit_proof, committed_by
from bft.core.config import ReplicaConfig
from bft.core.messages import Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import View


def test_two_consecutive_views_commit_the_first_block() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    tree = tree_with([b1, b2])
    assert committed_by(tree, b2, TWO_CHAIN) == b1
    assert committed_by(tree, b2, THREE_CHAIN) == GENESIS_BLOCK
    assert commit_proof(tree, b1, b2, TWO_CHAIN) == (b2,)


def test_a_skipped_view_commits_nothing_under_the_two_chain_rule() -> None:
    (b1,) = chain(GENESIS_BLOCK, [1])
    b3 = make_block(b1, 3)
    tree = tree_with([b1, b3])
    assert committed_by(tree, b3, TWO_CHAIN) is None
    b4 = make_block(b3, 4)
    tree.add(b4)
    assert committed_by(tree, b4, TWO_CHAIN) == b3


def test_the_proof_is_empty_when_the_certified_block_does_not_chain_to_the_committed_one() -> None:
    b1, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    tree = tree_with([b1, b2, b3])
    assert commit_proof(tree, b1, b3, TWO_CHAIN) == ()
    assert commit_proof(tree, b1, b3, THREE_CHAIN) == (b2, b3)


def test_the_claim_height_under_the_two_chain_rule_is_the_parents_parent() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    assert claim_height(b2, b1, TWO_CHAIN) == 1, "a QC for b2 commits b1"
    assert claim_height(b2, b1, THREE_CHAIN) == 0
    gap = make_block(b1, 5)
    assert claim_height(gap, b1, TWO_CHAIN) == 0


def test_the_commit_chain_must_be_two_or_three() -> None:
    from core_helpers import config

    with pytest.raises(ValueError, match="commit_chain"):
        config(0, commit_chain=4)
    assert isinstance(config(0, commit_chain=TWO_CHAIN), ReplicaConfig)


# The vote rule: the QC is for the previous view, or after a TC at least the TC's high QC.


def _voted(result: object) -> Vote:
    assert isinstance(result, Vote), f"expected a vote, got {result!r}"
    return result


def _refused(result: object, reason: RefusalReason) -> str:
    assert isinstance(result, Refused) and result.reason is reason, f"expected {reason}, got {result!r}"
    return result.detail


def test_a_block_whose_qc_is_for_the_previous_view_gets_a_vote_that_raises_the_lock() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    store = MemoryStore()
    s = safety_rules(store, commit_chain=TWO_CHAIN)
    _voted(s.vote(b2, tree_with([b1, b2])))
    assert s.state.locked_qc == b2.qc, "the vote relies on its QC: the lock is that QC"
    assert store.load() == s.state, "and it is saved with the vote"


def test_after_a_tc_a_block_with_a_qc_below_the_tcs_high_qc_gets_no_vote() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    tc = make_tc(3, {0: qc_for(b2), 1: qc_for(b1), 2: qc_for(b1)})  # high QC: b2's, view 2
    stale = make_block(b1, 4)  # carries the QC for b1, view 1
    s = safety_rules(commit_chain=TWO_CHAIN)
    detail = _refused(s.vote(stale, tree_with([b1, b2, stale]), tc), RefusalReason.BELOW_TC_HIGH_QC)
    assert "below the high QC view 2" in detail
    fresh = make_block(b2, 4)
    _voted(s.vote(fresh, tree_with([b1, b2, fresh]), tc))


def test_a_block_that_skips_views_without_a_tc_gets_no_two_chain_vote() -> None:
    (b1,) = chain(GENESIS_BLOCK, [1])
    skip = make_block(b1, 3)
    s = safety_rules(commit_chain=TWO_CHAIN)
    _refused(s.vote(skip, tree_with([b1, skip])), RefusalReason.BELOW_TC_HIGH_QC)
    tc_for_other_view = make_tc(1, {0: qc_for(b1), 1: qc_for(b1), 2: qc_for(b1)})
    _refused(s.vote(skip, tree_with([b1, skip]), tc_for_other_view), RefusalReason.BELOW_TC_HIGH_QC)


def test_the_two_chain_rule_votes_off_the_lock_where_the_tc_allows_and_the_three_chain_does_not() -> None:
    """Jolteon has no "extends the lock" clause: the TC's high QC replaces it. A replica locked
    on b2's QC votes for a fork off b1 when a TC for the view before says nobody holds more
    than b1's QC (b2's QC reached only this replica); chained HotStuff's lock refuses it."""
    b1, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    tc = make_tc(3, {0: qc_for(b1), 1: qc_for(b1), 2: qc_for(b1)})
    fork = make_block(b1, 4, qc=qc_for(b1))
    tree = tree_with([b1, b2, b3, fork])
    two = safety_rules(commit_chain=TWO_CHAIN)
    two.observe_certified(b2, qc_for(b2))
    assert two.state.locked_qc.view == 2
    _voted(two.vote(fork, tree, tc))
    three = safety_rules(commit_chain=THREE_CHAIN)
    three.observe_certified(b3, qc_for(b3))
    _refused(three.vote(fork, tree, tc), RefusalReason.LOCK_CONFLICT)


def test_the_two_chain_lock_is_the_highest_qc_the_three_chain_lock_the_one_inside_it() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    two, three = safety_rules(commit_chain=TWO_CHAIN), safety_rules(commit_chain=THREE_CHAIN)
    for s in (two, three):
        s.observe_certified(b2, qc_for(b2))
    assert two.state.locked_qc == qc_for(b2)
    assert three.state.locked_qc == b2.qc == qc_for(b1)


@pytest.mark.parametrize("commit_chain", [TWO_CHAIN, THREE_CHAIN])
def test_a_timeout_whose_high_qc_is_below_the_lock_is_not_signed(commit_chain: int) -> None:
    b1, _, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    s = safety_rules(commit_chain=commit_chain)
    s.observe_certified(b3, qc_for(b3))
    lock = s.state.locked_qc
    below = qc_for(b1) if lock.view > 1 else qc_for(GENESIS_BLOCK)
    detail = _refused(s.timeout(View(5), below), RefusalReason.BELOW_LOCK)
    assert f"below the lock at view {lock.view}" in detail
    assert s.timeout(View(5), lock).view == 5  # type: ignore[union-attr]


# A cluster on the two-chain rule.


def test_a_two_chain_cluster_commits_with_one_block_proofs_and_agrees_on_claims() -> None:
    cluster = Cluster(overrides={"commit_chain": TWO_CHAIN})
    cluster.run(lambda: min(cluster.heights()) >= 12)
    assert all(not r for r in cluster.refused), cluster.refused
    chains = [[b.id for b in blocks[:12]] for blocks in cluster.commits]
    assert all(c == chains[0] for c in chains), "every replica commits the same blocks"
    for actions in cluster.commit_actions:
        for commit in actions:
            (top,) = commit.proof
            assert top.parent_id == commit.blocks[-1].id and top.view == commit.blocks[-1].view + 1
            assert commit.commit_qc.block_id == top.id
    by_height = {b.height: b for b in cluster.commits[0]} | {0: GENESIS_BLOCK}
    for height in range(2, 12):
        parent = by_height[height - 1]
        expected = claim_height(parent, by_height.get(height - 2), TWO_CHAIN)
        assert by_height[height].app_height == expected
    assert max(by_height[h].app_height for h in range(2, 12)) >= 9, "claims trail by one height"


def _messages_until_lone_tx_committed(commit_chain: int) -> int:
    cluster = Cluster(overrides={"max_batch_delay_s": 0.1, "commit_chain": commit_chain})
    first = leader(1)
    for i in range(4):
        payload = Once([b"lone"] if i == first else [])
        cluster.replicas[i] = make_replica(
            i,
            cluster.stores[i],
            chain=cluster.chains[i],
            payload=payload,
            max_batch_delay_s=0.1,
            commit_chain=commit_chain,
        )
    cluster.run(lambda: all(any(b"lone" in b.txs for b in cluster.commits[i]) for i in range(4)))
    assert cluster.now == 0.0, "no leader waited the batch delay"
    return len(cluster.delivered)


def test_a_lone_transaction_commits_one_view_sooner_under_the_two_chain_rule() -> None:
    """Each view is a proposal broadcast (3 messages) and 3 votes (one of them the leader's own,
    not sent): the two-chain rule saves one view of the four the three-chain needs."""
    two, three = _messages_until_lone_tx_committed(TWO_CHAIN), _messages_until_lone_tx_committed(THREE_CHAIN)
    assert three - two >= 5, f"{two} messages under the two-chain rule, {three} under the three-chain"
