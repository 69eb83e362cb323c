"""Spotting a leader that signed two different proposals for one view.

Owns: `ProposalLog`, the first validly signed proposal of each recent view, and the one
Evidence per view it hands back when a second, different one arrives. (Double votes are
spotted where votes are collected, `bft.core.votes`.)
May not: verify signatures (the replica passes only proposals that passed `check_proposal`),
or refuse anything: a second proposal is still judged by the proposal and vote rules.

Why only the views the replica is in: the log stays a handful of entries whatever peers send,
and a leader equivocates to replicas that are in its view, since only they vote for it.
"""

from __future__ import annotations

from bft.core.actions import Evidence, EvidenceKind
from bft.core.messages import Proposal
from bft.core.types import View


class ProposalLog:
    def __init__(self) -> None:
        self._first: dict[View, Proposal] = {}
        self._reported: set[View] = set()

    def observe(self, proposal: Proposal) -> Evidence | None:
        """Record a checked proposal; Evidence the first time another block of its view was
        proposed (the view has one leader, so one proposer), else None."""
        view = proposal.view
        first = self._first.setdefault(view, proposal)
        if first.block.id == proposal.block.id or view in self._reported:
            return None
        self._reported.add(view)
        return Evidence(EvidenceKind.PROPOSAL, proposal.author, view, first, proposal)

    def prune_below(self, view: View) -> None:
        self._first = {v: p for v, p in self._first.items() if v >= view}
        self._reported = {v for v in self._reported if v >= view}

    def views_held(self) -> int:
        return len(self._first)
