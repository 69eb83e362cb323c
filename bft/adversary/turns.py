"""Byzantine validators that take turns that are not theirs: by proposing out of turn, or by
making the chain blame others for failed turns.

Owns: OutOfTurn, FalseBlame.
May not: break the Behaviour frame; their state is one view number.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour
from bft.core.actions import Action, Broadcast, Send
from bft.core.messages import Message, Proposal
from bft.core.types import ValidatorIndex, View


class OutOfTurn(Behaviour):
    """In views it does not lead, proposes anyway: on the leader's proposal for a view it has not
    usurped yet, it broadcasts the same block (parent, QC, TC, height, app claim, transactions)
    as its own, signed with its own key, and votes for it. Only the rule that a proposal comes
    from its view's leader tells the two apart: everything else about the copy is valid, and
    the replicas that hear it first would vote for it."""

    name = "out-of-turn"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._usurped = View(0)

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not isinstance(msg, Proposal) or msg.block.proposer == self.me:
            return []
        block = msg.block
        if block.view <= self._usurped or block.view < self.inner.view:
            return []
        self._usurped = block.view
        copy = replace(block, proposer=self.me)
        self._remember_block(copy)
        return [Broadcast(self.propose(copy, msg.tc)), *self.vote_to_next_leader(block.view, copy.id)]


class FalseBlame(Behaviour):
    """As leader, proposes its block recording as failed leaders validators that did not fail
    (every other validator, or a random few, in place of or beside the true ones), signed and
    voted for: a leader that could make the chain blame honest validators would have them
    skipped (`bft.core.reputation`) and take their turns. Only the voters' check of the record
    against the parent's window refuses it; on a chain without leader reputation the record
    must be empty, and the block is refused on sight."""

    name = "false-blame"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        block = action.msg.block
        others = [ValidatorIndex(i) for i in range(self.config.validators.n) if i != self.me]
        blamed = set(self.rng.sample(others, self.rng.randint(1, len(others))))
        if self.rng.random() < 0.5:
            blamed |= set(block.failed_leaders)
        forged = tuple(sorted(blamed))
        if forged == block.failed_leaders:
            forged = tuple(sorted(set(others) - set(forged))) or (others[0],)
        bad = replace(block, failed_leaders=forged)
        self._remember_block(bad)
        vote = self.vote_for(bad.view, bad.id)
        return [Broadcast(self.propose(bad, action.msg.tc)), Send(self.next_leader(bad.view, bad.id), vote)]
