"""The frame every Byzantine behaviour shares: an honest replica inside, its outputs rewritten.

Owns: Behaviour (delegation to the inner replica, a record of blocks and QCs seen, and helpers to
sign whatever the behaviour wants with the validator's own key).
May not: do I/O or keep unbounded state; it runs in the simulator and in a real node process alike.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import ClassVar

from bft.core.actions import Action, Broadcast, Send
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.config import ReplicaConfig
from bft.core.messages import Block, Message, Proposal, QuorumCert, TimeoutCert, Vote
from bft.core.replica import Replica
from bft.core.types import BlockId, ValidatorIndex, View
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

# Blocks remembered for forging forks: enough to reach a few commits back, never unbounded.
MAX_REMEMBERED_BLOCKS = 256


class Behaviour:
    """A Program that runs an honest replica and rewrites what it sends.

    Subclasses override `rewrite` (and may add `on_input`); everything else is delegated.
    """

    name: ClassVar[str] = "honest"

    def __init__(self, inner: Replica, key: PrivateKey, config: ReplicaConfig, rng: random.Random) -> None:
        self.inner = inner
        self.key = key
        self.config = config
        self.rng = rng
        self.me = config.me
        _, genesis_qc = genesis(config.chain_id)
        self.certifier = Certifier(config.chain_id, config.validators, genesis_qc, SignatureCache())
        self.blocks: OrderedDict[BlockId, Block] = OrderedDict()
        self.last_tc: TimeoutCert | None = None

    # Program interface.

    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        self._remember(msg)
        extra = self.on_input(sender, msg, now)
        return self._rewrite_all(self.inner.on_message(sender, msg, now), now) + extra

    def on_timer(self, now: float) -> list[Action]:
        return self._rewrite_all(self.inner.on_timer(now), now)

    def on_payload(self, now: float) -> list[Action]:
        return self._rewrite_all(self.inner.on_payload(now), now)

    def next_deadline(self) -> float | None:
        return self.inner.next_deadline()

    # Hooks.

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        """Extra actions in reaction to an incoming message. Default: none."""
        return []

    def rewrite(self, action: Action, now: float) -> list[Action]:
        """What to send instead of `action`. Default: the action unchanged."""
        return [action]

    # Helpers for subclasses.

    @property
    def peers(self) -> list[ValidatorIndex]:
        return [ValidatorIndex(i) for i in range(self.config.validators.n) if i != self.me]

    def next_leader(self, view: View, block_id: BlockId | None = None) -> ValidatorIndex:
        """Who collects votes for `block_id` of `view` (under leader reputation it depends on the
        block: its window), as the inner replica computes it."""
        if block_id is None:
            return self.inner.leader_of_view(View(view + 1))
        return self.inner.next_leader_after(block_id, view)

    def vote_for(self, view: View, block_id: BlockId) -> Vote:
        return self.certifier.sign_vote(self.key, self.me, view, block_id)

    def vote_to_next_leader(self, view: View, block_id: BlockId) -> list[Action]:
        """Our signed vote for `block_id` in `view`, sent to the next leader (none if that is us)."""
        leader = self.next_leader(view, block_id)
        return [] if leader == self.me else [Send(leader, self.vote_for(view, block_id))]

    def propose(self, block: Block, tc: TimeoutCert | None) -> Proposal:
        return Proposal(block, tc, self.certifier.sign_proposal(self.key, block))

    def ancestor_certified(self, qc: QuorumCert, depth: int) -> tuple[Block, QuorumCert] | None:
        """Walk `depth` QCs down the chain from `qc`: the block reached and the QC certifying it.

        Depth 2 from the high QC lands just below the lock, where a fork conflicts with blocks
        that may already be committed somewhere: the fork only the lock can stop."""
        block = self.blocks.get(qc.block_id)
        for _ in range(depth):
            if block is None:
                return None
            qc = block.qc
            block = self.blocks.get(qc.block_id)
        return None if block is None else (block, qc)

    def _remember(self, msg: Message) -> None:
        if isinstance(msg, Proposal):
            self._remember_block(msg.block)
            if msg.tc is not None and (self.last_tc is None or msg.tc.view > self.last_tc.view):
                self.last_tc = msg.tc

    def _remember_block(self, block: Block) -> None:
        self.blocks[block.id] = block
        while len(self.blocks) > MAX_REMEMBERED_BLOCKS:
            self.blocks.popitem(last=False)

    def _rewrite_all(self, actions: list[Action], now: float) -> list[Action]:
        out: list[Action] = []
        for action in actions:
            if isinstance(action, Broadcast | Send) and isinstance(action.msg, Proposal):
                self._remember(action.msg)
            out.extend(self.rewrite(action, now))
        return out


def spread(peers: list[ValidatorIndex], msg: Message) -> list[Action]:
    return [Send(p, msg) for p in peers]
