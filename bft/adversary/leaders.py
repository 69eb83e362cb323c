"""Byzantine leaders: equivocation, forged certificates, invalid blocks.

Owns: EquivocatingLeader, ForgedQC, InvalidBlock.
May not: break the Behaviour frame (only rewrite what the inner replica sends).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour, spread
from bft.core import wire
from bft.core.actions import Action, Broadcast, Send
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SyncInfo,
    Timeout,
    TimeoutCert,
)
from bft.core.types import BlockId, ValidatorIndex, View
from crypto.signing import Tag, sign

# Fabricated blocks served on request, newest kept.
MAX_FABRICATED = 64


class EquivocatingLeader(Behaviour):
    """As leader, sends different blocks for one view to different halves of the validators, and
    votes for both. Half the time it first withholds its proposal (and so the QC it carries) until
    the previous view times out, builds the TC from the others' timeouts, and then proposes a
    fork from an older QC: with a TC any QC is a valid parent, and only the lock stops the fork.
    Half of those times one peer alone is sent the withheld proposal, so that it may commit what
    the QC inside closes while the others are offered the fork.
    """

    name = "equivocate"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._withheld: Proposal | None = None
        self._timeouts: dict[ValidatorIndex, Timeout] = {}
        # The QC of the last withheld proposal: a certified block no honest replica has heard of,
        # later extended across a view gap (what a commit rule without consecutive views misses).
        self._secret_qc: QuorumCert | None = None

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if self._withheld is not None and isinstance(action, Broadcast | Send):
            return []  # anything we send now (e.g. our timeouts' high QC) would leak the QC
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        original = action.msg
        if original.tc is None and self.rng.random() < 0.5:
            self._withheld = original
            self._timeouts = {}
            if self.rng.random() < 0.5:
                # One peer hears it and may commit what the QC inside closes; the others time
                # out and are then offered a fork that only their locks refuse.
                return [Send(self.rng.choice(self.peers), original)]
            return []
        twin = self._conflicting_block(original, original.tc)
        return self._equivocate(original, twin, original.tc)

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        withheld = self._withheld
        if withheld is None or not isinstance(msg, Timeout):
            return []
        if withheld.view < self.inner.view:
            self._withheld = None  # the others moved on without us
            return []
        if msg.view + 1 != withheld.view:
            return []
        self._timeouts[msg.author] = msg
        if len(self._timeouts) + 1 < self.config.validators.quorum:
            return []
        # Our own timeout claims the others' highest QC: the withheld one is not below the view.
        high_qc = max((t.high_qc for t in self._timeouts.values()), key=lambda qc: qc.view)
        own = self.certifier.sign_timeout(self.key, self.me, msg.view, high_qc)
        timeouts = [*self._timeouts.values(), own]
        tc = TimeoutCert(
            msg.view, high_qc, tuple(sorted((t.author, t.high_qc.view, t.signature) for t in timeouts))
        )
        self._withheld = None
        fork = self._conflicting_block(withheld, tc)
        self._secret_qc = withheld.block.qc
        return self._equivocate(replace(withheld, tc=tc), fork, tc)

    def _equivocate(self, original: Proposal, twin: Block, tc: TimeoutCert | None) -> list[Action]:
        block = original.block
        if original.tc != tc:
            original = self.propose(block, tc)
        self._remember_block(twin)
        peers = self.peers
        self.rng.shuffle(peers)
        half = self.rng.randint(1, len(peers) - 1) if len(peers) > 1 else len(peers)
        return [
            *spread(peers[:half], original),
            *spread(peers[half:], self.propose(twin, tc)),
            Send(self.next_leader(block.view, twin.id), self.vote_for(block.view, twin.id)),
        ]

    def _conflicting_block(self, original: Proposal, tc: TimeoutCert | None) -> Block:
        block = original.block
        extra = (b"equivocation/%d/%d" % (block.view, self.rng.getrandbits(32)),)
        secret = self._secret_qc
        if tc is not None and secret is not None and secret.view < block.qc.view and self.rng.random() < 0.5:
            parent = self.blocks.get(secret.block_id)
            if parent is not None:
                return Block(block.view, parent.height + 1, parent.id, self.me, secret, extra)
        if tc is not None and self.rng.random() < 0.9:
            older = self.ancestor_certified(block.qc, self.rng.choice((1, 2, 2, 3)))
            if older is not None:
                parent, qc = older
                return Block(block.view, parent.height + 1, parent.id, self.me, qc, extra)
        return replace(block, txs=block.txs + extra)


class ForgedQC(Behaviour):
    """Proposes, syncs and times out with forged QCs: too few signers, one signer repeated to a
    quorum, or signatures made for another chain id; over real blocks and fabricated forks.

    Its strongest move fabricates a fork of three blocks in consecutive views off its committed
    root, each "certified" by a forged QC, proposes on top of it and serves the fabricated blocks
    when asked: a replica that accepted forged QCs would commit the fork.
    """

    name = "forged-qc"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fabricated: dict[BlockId, tuple[Block, ...]] = {}

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if isinstance(msg, BlockRequest) and msg.block_id in self._fabricated:
            return [Send(sender, BlockResponse(self._fabricated[msg.block_id]))]
        return []

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if isinstance(action, Broadcast) and isinstance(action.msg, Proposal):
            block = action.msg.block
            fork = self._fabricated_fork(block) if self.rng.random() < 0.5 else None
            if fork is not None:
                return [Broadcast(self.propose(fork, None))]
            qc, parent = self._forged_qc_and_parent(block.qc)
            forged = Block(block.view, parent.height + 1, parent.id, self.me, qc, block.txs)
            return [Broadcast(self.propose(forged, action.msg.tc))]
        if isinstance(action, Broadcast) and isinstance(action.msg, Timeout):
            qc, _ = self._forged_qc_and_parent(action.msg.high_qc)
            timeout = self.certifier.sign_timeout(self.key, self.me, action.msg.view, qc)
            return [Broadcast(timeout), Broadcast(SyncInfo(qc, None))]
        return [action]

    def _fabricated_fork(self, block: Block) -> Block | None:
        """A block for `block.view` on top of three fabricated blocks in the three views before it."""
        root = self.inner.last_committed
        first_view = block.view - 3
        if first_view <= root.view:
            return None
        parent, qc = root, self._duplicated(root.view, root)
        chain: list[Block] = []
        for offset in range(3):
            view = View(first_view + offset)
            fabricated = Block(view, parent.height + 1, parent.id, self.me, qc, (b"fabricated/%d" % view,))
            chain.append(fabricated)
            parent, qc = fabricated, self._duplicated(view, fabricated)
        newest_first = tuple(reversed(chain))
        for i, fabricated in enumerate(newest_first):
            self._fabricated[fabricated.id] = newest_first[i:]
        while len(self._fabricated) > MAX_FABRICATED:
            self._fabricated.pop(next(iter(self._fabricated)))
        return Block(block.view, parent.height + 1, parent.id, self.me, qc, block.txs)

    def _forged_qc_and_parent(self, real: QuorumCert) -> tuple[QuorumCert, Block]:
        """A forged QC for a block of ours: the real QC's block or a fabricated child of it."""
        parent = self.blocks.get(real.block_id) or self.inner.last_committed
        target = parent
        view = View(max(real.view, parent.view) + 1)
        if self.rng.random() < 0.5:
            # A fabricated block one view above, certified only by the forgery.
            target = Block(view, parent.height + 1, parent.id, self.me, real, (b"forged",))
            self._remember_block(target)
        else:
            view = target.view
        return self._forge(view, target), target

    def _duplicated(self, view: View, block: Block) -> QuorumCert:
        """Our own vote repeated to a quorum."""
        own = self.vote_for(view, block.id).signature
        return QuorumCert(view, block.id, tuple((self.me, own) for _ in range(self.config.validators.quorum)))

    def _forge(self, view: View, block: Block) -> QuorumCert:
        quorum = self.config.validators.quorum
        kind = self.rng.choice(("duplicated", "too-few", "other-chain"))
        if kind == "duplicated":
            return self._duplicated(view, block)
        if kind == "too-few":
            own = self.vote_for(view, block.id).signature
            signatures = tuple((ValidatorIndex(i), own) for i in range(quorum - 1))
        else:
            payload = wire.vote_signing_payload(view, block.id)
            other = sign(self.key, Tag.VOTE, self.config.chain_id + "-other", payload)
            signatures = tuple((ValidatorIndex(i), other) for i in range(quorum))
        return QuorumCert(view, block.id, signatures)


class InvalidBlock(Behaviour):
    """As leader proposes invalid blocks (wrong height, duplicate transactions, a transaction
    replayed from a committed block, over the size limit, a parent its QC does not certify, a
    false app hash, an app height not below the block's) and votes for them; as replica votes for every
    proposal it sees, valid or not."""

    name = "invalid-block"

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not isinstance(msg, Proposal):
            return []
        block = msg.block
        return [Send(self.next_leader(block.view, block.id), self.vote_for(block.view, block.id))]

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        block = action.msg.block
        flaws = ("height", "duplicate-tx", "committed-tx", "oversize", "parent", "app-hash", "app-height")
        flaw = self.rng.choice(flaws)
        committed = self.inner.last_committed
        if flaw == "committed-tx" and committed.height > 0 and committed.txs:
            bad = replace(block, txs=(*block.txs, committed.txs[0]))  # replays a committed transaction
        elif flaw == "height":
            # A few heights too many, or a height no chain can have reached by this view: to a
            # replica that lacks the parent, a sync target (block sync must cap it).
            bad = replace(block, height=block.height + self.rng.choice((5, 10**6)))
        elif flaw == "duplicate-tx":
            bad = replace(block, txs=(b"dup", b"dup"))
        elif flaw == "oversize":
            bad = replace(block, txs=tuple(b"%d" % i for i in range(self.config.max_block_txs + 1)))
        elif flaw == "app-hash":
            bad = replace(block, app_hash=bytes(b ^ 0xFF for b in block.app_hash))
        elif flaw == "app-height":
            bad = replace(block, app_height=block.height)
        else:
            bad = replace(block, parent_id=self.inner.last_committed.id)
        vote = self.vote_for(bad.view, bad.id)
        return [Broadcast(self.propose(bad, action.msg.tc)), Send(self.next_leader(bad.view, bad.id), vote)]
