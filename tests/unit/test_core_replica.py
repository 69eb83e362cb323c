"""The replica facade driven through `on_message` / `on_timer`, alone and as a 4-replica cluster."""

from __future__ import annotations

import itertools

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    GENESIS_QC,
    Cluster,
    MemoryStore,
    N,
    certifier,
    encoded,
    leader,
    make_block,
    make_proposal,
    make_qc,
    make_replica,
    make_tc,
    of_type,
    qc_for,
    refusals,
    sent_messages,
    sign_timeout,
    sign_vote,
    vi,
)

from bft.core.actions import Action, Broadcast, Commit, Send, ViewChange
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Proposal,
    SyncInfo,
    Timeout,
    Vote,
)
from bft.core.proposal_rules import MAX_BLOCKS_PER_VIEW
from bft.core.refusals import RefusalReason, Subject
from bft.core.replica import Replica
from bft.core.types import BlockId, View
from crypto.hashing import sha256


def not_in(*excluded: int) -> int:
    return next(i for i in range(N) if i not in excluded)


def votes_in(actions: list[Action]) -> list[Vote]:
    return [m for m in sent_messages(actions) if isinstance(m, Vote)]


def timeouts_in(actions: list[Action]) -> list[Timeout]:
    return [m for m in sent_messages(actions) if isinstance(m, Timeout)]


def refused_with(actions: list[Action], text: str, reason: RefusalReason | None = None) -> None:
    """Some refusal's log line contains `text`, and (if given) that refusal is of `reason`."""
    found = [r for r in refusals(actions) if text in str(r)]
    assert found, f"no refusal containing {text!r} in {[str(r) for r in refusals(actions)]}"
    assert reason is None or any(r.reason is reason for r in found), f"{found} are not {reason}"


def pending_proposals(replica: Replica) -> int:
    return replica.statistics()["waiting_proposals"]


# --- a cluster of four -------------------------------------------------------------------------


def check_commits_agree(cluster: Cluster, at_least: int) -> None:
    reference: dict[int, bytes] = {}
    c = certifier()
    for i in range(N):
        blocks = cluster.commits[i]
        assert [b.height for b in blocks] == list(range(1, len(blocks) + 1)), "gap or repeat in heights"
        for parent, child in itertools.pairwise([GENESIS_BLOCK, *blocks]):
            assert child.parent_id == parent.id
        for b in blocks:
            assert reference.setdefault(b.height, b.id) == b.id, f"replicas disagree at height {b.height}"
        for commit in cluster.commit_actions[i]:
            assert len(commit.qcs) == len(commit.blocks)
            for block, qc in zip(commit.blocks, commit.qcs, strict=True):
                assert qc.block_id == block.id
                assert c.check_qc(qc) is None
            assert c.check_qc(commit.commit_qc) is None
    assert min(len(blocks) for blocks in cluster.commits) >= at_least


def check_safety_stores_monotone(cluster: Cluster) -> None:
    for store in cluster.stores:
        for before, after in itertools.pairwise(store.saves):
            assert after.last_voted_view >= before.last_voted_view
            assert after.highest_timeout_view >= before.highest_timeout_view
            assert after.locked_qc.view >= before.locked_qc.view


@pytest.mark.parametrize("lifo", [False, True], ids=["fifo", "lifo"])
def test_four_replicas_commit_the_same_chain(lifo: bool) -> None:
    cluster = Cluster(lifo=lifo)
    cluster.run(lambda: min(cluster.heights()) >= 12, max_steps=20_000)
    check_commits_agree(cluster, at_least=12)
    check_safety_stores_monotone(cluster)
    # Transactions from the payload source reach the committed blocks.
    assert any(b.txs for b in cluster.commits[0])
    # No honest replica double-voted: one vote per (author, view) on the wire.
    seen: dict[tuple[int, int], bytes] = {}
    for _, _, msg in cluster.delivered:
        if isinstance(msg, Vote):
            assert seen.setdefault((msg.author, msg.view), encoded(msg)) == encoded(msg)


def test_cluster_survives_one_silent_replica_and_it_catches_up() -> None:
    """A lagging replica that missed several views fetches the blocks and commits the same chain."""
    cluster = Cluster()
    cluster.run(lambda: min(cluster.heights()) >= 3)
    lagging = 3
    cluster.down.add(lagging)
    lag_height = cluster.heights()[lagging]
    cluster.run(lambda: min(h for i, h in enumerate(cluster.heights()) if i != lagging) >= lag_height + 8)
    assert cluster.heights()[lagging] == lag_height
    cluster.down.clear()
    target = max(cluster.heights())
    delivered_before = len(cluster.delivered)
    view_before = max(r.view for r in cluster.replicas)
    cluster.run(lambda: cluster.heights()[lagging] >= target)
    # Promptly: the first proposal it sees leads it to fetch what it missed (not after many
    # views of refused responses and retries).
    assert max(r.view for r in cluster.replicas) - view_before <= 3
    after = cluster.delivered[delivered_before:]
    assert any(src == lagging and isinstance(m, BlockRequest) for src, _, m in after)
    assert any(dst == lagging and isinstance(m, BlockResponse) for _, dst, m in after)
    check_commits_agree(cluster, at_least=target)
    check_safety_stores_monotone(cluster)


# --- proposals -------------------------------------------------------------------------------


def first_block(proposer: int | None = None, txs: tuple[bytes, ...] = (b"tx",)) -> Block:
    return make_block(GENESIS_BLOCK, 1, proposer=proposer, txs=txs)


def test_valid_proposal_gets_a_vote_sent_to_the_next_leader() -> None:
    me = not_in(leader(1), leader(2))
    replica = make_replica(me)
    block = first_block()
    actions = replica.on_message(leader(1), make_proposal(block), 0.0)
    sends = of_type(actions, Send)
    assert len(sends) == 1
    assert sends[0].to == leader(2)
    vote = sends[0].msg
    assert isinstance(vote, Vote)
    assert (vote.view, vote.block_id, vote.author) == (1, block.id, me)
    assert certifier().check_vote(vote) is None
    assert refusals(actions) == []


def test_proposal_from_the_wrong_leader_is_refused() -> None:
    me = not_in(leader(1))
    wrong = not_in(leader(1), me)
    replica = make_replica(me)
    actions = replica.on_message(vi(wrong), make_proposal(first_block(proposer=wrong)), 0.0)
    refused_with(actions, "wrong leader", RefusalReason.WRONG_LEADER)
    assert votes_in(actions) == []
    assert replica.safety_state.last_voted_view == 0


def test_proposal_whose_author_is_not_the_sender_is_refused() -> None:
    me = not_in(leader(1))
    relay = not_in(leader(1), me)
    replica = make_replica(me)
    actions = replica.on_message(vi(relay), make_proposal(first_block()), 0.0)
    refused_with(actions, "not the sender", RefusalReason.NOT_THE_SENDER)
    assert votes_in(actions) == []


def test_proposal_with_a_bad_signature_or_forged_qc_is_refused() -> None:
    me = not_in(leader(1), leader(2))
    replica = make_replica(me)
    block = first_block()
    forged = Proposal(block, None, make_proposal(block, signer=me).signature)
    refused_with(replica.on_message(leader(1), forged, 0.0), "bad signature", RefusalReason.BAD_SIGNATURE)
    b2 = make_block(block, 2, qc=make_qc(block.id, 1, (0, 1)))
    refused_with(
        replica.on_message(leader(2), make_proposal(b2), 0.0), "distinct signers", RefusalReason.BAD_QC
    )
    assert replica.view == 1
    assert replica.safety_state.last_voted_view == 0


def test_proposal_skipping_a_view_without_a_tc_is_refused() -> None:
    me = not_in(leader(1), leader(3))
    replica = make_replica(me)
    b1 = first_block()
    replica.on_message(leader(1), make_proposal(b1), 0.0)
    skipping = make_block(b1, 3)
    actions = replica.on_message(leader(3), make_proposal(skipping), 0.0)
    refused_with(actions, "without a TC", RefusalReason.SKIPS_VIEWS)
    assert votes_in(actions) == []


def test_proposal_over_the_transaction_limit_is_refused() -> None:
    me = not_in(leader(1))
    replica = make_replica(me, max_block_txs=2)
    block = first_block(txs=(b"a", b"b", b"c"))
    refused_with(
        replica.on_message(leader(1), make_proposal(block), 0.0), "exceed", RefusalReason.OVER_BLOCK_LIMIT
    )


def test_proposal_repeating_a_transaction_is_refused() -> None:
    me = not_in(leader(1), leader(2), leader(3))
    replica = make_replica(me)
    twice = first_block(txs=(b"a", b"a"))
    refused_with(
        replica.on_message(leader(1), make_proposal(twice), 0.0), "twice", RefusalReason.DUPLICATE_TX
    )
    b1 = first_block(txs=(b"a",))
    assert len(votes_in(replica.on_message(leader(1), make_proposal(b1), 0.0))) == 1
    again = make_block(b1, 2, txs=(b"b", b"a"))
    actions = replica.on_message(leader(2), make_proposal(again), 0.0)
    refused_with(actions, "already in the chain", RefusalReason.DUPLICATE_TX)
    assert votes_in(actions) == []


def test_a_restarted_leader_never_proposes_twice_in_a_view() -> None:
    me = leader(2)
    store = MemoryStore()
    b1 = first_block()
    first = make_replica(me, store)
    if me != leader(1):
        first.on_message(leader(1), make_proposal(b1), 0.0)
    proposals: list[Proposal] = []
    for voter in [i for i in range(N) if i != me]:
        proposals += [
            m
            for m in sent_messages(first.on_message(vi(voter), sign_vote(voter, 1, b1.id), 0.0))
            if isinstance(m, Proposal)
        ]
    assert [p.view for p in proposals] == [2]
    assert store.state is not None and store.state.last_voted_view == 2
    # Crash; restart; learn QC(b1) again and fetch b1: the leader must not propose in view 2 again.
    restarted = make_replica(me, store)
    assert restarted.view == 2
    actions: list[Action] = []
    for voter in [i for i in range(N) if i != me]:
        actions += restarted.on_message(vi(voter), sign_vote(voter, 1, b1.id), 0.0)
    for request in [s for s in of_type(actions, Send) if isinstance(s.msg, BlockRequest)]:
        actions += restarted.on_message(request.to, BlockResponse((b1,)), 0.0)
    assert restarted.has_block(b1.id)
    assert [m for m in sent_messages(actions) if isinstance(m, Proposal)] == []


def test_messages_from_unknown_or_own_sender_are_refused() -> None:
    replica = make_replica(0)
    vote = sign_vote(1, 1, GENESIS_BLOCK.id)
    for sender, msg in ((vi(7), vote), (vi(0), sign_vote(0, 1, GENESIS_BLOCK.id))):
        (refusal,) = refusals(replica.on_message(sender, msg, 0.0))
        assert (refusal.what, refusal.reason, refusal.sender) == (
            Subject.MESSAGE,
            RefusalReason.UNKNOWN_SENDER,
            sender,
        )
        assert str(refusal) == f"ignoring message: unknown or own sender {sender} (Vote)"


def test_a_restarted_replica_never_votes_for_a_different_block_in_the_same_view() -> None:
    me = not_in(leader(1), leader(2))
    store = MemoryStore()
    block_a = first_block(txs=(b"A",))
    block_b = first_block(txs=(b"B",))
    first = votes_in(make_replica(me, store).on_message(leader(1), make_proposal(block_a), 0.0))
    assert [v.block_id for v in first] == [block_a.id]
    # Crash after the vote was persisted; the equivocating leader now shows block B.
    restarted = make_replica(me, store)
    again = votes_in(restarted.on_message(leader(1), make_proposal(block_b), 0.0))
    for vote in again:
        assert encoded(vote) == encoded(first[0])
    assert all(s.last_vote == encoded(first[0]) for s in store.saves)


def test_a_failed_save_releases_no_vote_now_or_later() -> None:
    me = not_in(leader(1), leader(2))
    store = MemoryStore()
    replica = make_replica(me, store)
    store.fail = True
    with pytest.raises(OSError):
        replica.on_message(leader(1), make_proposal(first_block()), 0.0)
    store.fail = False
    later = replica.on_message(vi(not_in(me)), BlockRequest(BlockId(sha256(b"?")), 1), 0.0)
    later += replica.on_timer(0.5)
    assert votes_in(later) == []
    assert replica.safety_state.last_voted_view == 0


def test_commit_needs_consecutive_views_end_to_end() -> None:
    """b1(1) <- b2(2) <- b3(4, after a TC) <- b4(5) <- b5(6) <- b6(7): nothing commits until the
    consecutive run b3, b4, b5 is certified (by b6's QC), which commits b1, b2, b3 at once."""
    leaders = (1, 2, 3) * 4
    replica = make_replica(0, leaders=leaders)
    b1 = make_block(GENESIS_BLOCK, 1, proposer=1)
    b2 = make_block(b1, 2, proposer=2)
    tc3 = make_tc(3, {1: qc_for(b1), 2: qc_for(b2), 3: qc_for(b2)})
    b3 = make_block(b2, 4, proposer=1)
    b4 = make_block(b3, 5, proposer=2)
    b5 = make_block(b4, 6, proposer=3)
    b6 = make_block(b5, 7, proposer=1)
    proposals = [
        make_proposal(b1),
        make_proposal(b2),
        make_proposal(b3, tc=tc3),
        make_proposal(b4),
        make_proposal(b5),
    ]
    for p in proposals:
        actions = replica.on_message(p.author, p, 0.0)
        assert of_type(actions, Commit) == [], f"committed after the proposal for view {p.view}"
        assert [v.block_id for v in votes_in(actions)] == [p.block.id]
    actions = replica.on_message(vi(1), make_proposal(b6), 0.0)
    (commit,) = of_type(actions, Commit)
    assert commit.blocks == (b1, b2, b3)
    assert [qc.block_id for qc in commit.qcs] == [b1.id, b2.id, b3.id]
    assert commit.commit_qc == b6.qc
    assert replica.committed_height == 3


# --- votes -------------------------------------------------------------------------------------


def test_vote_sent_to_a_replica_that_is_not_the_next_leader_is_refused() -> None:
    me = not_in(leader(2))
    voter = not_in(me)
    replica = make_replica(me)
    actions = replica.on_message(vi(voter), sign_vote(voter, 1, first_block().id), 0.0)
    refused_with(actions, "not the leader", RefusalReason.NOT_NEXT_LEADER)


def test_vote_whose_author_is_not_the_sender_is_refused() -> None:
    me = leader(2)
    author, relay = [i for i in range(N) if i != me][:2]
    replica = make_replica(me)
    refused_with(replica.on_message(vi(relay), sign_vote(author, 1, first_block().id), 0.0), "not the sender")


def test_next_leader_forms_a_qc_from_a_quorum_and_proposes() -> None:
    me = leader(2)
    replica = make_replica(me)
    b1 = first_block()
    if me != leader(1):
        replica.on_message(leader(1), make_proposal(b1), 0.0)
    voters = [i for i in range(N) if i != me]
    actions: list[Action] = []
    for v in voters:
        actions += replica.on_message(vi(v), sign_vote(v, 1, b1.id), 0.0)
    assert ViewChange(View(2), "qc") in actions
    (proposal,) = [m for m in sent_messages(actions) if isinstance(m, Proposal)]
    assert proposal.view == 2
    assert proposal.block.parent_id == b1.id
    assert proposal.block.qc.view == 1 and certifier().check_qc(proposal.block.qc) is None
    assert proposal.tc is None
    assert replica.high_qc == proposal.block.qc
    # A double vote from a voter is refused with a reason.
    refused_with(replica.on_message(vi(voters[0]), sign_vote(voters[0], 1, sha256(b"x")), 0.0), "twice")


# --- bounded buffering of far-future input -------------------------------------------------


def test_far_future_votes_and_timeouts_are_refused_and_buffers_stay_bounded() -> None:
    me = 0
    replica = make_replica(me)
    ahead = replica._config.max_views_ahead
    bound = ahead + 2
    views = list(range(1, 1501))
    refused_ahead = 0
    for order in (views, list(reversed(views))):
        for view in order:
            for voter in (1, 2):
                vote = sign_vote(voter, view, sha256(f"{voter}/{view}".encode()))
                actions = replica.on_message(vi(voter), vote, 0.0)
                if view > replica.view + ahead:
                    refused_with(actions, "ahead", RefusalReason.FUTURE_VIEW)
                    refused_ahead += 1
                assert replica.statistics()["vote_views"] <= bound
            timeout = sign_timeout(1, view, GENESIS_QC)
            actions = replica.on_message(vi(1), timeout, 0.0)
            if view > replica.view + ahead:
                refused_with(actions, "ahead", RefusalReason.FUTURE_VIEW)
            assert replica.statistics()["timeout_views"] <= bound
    assert refused_ahead > 2000
    # Nothing above moved the replica: one validator's timeouts are not f+1.
    assert replica.view == 1
    assert replica.statistics()["vote_views"] > 0 and replica.statistics()["timeout_views"] > 0


def test_far_future_timeouts_from_f_plus_1_validators_stay_bounded() -> None:
    replica = make_replica(0)
    ahead = replica._config.max_views_ahead
    for view in range(3000, 0, -1):
        for sender in (1, 2):
            replica.on_message(vi(sender), sign_timeout(sender, view, GENESIS_QC), 0.0)
            assert replica.statistics()["timeout_views"] <= ahead + 2
            assert replica.statistics()["vote_views"] <= ahead + 2
    # f+1 timeouts within the window did move it (joining is allowed), but never beyond it.
    assert 1 < replica.view <= 2 + ahead


def test_buffers_are_pruned_as_the_view_advances() -> None:
    """f+1 validators push the replica forward view by view while also sending votes and
    timeouts for every view in the window: old views must be dropped as it moves on."""
    ahead = 6
    replica = make_replica(0, max_views_ahead=ahead)
    for view in range(1, 150):
        for future in (view, view + ahead // 2, view + ahead):
            for sender in (1, 2):
                block_id = sha256(f"{sender}/{future}".encode())
                replica.on_message(vi(sender), sign_vote(sender, future, block_id), 0.0)
        # Only validator 1 times out ahead (one validator makes nobody join).
        replica.on_message(vi(1), sign_timeout(1, view + ahead, GENESIS_QC), 0.0)
        for sender in (1, 2):
            replica.on_message(vi(sender), sign_timeout(sender, view, GENESIS_QC), 0.0)
        assert replica.view == view + 1
        assert replica.statistics()["vote_views"] <= ahead + 2
        assert replica.statistics()["timeout_views"] <= ahead + 2


def test_stale_votes_and_timeouts_are_refused_and_the_sender_gets_our_certificates() -> None:
    me = 0
    store = MemoryStore()
    replica = make_replica(me, store)
    for sender in (1, 2):
        replica.on_message(vi(sender), sign_timeout(sender, 9, GENESIS_QC), 0.0)
    assert replica.view == 10
    saves = len(store.saves)
    # A peer still timing out the previous view: no new signature of ours, and a SyncInfo for it.
    behind = replica.on_message(vi(3), sign_timeout(3, 9, GENESIS_QC), 0.0)
    assert timeouts_in(behind) == []
    assert [s.to for s in of_type(behind, Send) if isinstance(s.msg, SyncInfo)] == [3]
    # Older still: refused as stale, with a SyncInfo too.
    older = replica.on_message(vi(1), sign_timeout(1, 8, GENESIS_QC), 0.0)
    refused_with(older, "stale")
    syncs = [s for s in of_type(older, Send) if isinstance(s.msg, SyncInfo)]
    assert [s.to for s in syncs] == [1]
    assert syncs[0].msg == SyncInfo(GENESIS_QC, replica.last_tc)
    old = next(v for v in range(1, 8) if leader(v + 1) == me)
    refused_with(replica.on_message(vi(2), sign_vote(2, old, sha256(b"old")), 0.0), "stale")
    assert replica.statistics()["vote_views"] == 0
    assert replica.statistics()["timeout_views"] <= 2
    assert len(store.saves) == saves


def test_proposals_waiting_for_missing_ancestors_stay_bounded() -> None:
    me = 0
    limit = 8
    view = next(v for v in range(2, 100) if leader(v) != me)
    proposer = leader(view)
    replica = make_replica(me, max_pending_blocks=limit)
    refused_count = 0
    for i in range(5 * limit):
        unknown = BlockId(sha256(f"unknown-{i}".encode()))
        qc = make_qc(unknown, view - 1, (1, 2, 3))
        block = Block(View(view), 5, unknown, vi(proposer), qc, (f"t{i}".encode(),))
        actions = replica.on_message(vi(proposer), make_proposal(block), 0.0)
        refused_count += len(refusals(actions))
        assert pending_proposals(replica) <= limit
        assert replica.statistics()["fetching"] <= limit
        replica.check_invariants()
    assert pending_proposals(replica) == limit
    assert refused_count >= 4 * limit


# --- timeouts and TCs ----------------------------------------------------------------------


def test_local_timer_broadcasts_a_timeout_and_resends_identical_bytes() -> None:
    store = MemoryStore()
    # A replica that does not lead view 1, so its only signature here is the timeout.
    me = next(i for i in range(N) if leader(1) != i)
    replica = make_replica(me, store)
    assert replica.next_deadline() == 0.0  # due at once: the start, where a leader would propose
    assert replica.on_timer(0.0) == []
    deadline = replica.next_deadline()
    assert deadline == 1.0
    assert replica.on_timer(0.5) == []
    first = timeouts_in(replica.on_timer(1.0))
    assert len(first) == 1
    assert of_type(replica.on_timer(1.0), Broadcast) == []  # the deadline moved on
    assert (first[0].view, first[0].author, first[0].high_qc) == (1, me, GENESIS_QC)
    assert certifier().check_timeout(first[0]) is None
    next_deadline = replica.next_deadline()
    assert next_deadline is not None and next_deadline > 1.0
    again = timeouts_in(replica.on_timer(next_deadline))
    assert [encoded(t) for t in again] == [encoded(first[0])]
    assert len(store.saves) == 1
    # A restart in the same view re-sends the stored bytes too.
    restarted = make_replica(me, store, now=10.0)
    assert restarted.on_timer(10.0) == []
    deadline = restarted.next_deadline()
    assert deadline is not None
    assert [encoded(t) for t in timeouts_in(restarted.on_timer(deadline))] == [encoded(first[0])]


def test_the_leader_of_the_first_view_proposes_at_start_without_waiting_for_a_timeout() -> None:
    first_leader = leader(1)
    replica = make_replica(first_leader)
    assert replica.next_deadline() == 0.0
    actions = replica.on_timer(0.0)
    (proposal,) = [a.msg for a in of_type(actions, Broadcast) if isinstance(a.msg, Proposal)]
    assert (proposal.view, proposal.block.height, proposal.tc) == (1, 1, None)
    assert proposal.block.qc == GENESIS_QC
    assert replica.safety_state.last_voted_view == 1  # it voted for its own block
    assert replica.next_deadline() == 1.0
    assert replica.on_timer(0.0) == []  # the start happens once


def test_one_timeout_does_not_make_a_replica_join_but_f_plus_1_do() -> None:
    me = 0
    replica = make_replica(me)
    others = [i for i in range(N) if i != me]
    actions = replica.on_message(vi(others[0]), sign_timeout(others[0], 1, GENESIS_QC), 0.0)
    assert timeouts_in(actions) == []
    actions = replica.on_message(vi(others[1]), sign_timeout(others[1], 1, GENESIS_QC), 0.0)
    (own,) = timeouts_in(actions)
    assert (own.view, own.author) == (1, me)
    assert replica.safety_state.highest_timeout_view == 1
    # Its own timeout made three: a TC for view 1 moved it to view 2.
    assert ViewChange(View(2), "tc") in actions
    assert replica.view == 2


def test_the_timeouts_held_for_a_view_are_readable_by_author() -> None:
    replica = make_replica(0)
    assert replica.timeout_authors(View(1)) == frozenset()
    replica.on_message(vi(1), sign_timeout(1, 1, GENESIS_QC), 0.0)
    replica.on_message(vi(3), sign_timeout(3, 1, GENESIS_QC), 0.0)
    replica.on_message(vi(3), sign_timeout(3, 1, GENESIS_QC), 0.0)
    # f+1 made it time out too (its own counts), and the TC they formed moved it on to view 2.
    assert replica.timeout_authors(View(1)) == {0, 1, 3}
    assert replica.timeout_authors(View(2)) == frozenset()


def test_f_plus_1_timeouts_for_a_later_view_make_a_replica_join_that_view() -> None:
    replica = make_replica(0)
    replica.on_message(vi(1), sign_timeout(1, 5, GENESIS_QC), 0.0)
    actions = replica.on_message(vi(2), sign_timeout(2, 5, GENESIS_QC), 0.0)
    (own,) = timeouts_in(actions)
    assert own.view == 5
    assert replica.view == 6


def test_a_quorum_of_timeouts_forms_a_tc_and_the_next_leader_proposes_with_it() -> None:
    me = leader(2)
    replica = make_replica(me)
    replica.on_timer(1.0)  # its own timeout for view 1 first
    others = [i for i in range(N) if i != me]
    actions: list[Action] = []
    for sender in others[:2]:
        assert replica.view == 1
        actions = replica.on_message(vi(sender), sign_timeout(sender, 1, GENESIS_QC), 1.0)
    assert ViewChange(View(2), "tc") in actions
    assert replica.view == 2
    (proposal,) = [m for m in sent_messages(actions) if isinstance(m, Proposal)]
    assert proposal.view == 2 and proposal.author == me
    assert proposal.tc is not None and proposal.tc.view == 1
    assert certifier().check_tc(proposal.tc) is None
    assert sorted(s for s, _, _ in proposal.tc.signatures) == sorted([me, *others[:2]])
    assert proposal.block.qc == GENESIS_QC
    # The proposal is valid for everyone else: another replica votes for it.
    voter = not_in(me, leader(3))
    vote_actions = make_replica(voter).on_message(vi(me), proposal, 1.0)
    assert [v.block_id for v in votes_in(vote_actions)] == [proposal.block.id]


def test_a_leader_joining_through_timeouts_does_not_propose_without_a_certificate() -> None:
    me = 0
    view = next(v for v in range(4, 200) if leader(v) == me and leader(v - 1) != me)
    replica = make_replica(me)
    # A TC for view 1 (so it holds some TC), then f+1 timeouts for `view` make it join `view`.
    others = [i for i in range(N) if i != me]
    replica.on_timer(1.0)
    for sender in others[:2]:
        replica.on_message(vi(sender), sign_timeout(sender, 1, GENESIS_QC), 1.0)
    assert replica.view >= 2
    actions: list[Action] = []
    for sender in others[:2]:
        actions += replica.on_message(vi(sender), sign_timeout(sender, view, GENESIS_QC), 2.0)
    assert replica.view >= view
    # Neither the genesis QC nor the TC for view 1 justifies a block in `view`.
    assert [m for m in sent_messages(actions) if isinstance(m, Proposal) and m.view == view] == []


def test_a_tc_does_not_reset_the_backoff_but_a_qc_does() -> None:
    me = not_in(leader(1), leader(2), leader(3))
    replica = make_replica(me)
    replica.on_timer(1.0)
    backed_off = replica.next_deadline()
    assert backed_off is not None
    for sender in [i for i in range(N) if i != me][:2]:
        replica.on_message(vi(sender), sign_timeout(sender, 1, GENESIS_QC), 2.0)
    assert replica.view == 2
    assert backed_off == 1.0 + 2 * replica._config.base_timeout_s
    # Entered view 2 through a TC at time 2.0: the backed-off timeout still applies.
    assert replica.next_deadline() == 2.0 + 2 * replica._config.base_timeout_s
    b2 = make_block(GENESIS_BLOCK, 2)
    replica.on_message(leader(2), make_proposal(b2, tc=make_tc(1, dict.fromkeys(range(3), GENESIS_QC))), 3.0)
    b3 = make_block(b2, 3)
    replica.on_message(leader(3), make_proposal(b3), 4.0)
    assert replica.view == 3
    assert replica.next_deadline() == 4.0 + replica._config.base_timeout_s


# --- fetching ------------------------------------------------------------------------------


def test_unrequested_block_response_is_refused() -> None:
    replica = make_replica(0)
    b1 = first_block()
    actions = replica.on_message(vi(1), BlockResponse((b1,)), 0.0)
    refused_with(actions, "not requested")
    assert not replica.has_block(b1.id)


def test_missing_parent_is_fetched_and_the_waiting_proposal_then_voted() -> None:
    me = not_in(leader(1), leader(2), leader(3), leader(4))  # its vote for b3 must leave
    replica = make_replica(me)
    b1 = first_block()
    b2 = make_block(b1, 2)
    b3 = make_block(b2, 3)
    actions = replica.on_message(leader(3), make_proposal(b3), 0.0)
    (request,) = [m for m in sent_messages(actions) if isinstance(m, BlockRequest)]
    assert request.block_id == b2.id
    assert votes_in(actions) == []
    # A response to a different request is still refused.
    refused_with(replica.on_message(leader(3), BlockResponse((b1,)), 0.0), "not requested")
    actions = replica.on_message(leader(3), BlockResponse((b2, b1)), 0.0)
    assert [v.block_id for v in votes_in(actions)] == [b3.id]
    assert replica.has_block(b1.id) and replica.has_block(b2.id)


def test_unanswered_fetch_is_retried_from_another_peer_after_a_base_timeout() -> None:
    me = not_in(leader(1), leader(2), leader(3))
    replica = make_replica(me)
    b1 = first_block()
    b2 = make_block(b1, 2)
    b3 = make_block(b2, 3)
    actions = replica.on_message(leader(3), make_proposal(b3), 0.0)
    asked = [s.to for s in of_type(actions, Send) if isinstance(s.msg, BlockRequest)]
    assert asked == [leader(3)]
    base = replica._config.base_timeout_s
    retry = [s for s in of_type(replica.on_timer(base), Send) if isinstance(s.msg, BlockRequest)]
    assert [s.msg.block_id for s in retry if isinstance(s.msg, BlockRequest)] == [b2.id]
    assert retry[0].to not in (me, leader(3))
    # The retried peer's answer is accepted.
    actions = replica.on_message(retry[0].to, BlockResponse((b2, b1)), base)
    assert replica.has_block(b2.id)


def test_block_request_is_answered_newest_first_within_the_limit() -> None:
    me = not_in(leader(1), leader(2), leader(3))
    replica = make_replica(me)
    b1 = first_block()
    b2 = make_block(b1, 2)
    for b in (b1, b2):
        replica.on_message(b.proposer, make_proposal(b), 0.0)
    requester = not_in(me)
    (send,) = of_type(replica.on_message(vi(requester), BlockRequest(b2.id, 2), 0.0), Send)
    assert send.to == requester
    assert send.msg == BlockResponse((b2, b1))
    refused_with(replica.on_message(vi(requester), BlockRequest(BlockId(sha256(b"?")), 5), 0.0), "unknown")


def test_an_equivocating_leader_cannot_grow_the_tree_beyond_the_per_view_cap() -> None:
    me = not_in(leader(1))
    replica = make_replica(me)
    refused: list[str] = []
    for k in range(3 * MAX_BLOCKS_PER_VIEW):
        block = first_block(txs=(b"equivocation-%d" % k,))
        refused += [str(r) for r in refusals(replica.on_message(leader(1), make_proposal(block), 0.0))]
    assert replica.statistics()["tree_blocks"] == 1 + MAX_BLOCKS_PER_VIEW  # the root and the capped blocks
    assert sum(f"more than {MAX_BLOCKS_PER_VIEW} blocks for view 1" in r for r in refused) == (
        2 * MAX_BLOCKS_PER_VIEW
    )


def test_outstanding_fetches_and_orphan_chains_are_bounded() -> None:
    limit = 3
    me = not_in(leader(1), leader(2))
    replica = make_replica(me, max_pending_blocks=limit)
    # QCs for many unknown blocks (certified by real signatures) each start a fetch.
    unknown = [make_block(GENESIS_BLOCK, 1, txs=(b"u%d" % k,)) for k in range(3 * limit)]
    refused: list[str] = []
    for block in unknown:
        qc = qc_for(block)
        sync = SyncInfo(qc, None)
        refused += [str(r) for r in refusals(replica.on_message(leader(2), sync, 0.0))]
    assert replica.statistics()["fetching"] <= limit
    assert replica.statistics()["waiting_qcs"] <= limit
    assert any("too many outstanding fetches" in r for r in refused)
