"""Byzantine behaviours, usable in the simulator and in a real node process.

Each behaviour wraps an honest replica (`Behaviour(inner, key, config, rng)`) and rewrites what it
sends. Twins, two honest replicas sharing one key, is a property of the network and lives in
`bft.sim.twins`.
"""

from __future__ import annotations

from bft.adversary.base import Behaviour
from bft.adversary.batches import BatchFlood, StaleProofs, UnavailableBatch
from bft.adversary.flood import RequestFlood
from bft.adversary.forks import DetachedParent, ForkParent, SameTargetEquivocator
from bft.adversary.leaders import EquivocatingLeader, ForgedQC, InvalidBlock
from bft.adversary.noise import CrossChain, FarFuture, GarbageSender, NearFuture, Replayer
from bft.adversary.silence import SelectiveOmission, Silent
from bft.adversary.turns import FalseBlame, OutOfTurn
from bft.adversary.voters import DoubleVoter

BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        EquivocatingLeader,
        DoubleVoter,
        InvalidBlock,
        ForgedQC,
        Replayer,
        FarFuture,
        Silent,
        SelectiveOmission,
        GarbageSender,
        SameTargetEquivocator,
        ForkParent,
        DetachedParent,
        NearFuture,
        CrossChain,
        OutOfTurn,
        FalseBlame,
        RequestFlood,
        UnavailableBatch,
        BatchFlood,
        StaleProofs,
    )
}

# The behaviours that act only on the quorum store's messages: on an inline chain they are honest
# nodes, so a test that means them runs them on a chain with the quorum store.
# The behaviour that acts only under leader reputation (inline it proposes records the chain
# refuses on sight): a test that means it runs it on a chain with leader reputation.
LEADER_REPUTATION_BEHAVIOURS: frozenset[str] = frozenset({FalseBlame.name})

QUORUM_STORE_BEHAVIOURS: frozenset[str] = frozenset(
    {UnavailableBatch.name, BatchFlood.name, StaleProofs.name}
)

__all__ = ["BEHAVIOURS", "LEADER_REPUTATION_BEHAVIOURS", "QUORUM_STORE_BEHAVIOURS", "Behaviour"]
