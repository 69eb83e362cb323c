"""A Byzantine validator that proposes out of turn.

Owns: OutOfTurn.
May not: break the Behaviour frame; its state is one view number.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour
from bft.core.actions import Action, Broadcast
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
