"""The replica's application-state rules: which state a proposal commits to, and the vote check."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    Cluster,
    config,
    leader,
    make_block,
    make_proposal,
    make_replica,
    refusals,
    sent_messages,
)

from bft.core.actions import Action
from bft.core.app_state import claim_height
from bft.core.commit_rule import THREE_CHAIN
from bft.core.messages import Block, Proposal, Vote
from bft.core.replica import Replica
from bft.core.types import GENESIS_APP_HASH, View
from crypto.hashing import sha256


def voter() -> Replica:
    me = next(i for i in range(4) if i not in {leader(v) for v in range(1, 6)})
    return make_replica(me)


def votes(actions: list[Action]) -> list[Vote]:
    return [m for m in sent_messages(actions) if isinstance(m, Vote)]


def refusal_text(actions: list[Action]) -> str:
    return " | ".join(str(r) for r in refusals(actions))


def propose(replica: Replica, block: Block) -> list[Action]:
    return list(replica.on_message(leader(block.view), make_proposal(block), 0.0))


def chain_hash(block: Block) -> bytes:
    """BlockHashChain's app hash after `block` (the stand-in application of core tests)."""
    return sha256(b"bft-block-chain/v1" + block.id)


def three_consecutive() -> list[Block]:
    """b1, b2, b3 in views 1, 2, 3: a QC for b3 commits b1, so b3's child claims height 1."""
    b1 = make_block(GENESIS_BLOCK, 1)
    b2 = make_block(b1, 2)
    b3 = make_block(b2, 3)
    return [b1, b2, b3]


def test_the_claim_height_follows_the_chain() -> None:
    b1, b2, b3 = three_consecutive()
    assert claim_height(b1, GENESIS_BLOCK, THREE_CHAIN) == 0
    assert claim_height(b3, b2, THREE_CHAIN) == 1, "a QC for b3 commits b1"
    gap = make_block(b2, 4)  # views 2, 4: the QC for `gap` commits nothing
    assert claim_height(gap, b2, THREE_CHAIN) == 0
    claimed_b1 = replace(gap, app_height=1, app_hash=chain_hash(b1))
    assert claim_height(claimed_b1, b2, THREE_CHAIN) == 1, "never goes back"
    assert claim_height(b3, None, THREE_CHAIN) == 0


def test_a_true_claim_gets_a_vote_and_a_false_one_does_not() -> None:
    replica = voter()
    b1, b2, b3 = three_consecutive()
    for b in (b1, b2, b3):
        assert len(votes(propose(replica, b))) == 1
    true = replace(make_block(b3, 4), app_height=1, app_hash=chain_hash(b1))
    false = replace(true, app_hash=b"\x01" * 32)
    actions = propose(voter_after(b1, b2, b3), false)
    assert votes(actions) == [] and "app hash at height 1" in refusal_text(actions)
    assert len(votes(propose(replica, true))) == 1, "the QC for b3 committed b1, executed before the vote"


def voter_after(*blocks: Block) -> Replica:
    replica = voter()
    for b in blocks:
        assert len(votes(propose(replica, b))) == 1
    return replica


def test_a_claim_about_another_height_gets_no_vote() -> None:
    b1, b2, b3 = three_consecutive()
    for height, app_hash in ((0, GENESIS_APP_HASH), (2, chain_hash(b2)), (3, chain_hash(b3))):
        bad = replace(make_block(b3, 4), app_height=height, app_hash=app_hash)
        actions = propose(voter_after(b1, b2, b3), bad)
        assert votes(actions) == [], height
        assert "the chain fixes 1" in refusal_text(actions)


def test_each_new_commit_moves_the_claim_and_a_false_hash_for_it_gets_no_vote() -> None:
    b1, b2, b3 = three_consecutive()
    child = replace(make_block(b3, 4), app_height=1, app_hash=chain_hash(b1))
    # A QC for `child` commits b2, so a grandchild claims height 2; its hash must be b2's.
    assert claim_height(child, b3, THREE_CHAIN) == 2
    grandchild_false = replace(make_block(child, 5), app_height=2, app_hash=b"\x02" * 32)
    replica = voter_after(b1, b2, b3, child)
    actions = propose(replica, grandchild_false)
    assert votes(actions) == [] and "app hash at height" in refusal_text(actions)


def test_replicas_agree_on_every_claim_and_refuse_none() -> None:
    cluster = Cluster()
    cluster.run(lambda: min(cluster.heights()) >= 10)
    assert all(not r for r in cluster.refused), cluster.refused
    chain = {b.height: b for b in cluster.commits[0]}
    chain[0] = GENESIS_BLOCK
    claimed = set()
    for height in range(2, max(chain) + 1):
        block, parent = chain[height], chain[height - 1]
        expected = claim_height(parent, chain.get(height - 2), THREE_CHAIN)
        assert block.app_height == expected
        assert block.app_hash == (GENESIS_APP_HASH if expected == 0 else chain_hash(chain[expected]))
        claimed.add(expected)
    assert max(claimed) >= 5, "claims move up the chain as blocks commit"


# Pacing: a leader with transactions proposes at once; only an idle one waits the batch delay.


class Trickle:
    """A payload the test fills: hands out what it holds, minus what the chain already has."""

    def __init__(self) -> None:
        self.txs: list[bytes] = []

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        return tuple(tx for tx in self.txs if tx not in exclude)


def batching_leader(max_block_txs: int = 3) -> tuple[Replica, Trickle]:
    payload = Trickle()
    me = leader(1)
    return make_replica(me, payload=payload, max_batch_delay_s=0.2, max_block_txs=max_block_txs), payload


def proposals_in(actions: list[Action]) -> list[Proposal]:
    return [m for m in sent_messages(actions) if isinstance(m, Proposal)]


def test_a_leader_with_one_transaction_proposes_at_once() -> None:
    replica, payload = batching_leader()
    payload.txs = [b"one"]
    sent = proposals_in(list(replica.on_timer(0.0)))
    assert [p.block.txs for p in sent] == [(b"one",)]


def test_an_idle_leader_waits_the_batch_delay_and_a_transaction_ends_the_wait() -> None:
    replica, payload = batching_leader(max_block_txs=3)
    assert proposals_in(list(replica.on_timer(0.0))) == []
    assert replica.next_deadline() == 0.2
    payload.txs = [b"a"]
    sent = proposals_in(list(replica.on_payload(0.05)))
    assert [p.block.txs for p in sent] == [(b"a",)]
    assert proposals_in(list(replica.on_timer(0.2))) == [], "one proposal per view"


def test_an_idle_leader_proposes_an_empty_block_after_the_batch_delay() -> None:
    replica, _ = batching_leader()
    assert proposals_in(list(replica.on_timer(0.0))) == []
    assert proposals_in(list(replica.on_timer(0.1))) == []
    sent = proposals_in(list(replica.on_timer(0.2)))
    assert [p.block.txs for p in sent] == [()]


def test_batch_delay_must_stay_below_the_view_timeout() -> None:
    with pytest.raises(ValueError, match="max_batch_delay_s"):
        config(0, max_batch_delay_s=1.0, base_timeout_s=1.0)


def test_an_idle_cluster_with_a_batch_delay_keeps_committing_without_timeouts() -> None:
    cluster = Cluster(overrides={"max_batch_delay_s": 0.1})
    for i in range(4):  # nothing to propose: every block is an empty one
        cluster.replicas[i] = make_replica(
            i, cluster.stores[i], chain=cluster.chains[i], payload=Trickle(), max_batch_delay_s=0.1
        )
    cluster.run(lambda: min(cluster.heights()) >= 6)
    vias = {c.via for changes in cluster.view_changes for c in changes}
    assert vias == {"qc"}, f"views advanced only through QCs, not timeouts: {vias}"
    assert cluster.now >= 0.1 * 6 - 1e-9, "each view waited for its batch delay"


class Once:
    """A payload that hands out its transactions to one proposal only."""

    def __init__(self, txs: list[bytes]) -> None:
        self.txs = txs

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        out, self.txs = tuple(self.txs), []
        return out


def test_a_lone_transaction_commits_everywhere_without_waiting_the_batch_delay() -> None:
    """The leaders after a block with transactions propose at once, empty blocks or not, until
    every replica knows it committed: the fourth view's proposal carries the QC that tells the
    followers (it used to wait the whole batch delay, seeing nothing pending)."""
    cluster = Cluster(overrides={"max_batch_delay_s": 0.1})
    first = leader(1)
    for i in range(4):
        payload = Once([b"lone"] if i == first else [])
        cluster.replicas[i] = make_replica(
            i, cluster.stores[i], chain=cluster.chains[i], payload=payload, max_batch_delay_s=0.1
        )

    def everywhere() -> bool:
        return all(any(b"lone" in b.txs for b in cluster.commits[i]) for i in range(4))

    cluster.run(everywhere)
    assert cluster.now == 0.0, f"a leader waited the batch delay: committed everywhere at {cluster.now}s"
    cluster.run(lambda: cluster.now >= 0.35)
    assert max(cluster.heights()) <= 8, "then, idle, the chain paces its empty blocks"


# No transaction commits twice, even when the payload offers committed ones again.


class ReOffering:
    """A payload that breaks its contract: it offers every transaction it ever handed out again,
    committed or not (a mempool that never hears of commits)."""

    def __init__(self, me: int) -> None:
        self.me = me
        self.offered: list[bytes] = []

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        self.offered.append(f"tx-{self.me}-{len(self.offered)}".encode())
        return tuple(tx for tx in self.offered if tx not in exclude)


def test_a_committed_transaction_offered_again_is_never_committed_twice() -> None:
    """Commits are durable in the committed chain as soon as the replica hands them to the
    executed-state port, within the input that commits them, so voters refuse a block that
    repeats a committed transaction even when its leader committed it in the same step. (Found
    by the 5,000-put cluster test: thousands of puts committed twice, when the store learned of
    commits only after the input.)"""
    cluster = Cluster()
    for i in range(4):
        cluster.replicas[i] = make_replica(
            i, cluster.stores[i], chain=cluster.chains[i], payload=ReOffering(i)
        )
    cluster.run(lambda: min(cluster.heights()) >= 12, max_steps=40_000)
    for i in range(4):
        txs = [tx for block in cluster.commits[i] for tx in block.txs]
        assert len(txs) == len(set(txs)), f"replica {i} committed a transaction twice"
    refused = [str(r) for rs in cluster.refused for r in rs]
    assert any("already in the chain" in r for r in refused), "the re-offered transactions were refused"
