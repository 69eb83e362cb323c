"""The commit rule (three-chain of direct parents, consecutive views) and the block tree's commit."""

from __future__ import annotations

import pytest
from core_helpers import GENESIS_BLOCK, GENESIS_QC, Cluster, chain, make_block, make_qc, qc_for, tree_with

from bft.core.blocktree import BlockTree
from bft.core.commit_rule import THREE_CHAIN, committed_by
from bft.core.errors import InvariantViolation
from bft.core.messages import Block


def test_three_chain_with_consecutive_views_commits_the_first_block() -> None:
    b1, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    tree = tree_with([b1, b2, b3])
    assert committed_by(tree, b3, THREE_CHAIN) == b1


def test_consecutive_views_anywhere_in_the_chain_commit() -> None:
    b, b1, b2 = chain(GENESIS_BLOCK, [5, 6, 7])
    assert committed_by(tree_with([b, b1, b2]), b2, THREE_CHAIN) == b


def _base() -> list[Block]:
    """A first block at view 1 (consecutive with genesis' view 0): chains built on it at views
    10 and above never form a consecutive run with it."""
    return chain(GENESIS_BLOCK, [1])


@pytest.mark.parametrize(
    "views",
    [
        (10, 11, 13),  # gap between b' and b''
        (10, 12, 13),  # gap between b and b'
        (10, 12, 14),  # gaps everywhere
        (11, 12, 19),
        (10, 15, 16),
    ],
)
def test_non_consecutive_views_never_commit(views: tuple[int, int, int]) -> None:
    base = _base()
    blocks = chain(base[0], views)
    tree = tree_with([*base, *blocks])
    for certified in blocks:
        assert committed_by(tree, certified, THREE_CHAIN) is None
    # Extending the tip in consecutive views makes the chain commit again (the rule is live).
    extra = make_block(blocks[-1], views[-1] + 1)
    last = make_block(extra, views[-1] + 2)
    tree.add(extra)
    tree.add(last)
    assert committed_by(tree, last, THREE_CHAIN) == blocks[-1]
    expected = blocks[-2] if views[-2] + 1 == views[-1] else None
    assert committed_by(tree, extra, THREE_CHAIN) == expected


def test_two_chain_does_not_commit() -> None:
    base = _base()
    b1, b2 = chain(base[0], [10, 11])
    tree = tree_with([*base, b1, b2])
    assert committed_by(tree, b2, THREE_CHAIN) is None
    assert committed_by(tree, b1, THREE_CHAIN) is None


def test_chain_whose_parent_is_missing_does_not_commit() -> None:
    b0, b1, b2, b3 = chain(GENESIS_BLOCK, [5, 6, 7, 8])
    # b1's parent b0 is not in this tree: b2 cannot reach it, b3 reaches b1.
    tree = BlockTree(b1, qc_for(b1))
    tree.add(b2)
    tree.add(b3)
    assert committed_by(tree, b2, THREE_CHAIN) is None
    assert committed_by(tree, b3, THREE_CHAIN) == b1
    assert b0.id not in tree


def test_commit_returns_all_uncommitted_ancestors_oldest_first_with_their_qcs() -> None:
    b1, b2, b3, b4, b5 = chain(GENESIS_BLOCK, [1, 2, 3, 4, 5])
    tree = tree_with([b1, b2, b3, b4, b5])
    blocks, qcs = tree.commit(b3)
    assert blocks == (b1, b2, b3)
    assert qcs == (b2.qc, b3.qc, b4.qc)
    assert [qc.block_id for qc in qcs] == [b.id for b in blocks]
    assert tree.root == b3
    # The next commit starts right above the new root.
    blocks, qcs = tree.commit(b4)
    assert blocks == (b4,)
    assert qcs == (b5.qc,)


def test_commit_prunes_forks_and_blocks_below_the_root() -> None:
    b1, b2, b3, b4 = chain(GENESIS_BLOCK, [1, 2, 3, 4])
    fork_low = make_block(GENESIS_BLOCK, 2, txs=(b"fork-low",))
    fork_mid = make_block(b1, 3, txs=(b"fork-mid",))
    fork_high = make_block(fork_mid, 5, qc=make_qc(fork_mid.id, 3))
    tree = tree_with([b1, b2, b3, b4, fork_low, fork_mid, fork_high])
    tree.commit(b2)
    for gone in (GENESIS_BLOCK, b1, fork_low, fork_mid, fork_high):
        assert gone.id not in tree
        assert tree.qc_for(gone.id) is None
    for kept in (b2, b3, b4):
        assert tree.get(kept.id) == kept
    assert len(tree) == 3


def test_commit_of_a_block_not_extending_the_root_is_an_invariant_violation() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    fork1 = make_block(GENESIS_BLOCK, 2, txs=(b"fork",))
    fork2 = make_block(fork1, 3, qc=make_qc(fork1.id, 2))
    tree = tree_with([b1, b2, fork1, fork2])
    tree.commit(b1)
    root_before = tree.root
    # A pruned sibling at the root's height, and a descendant of a pruned block.
    with pytest.raises(InvariantViolation):
        tree.commit(fork1)
    with pytest.raises(InvariantViolation):
        tree.commit(fork2)
    # Even with a QC on record for the pruned fork's block.
    tree.record_qc(make_qc(fork2.id, 3))
    with pytest.raises(InvariantViolation):
        tree.commit(fork2)
    # The root itself is already committed.
    with pytest.raises(InvariantViolation):
        tree.commit(b1)
    assert tree.root == root_before
    assert b2.id in tree


def test_commit_of_a_block_with_no_known_qc_is_an_invariant_violation() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    tree = tree_with([b1, b2])
    # b2 is in the tree but nothing certifies it.
    with pytest.raises(InvariantViolation):
        tree.commit(b2)


def test_tree_keeps_the_highest_qc_per_block() -> None:
    b1 = make_block(GENESIS_BLOCK, 1)
    tree = tree_with([b1])
    tree.record_qc(make_qc(b1.id, 3))
    tree.record_qc(make_qc(b1.id, 2))
    qc = tree.qc_for(b1.id)
    assert qc is not None and qc.view == 3


def test_tree_refuses_blocks_that_do_not_follow_their_parent() -> None:
    b1 = make_block(GENESIS_BLOCK, 2)
    tree = tree_with([b1])
    with pytest.raises(InvariantViolation):
        tree.add(make_block(b1, 2))  # view not above the parent's
    with pytest.raises(InvariantViolation):
        tree.add(make_block(b1, 3, height=5))
    with pytest.raises(InvariantViolation):
        tree.add(make_block(make_block(b1, 3), 4))  # parent unknown
    with pytest.raises(InvariantViolation):
        BlockTree(GENESIS_BLOCK, make_qc(b1.id, 2))
    assert GENESIS_QC.block_id == GENESIS_BLOCK.id


def test_every_commit_carries_the_three_chain_that_proves_it() -> None:

    cluster = Cluster()
    cluster.run(lambda: min(cluster.heights()) >= 8)
    for actions in cluster.commit_actions:
        assert actions
        for commit in actions:
            b = commit.blocks[-1]
            b1, b2 = commit.proof
            assert (b1.parent_id, b2.parent_id) == (b.id, b1.id)
            assert (b1.view, b2.view) == (b.view + 1, b.view + 2), "consecutive views"
            assert (commit.commit_qc.block_id, commit.commit_qc.view) == (b2.id, b2.view)
