"""Byzantine behaviours of the quorum store: proofs of availability for data nobody has.

Owns: UnavailableBatch, BatchFlood, StaleProofs.
May not: break the Behaviour frame (only rewrite what the inner replica sends, and add to it).

Why this one: the point of a proof of availability is that honest replicas never vote for a
block whose data no honest validator holds (`bft.core.quorum_store`). A leader that made a batch,
sent it to no one and signed its proof alone is the attack the f+1 threshold stops; with a
threshold of f (or no check of the signers), honest replicas would vote for it and their commits
would wait forever for data that does not exist.

And StaleProofs, because an honest node does it too: a validator restarted after its batch
committed without it sends that batch's proof again (its record of what committed is older than
the proof), and the proof is valid, f+1 signatures over data everyone holds. A replica that queued
it would have every leader propose it and every voter refuse the block as a duplicate: the chain
would commit nothing, so the batch would never expire (found by the ledger cluster test under
batch-flood; `bft.core.quorum_store` refuses such a proof).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour
from bft.core import wire
from bft.core.actions import Action, Broadcast, Send
from bft.core.batches import Batch, BatchAck, BatchProof, BatchProofs, BatchRequest, BatchResponse
from bft.core.messages import Message, Proposal
from bft.core.types import ValidatorIndex

# Proofs of its own committed batches StaleProofs sends again per incoming proposal: a few, so
# that the refusals stay a trickle beside the honest traffic.
STALE_PROOFS_PER_PROPOSAL = 4

# A sequence number far above any the inner replica reaches, so the forged batches never
# collide with its own (which it still sends, so its clients' transactions commit).
FORGED_SEQUENCE_BASE = 1 << 40


class UnavailableBatch(Behaviour):
    """As leader, adds to its proposal a proof of a batch it sent to nobody, signed by itself
    alone (fewer than f+1 signers), and broadcasts that proof for other leaders to propose."""

    name = "unavailable-batch"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forged = 0

    def _forge(self, height: int) -> BatchProof:
        self._forged += 1
        sequence = FORGED_SEQUENCE_BASE + self._forged
        batch = Batch(self.me, sequence, height + 1, (f"withheld {self.me}/{sequence}".encode(),))
        ack = self.certifier.sign_batch_ack(self.key, self.me, batch.info)
        return BatchProof(batch.info, ((self.me, ack.signature),))

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        block = action.msg.block
        if not self.config.quorum_store:
            return [action]
        forged = self._forge(block.height)
        lean = replace(block, batches=(*block.batches, forged)[-self.config.max_block_batches :])
        self._remember_block(lean)
        return [Broadcast(self.propose(lean, action.msg.tc)), Broadcast(BatchProofs((forged,)))]


class BatchFlood(Behaviour):
    """Alongside its honest traffic, at every timer and every message that is not an answer,
    sends each peer a new batch (numbered past its budget there, sometimes a second batch under
    a number already used, sometimes one already expired), an acknowledgement it never asked
    for, a proof signed by itself alone, and a request for batches by digests nobody has or by
    the digests its own blocks reference, and never waits for an answer. What it runs into: the
    per-author budget of stored batches, the expiry window, the proof threshold and the answer
    budget (`bft.core.quorum_store`)."""

    name = "batch-flood"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sequence = FORGED_SEQUENCE_BASE

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if isinstance(msg, BatchResponse) or not self.config.quorum_store:
            return []
        return self._flood()

    def on_timer(self, now: float) -> list[Action]:
        extra = self._flood() if self.config.quorum_store else []
        return super().on_timer(now) + extra

    def _flood(self) -> list[Action]:
        height = self.inner.committed_height
        self._sequence += 1
        size = self.rng.choice((1, 64, 1024))
        txs = tuple(f"flood {self.me}/{self._sequence}/{i}".encode().ljust(size, b".") for i in range(4))
        expiry = height + 1 if self.rng.random() < 0.8 else max(0, height - 1)
        batch = Batch(self.me, self._sequence, expiry, txs)
        sequence = self._sequence - 1 if self.rng.random() < 0.2 else self._sequence
        twin = Batch(self.me, sequence, height + 1, (b"twin", *txs[1:]))
        ack = self.certifier.sign_batch_ack(self.key, self.me, batch.info)
        proof = BatchProof(batch.info, ((self.me, ack.signature),))
        digests = [self.rng.randbytes(32) for _ in range(8)]
        digests += [p.info.digest for b in list(self.blocks.values())[-4:] for p in b.batches]
        request = BatchRequest(
            max(1, height - self.rng.randint(0, 8)), tuple(digests[: wire.MAX_BATCHES_PER_BLOCK])
        )
        out: list[Action] = []
        for peer in self.peers:
            unasked = BatchAck(twin.info, self.me, ack.signature)
            out += [Send(peer, batch), Send(peer, twin), Send(peer, unasked)]
            out += [Send(peer, BatchProofs((proof,))), Send(peer, request)]
        return out


class StaleProofs(Behaviour):
    """At every proposal it receives, sends every peer again the proofs of availability of its
    own batches that committed already (the latest few), as a restarted validator does with the
    proofs it formed before its crash. Valid proofs (f+1 signatures, its own batches, not
    expired): only the check against what committed keeps them out of honest proposals."""

    name = "stale-proofs"

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not (self.config.quorum_store and isinstance(msg, Proposal)):
            return []
        committed = self.inner.committed_height
        stale = [
            proof
            for block in self.blocks.values()
            if 0 < block.height <= committed
            for proof in block.batches
            if proof.info.author == self.me
        ][-STALE_PROOFS_PER_PROPOSAL:]
        return [Broadcast(BatchProofs(tuple(stale)))] if stale else []
