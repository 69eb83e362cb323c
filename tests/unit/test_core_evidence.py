"""Equivocation kept as evidence: a validator's two different signed votes, or a leader's two
different signed proposals, for one view (`bft.core.votes`, `bft.core.equivocation`), with real
signatures; and the refusals that go with them."""

from __future__ import annotations

from core_helpers import (
    GENESIS_BLOCK,
    N,
    certifier,
    leader,
    make_block,
    make_proposal,
    make_replica,
    of_type,
    refusals,
    sent_messages,
    sign_vote,
    vi,
)

from bft.core.actions import Action, Evidence, EvidenceKind
from bft.core.messages import Proposal, Vote
from bft.core.refusals import RefusalReason, Subject
from bft.core.types import View

BLOCK_A = make_block(GENESIS_BLOCK, 1, txs=(b"A",))
BLOCK_B = make_block(GENESIS_BLOCK, 1, txs=(b"B",))
BLOCK_C = make_block(GENESIS_BLOCK, 1, txs=(b"C",))


def _other_than(*excluded: int) -> int:
    return next(i for i in range(N) if i not in excluded)


def _votes(actions: list[Action]) -> list[Vote]:
    return [m for m in sent_messages(actions) if isinstance(m, Vote)]


def test_two_signed_proposals_for_one_view_are_evidence_naming_the_leader() -> None:
    me = _other_than(leader(1), leader(2))
    replica = make_replica(me)
    first, second = make_proposal(BLOCK_A), make_proposal(BLOCK_B)
    (vote,) = _votes(replica.on_message(leader(1), first, 0.0))
    actions = replica.on_message(leader(1), second, 0.0)
    assert of_type(actions, Evidence) == [Evidence(EvidenceKind.PROPOSAL, leader(1), View(1), first, second)]
    # Both are the leader's own signatures: anyone can check the evidence.
    c = certifier()
    assert c.check_proposal_signature(first.block, first.signature) is None
    assert c.check_proposal_signature(second.block, second.signature) is None
    # The protocol is unchanged: asked again in view 1, the safety rules re-send the same vote.
    assert _votes(actions) == [vote] and vote.block_id == BLOCK_A.id
    assert refusals(actions) == []
    # Once per view: a third block, or the first again, brings no more evidence.
    assert of_type(replica.on_message(leader(1), make_proposal(BLOCK_C), 0.0), Evidence) == []
    assert of_type(replica.on_message(leader(1), first, 0.0), Evidence) == []


def test_a_proposal_with_a_forged_signature_is_no_evidence() -> None:
    me = _other_than(leader(1), leader(2))
    replica = make_replica(me)
    replica.on_message(leader(1), make_proposal(BLOCK_A), 0.0)
    forged = Proposal(BLOCK_B, None, make_proposal(BLOCK_B, signer=me).signature)
    actions = replica.on_message(leader(1), forged, 0.0)
    assert of_type(actions, Evidence) == []
    (refusal,) = refusals(actions)
    assert (refusal.what, refusal.reason, refusal.view) == (Subject.PROPOSAL, RefusalReason.BAD_SIGNATURE, 1)


def test_two_signed_votes_for_one_view_are_evidence_naming_the_voter() -> None:
    me = leader(2)
    voter = _other_than(me)
    replica = make_replica(me)
    first, second = sign_vote(voter, 1, BLOCK_A.id), sign_vote(voter, 1, BLOCK_B.id)
    assert replica.on_message(vi(voter), first, 0.0) == []
    actions = replica.on_message(vi(voter), second, 0.0)
    assert of_type(actions, Evidence) == [Evidence(EvidenceKind.VOTE, vi(voter), View(1), first, second)]
    (refusal,) = refusals(actions)
    assert (refusal.what, refusal.reason, refusal.sender) == (
        Subject.VOTE,
        RefusalReason.VOTE_CONFLICT,
        voter,
    )
    assert str(refusal) == f"ignoring vote: validator {voter} voted twice in view 1"
    # Later conflicts are refused, without more evidence.
    third = replica.on_message(vi(voter), sign_vote(voter, 1, BLOCK_C.id), 0.0)
    assert of_type(third, Evidence) == []
    assert [r.reason for r in refusals(third)] == [RefusalReason.VOTE_CONFLICT]


def test_a_forged_second_vote_is_no_evidence() -> None:
    me = leader(2)
    voter = _other_than(me)
    replica = make_replica(me)
    replica.on_message(vi(voter), sign_vote(voter, 1, BLOCK_A.id), 0.0)
    other = sign_vote(_other_than(me, voter), 1, BLOCK_B.id)
    forged = Vote(other.view, other.block_id, vi(voter), other.signature)
    actions = replica.on_message(vi(voter), forged, 0.0)
    assert of_type(actions, Evidence) == []
    assert [r.reason for r in refusals(actions)] == [RefusalReason.BAD_SIGNATURE]
