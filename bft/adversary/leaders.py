"""Byzantine leaders: equivocation, forged certificates, invalid blocks.

Owns: EquivocatingLeader, ForgedQC, InvalidBlock.
May not: break the Behaviour frame (only rewrite what the inner replica sends).
"""

from __future__ import annotations

from dataclasses import replace

from bft.adversary.base import Behaviour, spread
from bft.core.actions import Action, Broadcast, Send
from bft.core.messages import Block, Message, Proposal, QuorumCert, SyncInfo, Timeout
from bft.core.types import ValidatorIndex, View


class EquivocatingLeader(Behaviour):
    """As leader, sends different blocks for one view to different halves of the validators, and
    votes for both. After a TC, the second block forks from an older QC, which only the lock stops.
    """

    name = "equivocate"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        original = action.msg
        block = original.block
        twin = self._conflicting_block(original)
        twin_proposal = self.propose(twin, original.tc)
        self._remember_block(twin)
        peers = self.peers
        self.rng.shuffle(peers)
        half = self.rng.randint(1, len(peers) - 1) if len(peers) > 1 else len(peers)
        vote = self.vote_for(block.view, twin.id)
        return [
            *spread(peers[:half], original),
            *spread(peers[half:], twin_proposal),
            Send(self.next_leader(block.view), vote),
        ]

    def _conflicting_block(self, original: Proposal) -> Block:
        block = original.block
        extra = (b"equivocation/%d/%d" % (block.view, self.rng.getrandbits(32)),)
        if original.tc is not None and self.rng.random() < 0.8:
            older = self.older_certified(block.qc.view)
            if older is not None:
                parent, qc = older
                return Block(block.view, parent.height + 1, parent.id, self.me, qc, extra)
        return replace(block, txs=block.txs + extra)


class ForgedQC(Behaviour):
    """Proposes, syncs and times out with forged QCs: too few signers, one signer repeated to a
    quorum, or signatures made for another chain id; over real blocks and fabricated forks."""

    name = "forged-qc"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if isinstance(action, Broadcast) and isinstance(action.msg, Proposal):
            block = action.msg.block
            qc, parent = self._forged_qc_and_parent(block.qc)
            forged = Block(block.view, parent.height + 1, parent.id, self.me, qc, block.txs)
            return [Broadcast(self.propose(forged, action.msg.tc))]
        if isinstance(action, Broadcast) and isinstance(action.msg, Timeout):
            qc, _ = self._forged_qc_and_parent(action.msg.high_qc)
            timeout = self.certifier.sign_timeout(self.key, self.me, action.msg.view, qc)
            return [Broadcast(timeout), Broadcast(SyncInfo(qc, None))]
        return [action]

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

    def _forge(self, view: View, block: Block) -> QuorumCert:
        quorum = self.config.validators.quorum
        kind = self.rng.choice(("duplicated", "too-few", "other-chain"))
        if kind == "duplicated":
            own = self.vote_for(view, block.id).signature
            signatures = tuple((self.me, own) for _ in range(quorum))
        elif kind == "too-few":
            own = self.vote_for(view, block.id).signature
            signatures = tuple((ValidatorIndex(i), own) for i in range(quorum - 1))
        else:
            from bft.core import wire
            from crypto.signing import Tag, sign

            payload = wire.vote_signing_payload(view, block.id)
            other = sign(self.key, Tag.VOTE, self.config.chain_id + "-other", payload)
            signatures = tuple((ValidatorIndex(i), other) for i in range(quorum))
        return QuorumCert(view, block.id, signatures)


class InvalidBlock(Behaviour):
    """As leader proposes invalid blocks (wrong height, duplicate transactions, over the size
    limit, a parent its QC does not certify) and votes for them; as replica votes for every
    proposal it sees, valid or not."""

    name = "invalid-block"

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not isinstance(msg, Proposal):
            return []
        block = msg.block
        return [Send(self.next_leader(block.view), self.vote_for(block.view, block.id))]

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        block = action.msg.block
        flaw = self.rng.choice(("height", "duplicate-tx", "oversize", "parent"))
        if flaw == "height":
            bad = replace(block, height=block.height + 5)
        elif flaw == "duplicate-tx":
            bad = replace(block, txs=(b"dup", b"dup"))
        elif flaw == "oversize":
            bad = replace(block, txs=tuple(b"%d" % i for i in range(self.config.max_block_txs + 1)))
        else:
            bad = replace(block, parent_id=self.inner.last_committed.id)
        vote = self.vote_for(bad.view, bad.id)
        return [Broadcast(self.propose(bad, action.msg.tc)), Send(self.next_leader(bad.view), vote)]
