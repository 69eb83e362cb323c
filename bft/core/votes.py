"""Collecting votes into QCs and timeouts into TCs.

Owns: per-view aggregation, first-vote-wins per validator and view (a second, different vote is
refused, and the first time per validator and view handed back as Evidence of double voting
with both votes), the f+1 join signal and the 2f+1 certificates, and the bounds: only views
inside the window the replica accepts are kept; older ones are pruned.
May not: verify signatures (callers pass only verified votes and timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bft.core.actions import Evidence, EvidenceKind
from bft.core.messages import QuorumCert, Timeout, TimeoutCert, Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import BlockId, ValidatorIndex, ValidatorSet, View


@dataclass(slots=True)
class _ViewVotes:
    by_author: dict[ValidatorIndex, Vote] = field(default_factory=dict)
    certified: set[BlockId] = field(default_factory=set)
    # Validators already reported as double voters in this view: evidence once is enough.
    reported: set[ValidatorIndex] = field(default_factory=set)


def double_vote_detail(vote: Vote) -> str:
    return f"validator {vote.author} voted twice in view {vote.view}"


class VoteCollector:
    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self._views: dict[View, _ViewVotes] = {}

    def add(self, vote: Vote) -> QuorumCert | Evidence | Refused | None:
        """Record a verified vote. Returns a QC the first time its block reaches a quorum; for a
        vote conflicting with the author's first in the view, Evidence (the first time per author
        and view) or a VOTE_CONFLICT refusal (after); DUPLICATE_VOTE for the same vote again;
        otherwise None. The conflicting vote never counts towards a QC."""
        votes = self._views.setdefault(vote.view, _ViewVotes())
        previous = votes.by_author.get(vote.author)
        if previous is not None:
            if previous.block_id == vote.block_id:
                return Refused(RefusalReason.DUPLICATE_VOTE, "duplicate vote")
            if vote.author in votes.reported:
                return Refused(RefusalReason.VOTE_CONFLICT, double_vote_detail(vote))
            votes.reported.add(vote.author)
            return Evidence(EvidenceKind.VOTE, vote.author, vote.view, previous, vote)
        votes.by_author[vote.author] = vote
        if vote.block_id in votes.certified:
            return None
        signatures = tuple(
            sorted((v.author, v.signature) for v in votes.by_author.values() if v.block_id == vote.block_id)
        )
        if len(signatures) < self._validators.quorum:
            return None
        votes.certified.add(vote.block_id)
        return QuorumCert(vote.view, vote.block_id, signatures)

    def prune_below(self, view: View) -> None:
        for old in [v for v in self._views if v < view]:
            del self._views[old]

    def views_held(self) -> int:
        return len(self._views)


class TimeoutCollector:
    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self._views: dict[View, dict[ValidatorIndex, Timeout]] = {}
        self._formed: set[View] = set()

    def add(self, timeout: Timeout) -> tuple[int, TimeoutCert | None]:
        """Record a verified timeout. Returns how many distinct validators timed out in its view,
        and a TC the first time that number reaches a quorum."""
        by_author = self._views.setdefault(timeout.view, {})
        by_author.setdefault(timeout.author, timeout)
        count = len(by_author)
        if count < self._validators.quorum or timeout.view in self._formed:
            return count, None
        self._formed.add(timeout.view)
        high_qc = max((t.high_qc for t in by_author.values()), key=lambda qc: qc.view)
        signatures = tuple(sorted((t.author, t.high_qc.view, t.signature) for t in by_author.values()))
        return count, TimeoutCert(timeout.view, high_qc, signatures)

    def joins(self, count: int) -> bool:
        """Whether `count` distinct validators' timeouts for a view make a replica join it: f+1,
        so that at least one of them is honest (a Byzantine replica alone cannot drag honest
        replicas into views no honest replica gave up on)."""
        return count > self._validators.f

    def authors(self, view: View) -> frozenset[ValidatorIndex]:
        """The validators whose timeouts for `view` are held."""
        return frozenset(self._views.get(view, ()))

    def prune_below(self, view: View) -> None:
        for old in [v for v in self._views if v < view]:
            del self._views[old]
        self._formed = {v for v in self._formed if v >= view}

    def views_held(self) -> int:
        return len(self._views)
