"""Vote and timeout collection (`bft.core.votes`)."""

from __future__ import annotations

from core_helpers import (
    GENESIS_BLOCK,
    GENESIS_QC,
    VALIDATORS,
    certifier,
    make_block,
    make_qc,
    sign_timeout,
    sign_vote,
    vi,
)

from bft.core.actions import Evidence, EvidenceKind
from bft.core.messages import QuorumCert
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import View
from bft.core.votes import TimeoutCollector, VoteCollector

B1 = make_block(GENESIS_BLOCK, 1)
OTHER = make_block(GENESIS_BLOCK, 1, txs=(b"other",))
B2 = make_block(GENESIS_BLOCK, 1, txs=(b"third",))


def test_quorum_of_votes_forms_exactly_one_valid_qc() -> None:
    votes = VoteCollector(VALIDATORS)
    results = [votes.add(sign_vote(s, 1, B1.id)) for s in (2, 0, 1, 3)]
    assert results[0] is None and results[1] is None
    qc = results[2]
    assert isinstance(qc, QuorumCert)
    assert (qc.view, qc.block_id) == (1, B1.id)
    assert [s for s, _ in qc.signatures] == [0, 1, 2]  # sorted by signer
    assert certifier().check_qc(qc) is None
    assert results[3] is None  # a fourth vote forms no second QC


def test_votes_split_over_two_blocks_form_no_qc() -> None:
    votes = VoteCollector(VALIDATORS)
    assert votes.add(sign_vote(0, 1, B1.id)) is None
    assert votes.add(sign_vote(1, 1, B1.id)) is None
    assert votes.add(sign_vote(2, 1, OTHER.id)) is None
    assert votes.add(sign_vote(3, 1, OTHER.id)) is None


def test_double_vote_is_refused_with_a_reason_and_not_counted() -> None:
    votes = VoteCollector(VALIDATORS)
    assert votes.add(sign_vote(0, 1, B1.id)) is None
    second = sign_vote(0, 1, OTHER.id)
    evidence = votes.add(second)
    # The first conflict is evidence with both signed votes, the first one seen first.
    assert evidence == Evidence(EvidenceKind.VOTE, vi(0), View(1), sign_vote(0, 1, B1.id), second)
    # Later conflicts are refused without more evidence; so is an identical re-send (counted once).
    third = votes.add(sign_vote(0, 1, B2.id))
    assert isinstance(third, Refused) and third.reason is RefusalReason.VOTE_CONFLICT
    assert "voted twice" in third.detail
    duplicate = votes.add(sign_vote(0, 1, B1.id))
    assert isinstance(duplicate, Refused) and duplicate.reason is RefusalReason.DUPLICATE_VOTE
    assert votes.add(sign_vote(1, 1, OTHER.id)) is None
    # 0's second vote did not count for OTHER: two votes are not a quorum.
    assert votes.add(sign_vote(2, 1, B1.id)) is None
    qc = votes.add(sign_vote(3, 1, OTHER.id))
    assert qc is None  # OTHER has only 1 and 3
    late = votes.add(sign_vote(1, 1, B1.id))
    assert isinstance(late, Evidence) and late.validator == 1 and late.first == sign_vote(1, 1, OTHER.id)


def test_votes_in_different_views_are_kept_apart() -> None:
    votes = VoteCollector(VALIDATORS)
    assert votes.add(sign_vote(0, 1, B1.id)) is None
    assert votes.add(sign_vote(1, 2, B1.id)) is None
    assert votes.add(sign_vote(2, 3, B1.id)) is None
    assert votes.views_held() == 3


def test_vote_pruning_drops_old_views_only() -> None:
    votes = VoteCollector(VALIDATORS)
    for view in range(1, 11):
        votes.add(sign_vote(0, view, B1.id))
    votes.prune_below(View(7))
    assert votes.views_held() == 4
    # View 7 was kept: validator 0's vote there is still remembered.
    assert isinstance(votes.add(sign_vote(0, 7, OTHER.id)), Evidence)


def test_timeouts_count_distinct_validators_and_form_one_tc_with_the_highest_qc() -> None:
    qc1 = make_qc(B1.id, 1)
    timeouts = TimeoutCollector(VALIDATORS)
    assert timeouts.add(sign_timeout(3, 2, GENESIS_QC)) == (1, None)
    # A repeated timeout from the same validator does not count twice.
    assert timeouts.add(sign_timeout(3, 2, GENESIS_QC)) == (1, None)
    count, tc = timeouts.add(sign_timeout(1, 2, qc1))
    assert count == VALIDATORS.f + 1 and tc is None
    count, tc = timeouts.add(sign_timeout(0, 2, GENESIS_QC))
    assert count == VALIDATORS.quorum
    assert tc is not None
    assert tc.view == 2 and tc.high_qc == qc1
    assert [(s, hv) for s, hv, _ in tc.signatures] == [(0, 0), (1, 1), (3, 0)]
    assert certifier().check_tc(tc) is None
    # The fourth timeout counts but forms no second TC.
    assert timeouts.add(sign_timeout(2, 2, GENESIS_QC)) == (4, None)


def test_timeout_pruning() -> None:
    timeouts = TimeoutCollector(VALIDATORS)
    for view in range(1, 11):
        timeouts.add(sign_timeout(0, view, GENESIS_QC))
    assert timeouts.views_held() == 10
    timeouts.prune_below(View(9))
    assert timeouts.views_held() == 2
    assert timeouts.add(sign_timeout(1, 9, GENESIS_QC)) == (2, None)
    assert timeouts.add(sign_timeout(1, 3, GENESIS_QC)) == (1, None)
