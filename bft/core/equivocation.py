"""Spotting a leader that signed two different proposals for one view.

Owns: `ProposalLog`, the first validly signed proposal of each recent view and proposer, and
the one Evidence per view and proposer it hands back when a second, different one arrives. (Double votes are
spotted where votes are collected, `bft.core.votes`.)
May not: verify signatures (the replica passes only proposals that passed `check_proposal`),
or refuse anything: a second proposal is still judged by the proposal and vote rules.

Why only the views the replica is in: the log stays a handful of entries whatever peers send,
and a leader equivocates to replicas that are in its view, since only they vote for it.
"""

from __future__ import annotations

from bft.core.actions import Evidence, EvidenceKind
from bft.core.messages import Proposal
from bft.core.types import ValidatorIndex, View


class ProposalLog:
    def __init__(self) -> None:
        # By (view, proposer): under leader reputation two validators may each propose in a
        # view after a TC, each leading it by the chain it extends; only one signing two is evidence.
        self._first: dict[tuple[View, ValidatorIndex], Proposal] = {}
        self._reported: set[tuple[View, ValidatorIndex]] = set()

    def observe(self, proposal: Proposal) -> Evidence | None:
        """Record a checked proposal; Evidence the first time its proposer signed another block
        of its view, else None."""
        view, author = proposal.view, proposal.author
        first = self._first.setdefault((view, author), proposal)
        if first.block.id == proposal.block.id or (view, author) in self._reported:
            return None
        self._reported.add((view, author))
        return Evidence(EvidenceKind.PROPOSAL, author, view, first, proposal)

    def prune_below(self, view: View) -> None:
        self._first = {k: p for k, p in self._first.items() if k[0] >= view}
        self._reported = {k for k in self._reported if k[0] >= view}

    def views_held(self) -> int:
        return len(self._first)
