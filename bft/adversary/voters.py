"""Byzantine voters: double votes.

Owns: DoubleVoter.
May not: break the Behaviour frame.
"""

from __future__ import annotations

from bft.adversary.base import Behaviour
from bft.core.actions import Action, Send
from bft.core.messages import Vote
from bft.core.types import BlockId


class DoubleVoter(Behaviour):
    """Every vote goes out twice: once for the block, once for a conflicting block of the same
    view (another known block when it has one, else a made-up id), to the leader and to others."""

    name = "double-vote"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Send) and isinstance(action.msg, Vote)):
            return [action]
        vote = action.msg
        others = [b.id for b in self.blocks.values() if b.view == vote.view and b.id != vote.block_id]
        conflicting = self.rng.choice(others) if others else BlockId(self.rng.randbytes(32))
        second = self.vote_for(vote.view, conflicting)
        first, then = (action, Send(action.to, second))
        if self.rng.random() < 0.5:
            first, then = then, first
        return [first, then]
