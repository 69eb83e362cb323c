"""A validator that lost its safety record signs nothing in a view it may have signed in
(`bft.core.recovery`): the machine's counting, the safety rules while recovering, and whole
replicas wiped in the middle of a run, with a Byzantine leader trying to get a second vote."""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_helpers import (
    FIRST_STATE,
    GENESIS_BLOCK,
    GENESIS_QC,
    LOST,
    NONCE,
    Cluster,
    MemoryStore,
    N,
    chain,
    make_block,
    make_proposal,
    make_replica,
    qc_for,
    refusals,
    safety_rules,
    sent_messages,
    tree_with,
    vi,
)

from bft.core.chain import MemoryChain
from bft.core.messages import QuorumCert, RecoveryProbe, RecoveryReport, Timeout, Vote
from bft.core.recovery import Recovery, reports_needed
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import ValidatorIndex, ValidatorSet, View
from crypto.keys import PrivateKey


def _validators(n: int) -> ValidatorSet:
    return ValidatorSet(tuple(PrivateKey.from_seed(bytes([i + 1]) * 32).public_key for i in range(n)))


def _report(view: int, qc: QuorumCert = GENESIS_QC, nonce: bytes = NONCE) -> RecoveryReport:
    return RecoveryReport(nonce, View(view), qc, None)


@pytest.mark.parametrize(("n", "needed"), [(4, 3), (5, 3), (7, 5), (10, 7), (16, 11)])
def test_the_reports_needed_are_n_minus_quorum_plus_f_plus_one(n: int, needed: int) -> None:
    validators = _validators(n)
    assert reports_needed(validators) == needed == n - validators.quorum + validators.f + 1
    # Enough that any `needed` others include an honest signer of any certificate other than us.
    assert needed > (n - 1) - (validators.quorum - validators.f - 1)


def test_recovery_needs_distinct_validators_answering_this_probe() -> None:
    recovery = Recovery(_validators(4), vi(1), NONCE, resend_s=1.0, max_views_ahead=8, now=0.0)
    assert recovery.probe(0.0) == RecoveryProbe(NONCE)
    assert recovery.probe(0.5) is None  # re-sent only a base timeout later
    assert recovery.probe(1.0) == RecoveryProbe(NONCE)
    stale = recovery.on_report(vi(0), _report(9, nonce=bytes(16)))
    assert isinstance(stale, Refused) and stale.reason is RefusalReason.NOT_REQUESTED
    assert isinstance(recovery.on_report(vi(1), _report(9)), Refused)  # ourselves
    assert recovery.on_report(vi(0), _report(5)) is None
    assert recovery.on_report(vi(0), _report(7)) is None  # the same validator again counts once
    assert recovery.done is None and recovery.reporters == {0}
    assert recovery.on_report(vi(2), _report(3)) is None
    assert recovery.done is None
    assert recovery.on_report(vi(3), _report(6)) is None
    done = recovery.done
    assert done is not None and done.reporters == {0, 2, 3}
    assert done.floor == 8  # the highest reported view (7) plus one
    assert recovery.deadline is None and recovery.probe(9.0) is None


def test_a_report_far_above_its_own_certificates_is_refused() -> None:
    """A liar cannot push the floor out of reach: a view must be near the certificates it shows."""
    recovery = Recovery(_validators(4), vi(1), NONCE, resend_s=1.0, max_views_ahead=8, now=0.0)
    refused = recovery.on_report(vi(0), _report(1_000_000))
    assert isinstance(refused, Refused) and refused.reason is RefusalReason.FUTURE_VIEW
    assert recovery.on_report(vi(0), _report(9)) is None  # 0 + 1 + 8: the most it may claim


def test_the_safety_rules_sign_nothing_while_recovering_then_only_above_the_floor() -> None:
    store = MemoryStore(LOST)
    rules = safety_rules(store, me=1)
    assert rules.recovering
    b1 = make_block(GENESIS_BLOCK, 1)
    for refused in (
        rules.vote(b1, tree_with([b1])),
        rules.timeout(View(1), GENESIS_QC),
        rules.sign_proposal(replace(b1, proposer=vi(1)), None),
    ):
        assert isinstance(refused, Refused) and refused.reason is RefusalReason.RECOVERING
    assert store.saves == []
    blocks = chain(GENESIS_BLOCK, [1, 2, 3, 4])
    lock = qc_for(blocks[1])
    rules.finish_recovery(View(4), lock)
    assert not rules.recovering
    assert store.saves[-1].last_voted_view == 4 and store.saves[-1].highest_timeout_view == 4
    assert store.saves[-1].locked_qc == lock
    b4 = blocks[3]
    refused = rules.vote(b4, tree_with(blocks))
    assert isinstance(refused, Refused) and refused.reason is RefusalReason.ALREADY_VOTED
    b5 = make_block(b4, 5, qc=qc_for(b4))
    assert isinstance(rules.vote(b5, tree_with([*blocks, b5])), Vote)
    assert isinstance(rules.timeout(View(6), qc_for(b4)), Timeout)


def test_a_fresh_record_is_not_a_lost_one() -> None:
    assert not safety_rules(MemoryStore(FIRST_STATE)).recovering
    assert MemoryStore().state == FIRST_STATE


def _wipe(cluster: Cluster, i: int) -> None:
    """Replica `i` restarts with no safety record and no blocks (its data directory is gone)."""
    cluster.stores[i] = MemoryStore(LOST)
    cluster.chains[i] = MemoryChain(GENESIS_BLOCK, GENESIS_QC)
    cluster.replicas[i] = make_replica(i, cluster.stores[i], cluster.now, chain=cluster.chains[i])


def _signed_views(cluster: Cluster, author: int, since: int) -> list[int]:
    """Views of the votes and timeouts `author` sent from the `since`-th delivery on."""
    return [
        int(msg.view)
        for src, _dst, msg in cluster.delivered[since:]
        if src == author and isinstance(msg, Vote | Timeout)
    ]


def test_a_wiped_replica_probes_recovers_and_signs_only_above_every_view_it_signed_in() -> None:
    cluster = Cluster()
    cluster.run(lambda: min(cluster.heights()) >= 6)
    signed_before = _signed_views(cluster, 1, 0)
    assert signed_before
    _wipe(cluster, 1)
    mark = len(cluster.delivered)
    cluster.run(lambda: cluster.replicas[1].safety_state != FIRST_STATE and min(cluster.heights()) >= 14)
    probes = [m for s, _d, m in cluster.delivered[mark:] if s == 1 and isinstance(m, RecoveryProbe)]
    reports = [m for _s, d, m in cluster.delivered[mark:] if d == 1 and isinstance(m, RecoveryReport)]
    assert probes and len({r.nonce for r in reports}) == 1 and len(reports) >= N - 1
    assert cluster.replicas[1].recovery is None
    after = _signed_views(cluster, 1, mark)
    assert after, "the recovered replica votes again"
    assert min(after) > max(signed_before)
    assert cluster.replicas[1].committed_height >= 14  # it synced and follows the chain


@pytest.mark.parametrize("lost", [True, False], ids=["recovering", "mutant-starts-fresh"])
def test_a_byzantine_leader_cannot_get_a_second_vote_from_a_wiped_replica(lost: bool) -> None:
    """The attack recovery exists for: replica 1 votes for the leader's block B in view v, loses
    its record, and the (Byzantine) leader of v sends it a different block B' for v. Started
    fresh, as the mutant does, it votes again: two votes for one view, an equivocation by an
    honest validator. Recovering, it refuses, and once recovered its floor is past v."""
    blocks = chain(GENESIS_BLOCK, [1, 2])
    b1, b2 = blocks
    leader = b2.proposer
    voter = next(i for i in range(N) if i not in (leader, b1.proposer))
    first = make_replica(voter)
    first.on_message(vi(b1.proposer), make_proposal(b1), 0.0)
    first_vote = [
        m for m in sent_messages(first.on_message(vi(leader), make_proposal(b2), 0.0)) if isinstance(m, Vote)
    ]
    assert [v.view for v in first_vote] == [2]
    store = MemoryStore(LOST if lost else FIRST_STATE)
    wiped = make_replica(voter, store, chain=MemoryChain(GENESIS_BLOCK, GENESIS_QC))
    wiped.on_message(vi(b1.proposer), make_proposal(b1), 1.0)
    other = make_block(b1, 2, txs=(b"the other block",), qc=qc_for(b1))
    assert other.id != b2.id and other.proposer == leader
    actions = wiped.on_message(vi(leader), make_proposal(other), 1.0)
    votes = [m for m in sent_messages(actions) if isinstance(m, Vote)]
    if not lost:
        assert [v.view for v in votes] == [2] and votes[0].block_id != first_vote[0].block_id
        return
    assert votes == []
    assert RefusalReason.RECOVERING in {r.reason for r in refusals(actions)}
    # The others answer its probe; the highest view they report is 2 (they are in view 2).
    probe = next(m for m in sent_messages(wiped.on_timer(1.0)) if isinstance(m, RecoveryProbe))
    for peer in (i for i in range(N) if i != voter):
        wiped.on_message(vi(peer), RecoveryReport(probe.nonce, View(2), qc_for(b1), None), 1.5)
    assert wiped.recovery is None and wiped.safety_state.last_voted_view == 3
    again = wiped.on_message(vi(leader), make_proposal(other), 2.0)
    assert not [m for m in sent_messages(again) if isinstance(m, Vote)]


def test_an_honest_replica_answers_a_probe_with_its_view_and_certificates_at_a_bounded_rate() -> None:
    replica = make_replica(0)
    probe = RecoveryProbe(bytes(range(16, 32)))
    answers = [
        m for m in sent_messages(replica.on_message(vi(2), probe, 0.0)) if isinstance(m, RecoveryReport)
    ]
    assert answers == [RecoveryReport(probe.nonce, replica.view, replica.high_qc, replica.last_tc)]
    again = replica.on_message(vi(2), probe, 0.1)
    assert not sent_messages(again)
    assert [r.reason for r in refusals(again)] == [RefusalReason.RATE_LIMITED]
    assert sent_messages(replica.on_message(vi(3), probe, 0.1))  # another validator's probe
    late = replica.on_message(vi(2), RecoveryReport(probe.nonce, View(1), GENESIS_QC, None), 0.2)
    assert [r.reason for r in refusals(late)] == [RefusalReason.NOT_REQUESTED]


def test_a_report_with_a_forged_qc_is_refused_and_not_counted() -> None:
    wiped = make_replica(1, MemoryStore(LOST))
    forged = replace(qc_for(make_block(GENESIS_BLOCK, 1)), signatures=((ValidatorIndex(0), bytes(64)),))
    actions = wiped.on_message(vi(0), RecoveryReport(NONCE, View(2), forged, None), 0.0)
    assert [r.reason for r in refusals(actions)] == [RefusalReason.BAD_QC]
    recovery = wiped.recovery
    assert recovery is not None and recovery.reporters == frozenset()
