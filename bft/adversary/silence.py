"""Byzantine silence: a node that says nothing, and one that speaks to some peers only.

Owns: Silent, SelectiveOmission.
May not: break the Behaviour frame.
"""

from __future__ import annotations

from bft.adversary.base import Behaviour, spread
from bft.core.actions import Action, Broadcast, Commit, Send, ViewChange


class Silent(Behaviour):
    """Receives and follows the protocol internally, sends nothing at all."""

    name = "silent"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        return [action] if isinstance(action, Commit | ViewChange) else []


class SelectiveOmission(Behaviour):
    """Sends only to a fixed random subset of its peers (chosen once), and drops everything else."""

    name = "omit"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not hasattr(self, "_audience"):
            peers = self.peers
            self._audience = set(self.rng.sample(peers, self.rng.randint(1, max(1, len(peers) - 1))))
        if isinstance(action, Broadcast):
            return spread(sorted(self._audience), action.msg)
        if isinstance(action, Send):
            return [action] if action.to in self._audience else []
        return [action]
