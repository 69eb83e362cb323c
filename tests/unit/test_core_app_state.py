"""The replica's application-state rules: which state a proposal commits to, and the vote check."""

from __future__ import annotations

from dataclasses import replace

from core_helpers import (
    GENESIS_BLOCK,
    KEYS,
    Cluster,
    MemoryStore,
    Payload,
    config,
    leader,
    make_block,
    make_proposal,
    refusals,
    sent_messages,
)

from bft.core.actions import Action, Commit
from bft.core.app_state import BlockHashChain
from bft.core.messages import Block, Proposal, Vote
from bft.core.replica import Replica
from bft.core.types import GENESIS_APP_HASH


class FixedState:
    """An executed state the test controls: app hashes by height and the latest height."""

    def __init__(self, hashes: dict[int, bytes]) -> None:
        self.hashes = dict(hashes)

    def executed(self) -> tuple[int, bytes]:
        height = max(self.hashes)
        return height, self.hashes[height]

    def app_hash_at(self, height: int) -> bytes | None:
        return self.hashes.get(height)


def voter(state: FixedState) -> tuple[int, Replica]:
    me = next(i for i in range(4) if i not in (leader(1), leader(2)))
    return me, Replica(config(me), KEYS[me], MemoryStore(), Payload(me), app_state=state)


def votes(actions: list[object]) -> list[Vote]:
    return [m for m in sent_messages(actions) if isinstance(m, Vote)]  # type: ignore[arg-type]


def refusal_text(actions: list[object]) -> str:
    return " | ".join(str(r) for r in refusals(actions))  # type: ignore[arg-type]


def propose(replica: Replica, block: Block) -> list[object]:
    return list(replica.on_message(leader(block.view), make_proposal(block), 0.0))


def test_a_block_whose_app_hash_differs_from_ours_gets_no_vote() -> None:
    _, replica = voter(FixedState({0: GENESIS_APP_HASH}))
    bad = replace(make_block(GENESIS_BLOCK, 1), app_height=0, app_hash=b"\x01" * 32)
    actions = propose(replica, bad)
    assert votes(actions) == []
    assert "app hash at height 0" in refusal_text(actions)
    assert replica.safety_state.last_voted_view == 0


def test_a_matching_app_hash_gets_a_vote() -> None:
    _, replica = voter(FixedState({0: GENESIS_APP_HASH}))
    assert len(votes(propose(replica, make_block(GENESIS_BLOCK, 1)))) == 1


def test_an_app_height_not_below_the_block_height_gets_no_vote() -> None:
    _, replica = voter(FixedState({0: GENESIS_APP_HASH}))
    bad = replace(make_block(GENESIS_BLOCK, 1), app_height=1)
    actions = propose(replica, bad)
    assert votes(actions) == []
    assert "not below the block's height" in refusal_text(actions)


def test_an_app_height_going_back_along_the_chain_gets_no_vote() -> None:
    _, replica = voter(FixedState({0: GENESIS_APP_HASH, 1: b"\x07" * 32}))
    b1 = make_block(GENESIS_BLOCK, 1)
    b2 = replace(make_block(b1, 2), app_height=1, app_hash=b"\x07" * 32)
    assert len(votes(propose(replica, b1))) == 1
    assert len(votes(propose(replica, b2))) == 1
    rewinding = make_block(b2, 3)  # claims height 0, below its parent's claim of height 1
    actions = propose(replica, rewinding)
    assert votes(actions) == []
    assert "below its parent's" in refusal_text(actions)


def test_a_claim_for_a_height_we_have_not_executed_is_not_checked_yet() -> None:
    _, replica = voter(FixedState({0: GENESIS_APP_HASH}))
    b1 = make_block(GENESIS_BLOCK, 1)
    assert len(votes(propose(replica, b1))) == 1
    ahead = replace(make_block(b1, 2), app_height=1, app_hash=b"\x09" * 32)
    assert len(votes(propose(replica, ahead))) == 1


def test_the_leader_commits_to_its_latest_executed_state() -> None:
    me = leader(1)
    state = FixedState({0: GENESIS_APP_HASH})
    replica = Replica(config(me), KEYS[me], MemoryStore(), Payload(me), app_state=state)
    proposals = [m for m in sent_messages(replica.on_timer(0.0)) if isinstance(m, Proposal)]
    assert len(proposals) == 1
    assert (proposals[0].block.app_height, proposals[0].block.app_hash) == (0, GENESIS_APP_HASH)


def test_replicas_without_an_application_agree_on_the_block_hash_chain() -> None:
    cluster = Cluster()
    cluster.run(lambda: min(cluster.heights()) >= 8)
    claims = {(b.app_height, b.app_hash) for blocks in cluster.commits for b in blocks}
    assert max(h for h, _ in claims) >= 3, "later blocks commit to executed heights above genesis"
    # Every claim names the hash of the block committed at that height (or genesis).
    by_height = {b.height: b for b in cluster.commits[0]}
    for height, app_hash in claims:
        expected = GENESIS_APP_HASH if height == 0 else BlockHashChain(by_height[height]).executed()[1]
        assert app_hash == expected
    assert all(not r for r in cluster.refused), cluster.refused


# Batching by size and by a maximum delay.


class Trickle:
    """A payload the test fills: hands out what it holds, minus what the chain already has."""

    def __init__(self) -> None:
        self.txs: list[bytes] = []

    def payload_for(self, view: object, exclude: object) -> tuple[bytes, ...]:
        return tuple(tx for tx in self.txs if tx not in exclude)  # type: ignore[operator]


def batching_leader(max_block_txs: int = 3) -> tuple[Replica, Trickle]:
    payload = Trickle()
    me = leader(1)
    cfg = config(me, max_batch_delay_s=0.2, max_block_txs=max_block_txs)
    return Replica(cfg, KEYS[me], MemoryStore(), payload), payload


def proposals_in(actions: list[object]) -> list[Proposal]:
    return [m for m in sent_messages(actions) if isinstance(m, Proposal)]  # type: ignore[arg-type]


def test_a_leader_with_a_partial_batch_waits_at_most_the_batch_delay() -> None:
    replica, payload = batching_leader()
    payload.txs = [b"one"]
    assert proposals_in(list(replica.on_timer(0.0))) == []
    assert replica.next_deadline() == 0.2
    assert proposals_in(list(replica.on_timer(0.1))) == []
    sent = proposals_in(list(replica.on_timer(0.2)))
    assert [p.block.txs for p in sent] == [(b"one",)]


def test_a_full_batch_goes_out_as_soon_as_the_payload_fills() -> None:
    replica, payload = batching_leader(max_block_txs=3)
    assert proposals_in(list(replica.on_timer(0.0))) == []
    payload.txs = [b"a", b"b"]
    assert proposals_in(list(replica.on_payload(0.05))) == []
    payload.txs = [b"a", b"b", b"c"]
    sent = proposals_in(list(replica.on_payload(0.06)))
    assert [p.block.txs for p in sent] == [(b"a", b"b", b"c")]
    assert proposals_in(list(replica.on_timer(0.2))) == [], "one proposal per view"


def test_batch_delay_must_stay_below_the_view_timeout() -> None:
    import pytest

    with pytest.raises(ValueError, match="max_batch_delay_s"):
        config(0, max_batch_delay_s=1.0, base_timeout_s=1.0)


def test_an_idle_cluster_with_a_batch_delay_keeps_committing_without_timeouts() -> None:
    cluster = Cluster(overrides={"max_batch_delay_s": 0.1})
    for replica in cluster.replicas:
        replica._payload = Trickle()  # nothing to propose: every block is an empty one
    cluster.run(lambda: min(cluster.heights()) >= 6)
    vias = {c.via for changes in cluster.view_changes for c in changes}
    assert vias == {"qc"}, f"views advanced only through QCs, not timeouts: {vias}"
    assert cluster.now >= 0.1 * 6, "each view waited for its batch delay"


# No transaction commits twice, with a driver that learns of commits only after each input.


class ReOffering:
    """A mempool's behaviour: offers its transactions until the driver has seen them committed."""

    def __init__(self, me: int, committed: set[bytes]) -> None:
        self.me = me
        self.committed = committed
        self.pending: list[bytes] = []
        self.next = 0

    def payload_for(self, view: object, exclude: object) -> tuple[bytes, ...]:
        self.pending = [tx for tx in self.pending if tx not in self.committed]
        self.pending.append(f"tx-{self.me}-{self.next}".encode())
        self.next += 1
        return tuple(tx for tx in self.pending if tx not in exclude)  # type: ignore[operator]


def test_a_block_committed_by_this_input_is_not_proposed_or_accepted_again() -> None:
    """The node's block store (hence `committed_tx`) learns of a commit when the driver carries out
    the Commit action, after the input that caused it. A leader whose QC commits a block and who
    proposes in the same step must not re-offer that block's transactions, and voters handling the
    same QC must refuse them. (Found by the 5,000-put cluster test: thousands of puts committed
    twice.)"""
    committed: list[set[bytes]] = [set() for _ in range(4)]
    cluster = Cluster()
    for i, replica in enumerate(cluster.replicas):
        replica._committed_tx = committed[i].__contains__
        replica._remember_commits = False
        replica._payload = ReOffering(i, committed[i])
    handle = cluster.handle

    def handle_then_record(i: int, actions: list[Action]) -> None:
        handle(i, actions)
        for action in actions:
            if isinstance(action, Commit):
                for block in action.blocks:
                    committed[i].update(block.txs)

    cluster.handle = handle_then_record  # type: ignore[method-assign]
    cluster.run(lambda: min(cluster.heights()) >= 12)
    for i in range(4):
        txs = [tx for block in cluster.commits[i] for tx in block.txs]
        assert len(txs) == len(set(txs)), f"replica {i} committed a transaction twice"
        assert len(txs) >= 12, "every block carried a transaction"
