"""The quorum store: batches disseminated apart from ordering, and proofs that they are available.

Owns: our batches (made from the payload source, numbered durably, sent once to every peer, and
proved by f+1 acknowledgements), the peers' batches we store and acknowledge (within a budget per
author, in count and bytes), the queue of proofs a leader may propose (ours and those their
authors broadcast), the checks a block's proofs must pass, filling a lean block with its batches'
transactions for its commit, fetching the batches a commit waits for from their signers, serving
them, and forgetting batches once committed or expired.
May not: vote, commit or choose views (the replica and the chain state do), or sign except
through the safety rules, which hold the key.

Why a replica votes on proofs without holding the data: f+1 signers stored the batch durably
before signing, so one honest replica at least holds it and serves it; the vote is about the
order, and the data is fetched on the way to execution. A Byzantine leader cannot get a vote for
a batch nobody has: its proof would need f+1 signers, one of them honest. What waits is the
commit: a block's transactions are executed only once every one of its batches is here
(`fill`), so a replica that missed a batch commits a little later, never differently.

Why expiry heights: a batch that never gets proposed (its author crashed, its proof was lost)
must not stay forever. A block at height h may only reference batches expiring at h or later,
so once the committed height passes a batch's expiry no block can still reference it, and every
replica forgets it. A replica accepts expiries up to twice the lifetime above its own committed
height: its author may be ahead of it.

Duplicates: two batches may hold one transaction (a client sent it to two validators). Blocks
never reference a batch twice along a chain, and the application skips a transaction already
committed, so it is executed once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Final

from bft.core import wire
from bft.core.actions import Action, Broadcast, Refusal, Send
from bft.core.batches import (
    Batch,
    BatchAck,
    BatchInfo,
    BatchProof,
    BatchProofs,
    BatchRequest,
    BatchResponse,
    availability_threshold,
    fit_limits,
    referenced_totals,
    split_payload,
)
from bft.core.certs import Certifier
from bft.core.chain import CommittedChain
from bft.core.config import ReplicaConfig
from bft.core.errors import InvariantViolation
from bft.core.messages import Block
from bft.core.ports import BatchStore, PayloadSource
from bft.core.refusals import RefusalReason, Refused, Subject
from bft.core.safety import SafetyRules
from bft.core.serving import TokenBucket
from bft.core.types import ValidatorIndex, View

# Our batches waiting for acknowledgements at once: a new batch is made only below this, so
# under load a batch holds what arrived while the previous ones were acknowledged.
PIPELINE_DEPTH: Final = 2
# Batches a commit may wait for at once (fetched from their signers).
MAX_WANTED: Final = 4096
# Answers to BatchRequests a peer gets per second, and in one burst, in message-sized units.
ANSWERS_PER_S: Final = 16
ANSWER_BURST: Final = 8


@dataclass(slots=True)
class _Own:
    """One of our batches that has no proof yet: who acknowledged it, and when we last sent it."""

    batch: Batch
    acks: dict[ValidatorIndex, bytes]
    sent_at: float


@dataclass(slots=True)
class _Want:
    """A batch a commit waits for: the proof's info, the height of the block referencing it, the
    signers to ask in turn, how many times we asked, and when we last did."""

    info: BatchInfo
    height: int
    signers: tuple[ValidatorIndex, ...]
    tries: int
    asked_at: float


class QuorumStore:
    def __init__(
        self,
        config: ReplicaConfig,
        certifier: Certifier,
        safety: SafetyRules,
        store: BatchStore,
        committed: CommittedChain,
    ) -> None:
        """Start (or restart) from the batches `store` kept: ours without a proof are sent again
        at the first timer (acknowledgements are not kept: peers sign them again)."""
        self._config = config
        self._me = config.me
        self._certifier = certifier
        self._safety = safety
        self._store = store
        self._committed_chain = committed
        self._threshold = availability_threshold(config.validators.n)
        self._next_sequence = store.highest_sequence(config.me) + 1
        # Every batch kept, by digest; per author, the digests and sizes of those its author sent
        # (the budget); apart, those fetched for a commit (bounded with the wanted ones).
        self._kept: dict[bytes, BatchInfo] = {}
        self._by_author: dict[ValidatorIndex, dict[bytes, int]] = {}
        self._fetched: set[bytes] = set()
        self._numbers: dict[tuple[ValidatorIndex, int], bytes] = {}
        # Our batches kept and not committed: their transactions stay out of new batches.
        self._own_txs: dict[bytes, tuple[bytes, ...]] = {}
        self._batched: set[bytes] = set()
        self._unproved: dict[bytes, _Own] = {}
        # Proofs a leader may propose, oldest first.
        self._proofs: dict[bytes, BatchProof] = {}
        # Digests of batches committed and not yet expired (a block may not reference them).
        self._committed: dict[bytes, int] = {}
        self._wanted: dict[bytes, _Want] = {}
        self._answers: dict[ValidatorIndex, TokenBucket] = {}
        for batch in store.batches():
            # What a restart finds beyond an author's budget came in fetched for a commit.
            kept = self._by_author.get(batch.author, {})
            self._keep(batch.info, fetched=len(kept) >= config.max_stored_batches)
            if batch.author == self._me:
                self._own(batch, -float("inf"))
        self._committed = self._recently_committed(committed)

    def _recently_committed(self, committed: CommittedChain) -> dict[bytes, int]:
        """The batches of the committed blocks that may still be referenced (at most twice the
        lifetime below the tip, which a block's expiry horizon allows): a restart must refuse a
        re-proposed committed batch as the replica before it did."""
        tip = committed.tip()
        if tip is None:
            return {}
        height = max(1, tip[0].height - 2 * self._config.batch_lifetime_heights)
        found: dict[bytes, int] = {}
        while height <= tip[0].height:
            blocks, _ = committed.committed_range(
                height, wire.MAX_BLOCKS_PER_RESPONSE, wire.MAX_MESSAGE_SIZE_BYTES
            )
            if not blocks:
                break
            for block in blocks:
                found.update((p.info.digest, p.info.expiry_height) for p in block.batches)
            height = blocks[-1].height + 1
        return {d: e for d, e in found.items() if e >= tip[0].height}

    # Read-only views.

    @property
    def enabled(self) -> bool:
        return self._config.quorum_store

    @property
    def waiting(self) -> int:
        """Batches a commit waits for."""
        return len(self._wanted)

    def statistics(self) -> dict[str, int]:
        return {
            "batches_kept": len(self._kept),
            "batches_unproved": len(self._unproved),
            "proofs_queued": len(self._proofs),
            "batches_wanted": len(self._wanted),
        }

    def check_bounds(self) -> None:
        budget = self._config.max_stored_batches
        if any(len(kept) > budget for kept in self._by_author.values()):
            raise InvariantViolation(f"more than {budget} batches kept for one author")
        if len(self._wanted) + len(self._fetched) > MAX_WANTED:
            raise InvariantViolation(f"more than {MAX_WANTED} batches wanted or fetched for commits")
        # Ours in flight: below half the budget when made (a restart brings back what it kept).
        if len(self._own_txs) > max(1, budget // 2) or not self._unproved.keys() <= self._own_txs.keys():
            raise InvariantViolation(f"{len(self._own_txs)} batches of ours in flight, over half of {budget}")

    def deadline(self) -> float | None:
        """When a batch of ours is sent again, or a wanted batch asked for again."""
        retry = self._config.base_timeout_s
        times = [own.sent_at + retry for own in self._unproved.values()]
        times.extend(want.asked_at + retry / 2 for want in self._wanted.values())
        return min(times) if times else None

    # Our batches.

    def make_batches(
        self, view: View, committed_height: int, payload: PayloadSource, out: list[Action]
    ) -> None:
        """Pack waiting transactions into new batches while the pipeline and our budget at the
        peers allow, keep each durably and send it to every peer."""
        if not self.enabled:
            return
        config = self._config
        while len(self._unproved) < PIPELINE_DEPTH and len(self._own_txs) < config.max_stored_batches // 2:
            # A transaction larger than a batch can never go in one: the node's mempool refuses
            # those; skipped here rather than stop every batch behind it.
            offered = [
                tx for tx in payload.payload_for(view, self._batched) if len(tx) <= config.max_batch_bytes
            ]
            txs = fit_limits(offered, config.max_batch_txs, config.max_batch_bytes)
            if not txs:
                return
            batch = Batch(
                self._me, self._next_sequence, committed_height + config.batch_lifetime_heights, txs
            )
            self._store.put(batch)
            self._next_sequence += 1
            self._keep(batch.info)
            own = self._own(batch, -float("inf"))
            self._send_own(own, out)

    def _own(self, batch: Batch, sent_at: float) -> _Own:
        self._own_txs[batch.digest] = batch.txs
        self._batched.update(batch.txs)
        own = _Own(batch, {}, sent_at)
        self._unproved[batch.digest] = own
        return own

    def _send_own(self, own: _Own, out: list[Action]) -> None:
        ack = self._safety.sign_batch_ack(own.batch.info)
        if isinstance(ack, BatchAck):
            own.acks[self._me] = ack.signature
        out.append(Broadcast(own.batch))
        self._prove(own, out)

    def on_timer(self, now: float, out: list[Action]) -> None:
        for own in list(self._unproved.values()):
            if now >= own.sent_at + self._config.base_timeout_s:
                own.sent_at = now
                self._send_own(own, out)
        self._ask(now, out)

    def on_ack(self, sender: ValidatorIndex, ack: BatchAck, out: list[Action]) -> bool:
        """Count a peer's acknowledgement of one of our batches; True if a proof formed."""
        own = self._unproved.get(ack.info.digest)
        if ack.author != sender:
            detail = "ack's author is not its sender"
            return self._refuse(Subject.BATCH_ACK, sender, RefusalReason.NOT_THE_SENDER, detail, out)
        if own is None and ack.info.digest in self._own_txs:
            return False  # a late ack of a batch of ours proved already: expected, not wrong
        if own is None or own.batch.info != ack.info:
            detail = "ack of no batch of ours"
            return self._refuse(Subject.BATCH_ACK, sender, RefusalReason.NOT_REQUESTED, detail, out)
        refused = self._certifier.check_batch_ack(ack)
        if refused is not None:
            return self._refuse(Subject.BATCH_ACK, sender, refused.reason, refused.detail, out)
        own.acks[sender] = ack.signature
        return self._prove(own, out)

    def _prove(self, own: _Own, out: list[Action]) -> bool:
        if len(own.acks) < self._threshold:
            return False
        proof = BatchProof(own.batch.info, tuple(sorted(own.acks.items())))
        del self._unproved[own.batch.digest]
        self._proofs[own.batch.digest] = proof
        out.append(Broadcast(BatchProofs((proof,))))
        return True

    # The peers' batches and proofs.

    def on_batch(
        self, sender: ValidatorIndex, batch: Batch, committed_height: int, out: list[Action]
    ) -> bool:
        """Keep a peer's batch durably and acknowledge it; True if a commit wanted it."""
        refused = self._check_batch(sender, batch, committed_height)
        if refused is not None:
            return self._refuse(Subject.BATCH, sender, refused.reason, refused.detail, out)
        info = batch.info
        if info.digest not in self._kept:
            self._store.put(batch)
            self._keep(info)
        wanted = self._wanted.pop(info.digest, None) is not None
        ack = self._safety.sign_batch_ack(info)
        if isinstance(ack, BatchAck):
            out.append(Send(batch.author, ack))
        return wanted

    def _check_batch(self, sender: ValidatorIndex, batch: Batch, committed_height: int) -> Refused | None:
        config = self._config
        info = batch.info
        if batch.author != sender:
            return Refused(RefusalReason.NOT_THE_SENDER, f"batch by {batch.author} from validator {sender}")
        if not self.enabled:
            return Refused(
                RefusalReason.PAYLOAD_MODE, "a batch, but this chain runs without the quorum store"
            )
        if not batch.txs or len(batch.txs) > config.max_batch_txs or info.size_bytes > config.max_batch_bytes:
            detail = f"{len(batch.txs)} transactions, {info.size_bytes} bytes: over the batch limits or empty"
            return Refused(RefusalReason.BAD_BATCH, detail)
        expired = self._expiry_refusal(info, committed_height + 1, committed_height)
        if expired is not None:
            return expired
        if info.digest in self._committed:
            return Refused(RefusalReason.DUPLICATE_BATCH, f"batch {info.sequence} is committed already")
        known = self._numbers.get((batch.author, batch.sequence))
        if known is not None and known != info.digest:
            return Refused(RefusalReason.BATCH_CONFLICT, f"a second batch numbered {batch.sequence}")
        kept = self._by_author.get(batch.author, {})
        if info.digest not in kept:
            budget = config.max_stored_batches
            if len(kept) >= budget or sum(kept.values()) + info.size_bytes > budget * config.max_batch_bytes:
                return Refused(
                    RefusalReason.BATCH_QUOTA, f"validator {batch.author} has {len(kept)} batches kept"
                )
        return None

    def _expiry_refusal(self, info: BatchInfo, height: int, committed_height: int) -> Refused | None:
        """EXPIRED_BATCH unless a block at `height` may reference the batch: it expires at or
        above `height`, and at most twice the lifetime above `committed_height`."""
        horizon = committed_height + 2 * self._config.batch_lifetime_heights
        if not height <= info.expiry_height <= horizon:
            detail = f"batch expiring at height {info.expiry_height}, outside {height}..{horizon}"
            return Refused(RefusalReason.EXPIRED_BATCH, detail)
        return None

    def on_proofs(
        self, sender: ValidatorIndex, msg: BatchProofs, committed_height: int, out: list[Action]
    ) -> bool:
        """Queue an author's proofs for our proposals; True if any was new."""
        added = False
        for proof in msg.proofs:
            refused = self._check_queued(sender, proof, committed_height)
            if refused is not None:
                self._refuse(Subject.BATCH_PROOF, sender, refused.reason, refused.detail, out)
                continue
            if proof.info.digest not in self._proofs:
                self._proofs[proof.info.digest] = proof
                added = True
        return added

    def _check_queued(
        self, sender: ValidatorIndex, proof: BatchProof, committed_height: int
    ) -> Refused | None:
        info = proof.info
        if not self.enabled:
            return Refused(
                RefusalReason.PAYLOAD_MODE, "a proof, but this chain runs without the quorum store"
            )
        if info.author != sender:
            return Refused(RefusalReason.NOT_THE_SENDER, f"a proof for validator {info.author}'s batch")
        if info.digest in self._committed:
            # Proposed, it would be refused by every voter as a duplicate (`check_block`), and by
            # every leader in turn until the batch expires: the chain would commit nothing.
            return Refused(RefusalReason.DUPLICATE_BATCH, f"batch {info.sequence} is committed already")
        if info.digest in self._proofs:
            return None
        expired = self._expiry_refusal(info, committed_height + 1, committed_height)
        if expired is not None:
            return expired
        queued = sum(1 for p in self._proofs.values() if p.info.author == sender)
        if queued >= self._config.max_stored_batches:
            return Refused(RefusalReason.BATCH_QUOTA, f"{queued} proofs of validator {sender} queued")
        return self._certifier.check_batch_proof(proof)

    # Blocks.

    def proofs_for(
        self, height: int, committed_height: int, exclude: Collection[bytes]
    ) -> tuple[BatchProof, ...]:
        """Queued proofs for a block at `height`, oldest first, within the block limits, none of
        them in `exclude` (the digests its uncommitted ancestors reference) or committed already
        (a proof of ours can form after its batch committed: a restart sends it again): what
        `check_block` would refuse, a leader does not propose."""
        config = self._config
        chosen: list[BatchProof] = []
        txs = size = 0
        for digest, proof in self._proofs.items():
            info = proof.info
            if digest in exclude or digest in self._committed:
                continue
            if self._expiry_refusal(info, height, committed_height) is not None:
                continue
            if txs + info.tx_count > config.max_block_txs or size + info.size_bytes > config.max_block_bytes:
                continue
            chosen.append(proof)
            txs, size = txs + info.tx_count, size + info.size_bytes
            if len(chosen) == config.max_block_batches:
                break
        return tuple(chosen)

    def check_block(self, block: Block, pending: Collection[bytes], committed_height: int) -> Refused | None:
        """Why `block` (a proposal extending a parent whose ancestors reference `pending`) may not
        carry its payload, or None: under the quorum store, proofs only, within the limits, each
        verified, unexpired and referenced once along the chain; without it, no proofs."""
        config = self._config
        if not self.enabled:
            if block.batches:
                return Refused(RefusalReason.PAYLOAD_MODE, "proofs of availability without the quorum store")
            return None
        if block.txs:
            return Refused(
                RefusalReason.PAYLOAD_MODE, f"{len(block.txs)} transactions inline under the quorum store"
            )
        txs, size = referenced_totals(block.batches)
        if (
            len(block.batches) > config.max_block_batches
            or txs > config.max_block_txs
            or size > config.max_block_bytes
        ):
            detail = (
                f"{len(block.batches)} batches of {txs} transactions, {size} bytes: over the block limits"
            )
            return Refused(RefusalReason.OVER_BLOCK_LIMIT, detail)
        seen: set[bytes] = set()
        for proof in block.batches:
            digest = proof.info.digest
            if digest in seen or digest in pending or digest in self._committed:
                return Refused(
                    RefusalReason.DUPLICATE_BATCH, f"batch {proof.info.sequence} of {proof.info.author} twice"
                )
            seen.add(digest)
            refused = self._expiry_refusal(proof.info, block.height, block.height)
            if refused is None:
                refused = self._certifier.check_batch_proof(proof)
            if refused is not None:
                return refused
        return None

    def fill(self, block: Block) -> Block | None:
        """`block` with its batches' transactions (itself if it has no proofs or is full), or None
        while a batch is missing here."""
        if not block.batches or block.txs:
            return block
        txs: list[bytes] = []
        for proof in block.batches:
            batch = self._store.get(proof.info.digest)
            if batch is None:
                return None
            txs.extend(batch.txs)
        return replace(block, txs=tuple(txs))

    def want(self, block: Block, now: float, out: list[Action]) -> None:
        """A commit waits for `block`'s missing batches: ask their signers."""
        for proof in block.batches:
            digest = proof.info.digest
            if digest in self._wanted or self._store.get(digest) is not None:
                continue
            if len(self._wanted) + len(self._fetched) >= MAX_WANTED:
                detail = f"{len(self._wanted)} batches wanted and {len(self._fetched)} fetched already"
                out.append(Refusal(Subject.FETCH, RefusalReason.BUFFER_FULL, detail))
                break
            signers = tuple(s for s, _ in proof.signatures if s != self._me)
            self._wanted[digest] = _Want(proof.info, block.height, signers, 0, -float("inf"))
        self._ask(now, out)

    def _ask(self, now: float, out: list[Action]) -> None:
        asks: dict[tuple[ValidatorIndex, int], list[bytes]] = {}
        for digest, want in self._wanted.items():
            if not want.signers or now < want.asked_at + self._config.base_timeout_s / 2:
                continue
            signer = want.signers[want.tries % len(want.signers)]
            want.tries += 1
            want.asked_at = now
            asks.setdefault((signer, want.height), []).append(digest)
        for (signer, height), digests in asks.items():
            for start in range(0, len(digests), wire.MAX_BATCHES_PER_BLOCK):
                out.append(
                    Send(
                        signer,
                        BatchRequest(height, tuple(digests[start : start + wire.MAX_BATCHES_PER_BLOCK])),
                    )
                )

    def on_batch_request(
        self, sender: ValidatorIndex, request: BatchRequest, now: float, out: list[Action]
    ) -> None:
        """Answer with the requested batches we hold, kept or in our committed block at the
        request's height, within one message and the peer's byte budget."""
        budget = self._answers.setdefault(
            sender,
            TokenBucket(
                float(ANSWER_BURST * wire.MAX_MESSAGE_SIZE_BYTES),
                float(ANSWERS_PER_S * wire.MAX_MESSAGE_SIZE_BYTES),
            ),
        )
        if budget.available(now) < wire.MAX_MESSAGE_SIZE_BYTES:
            self._refuse(
                Subject.BATCH_REQUEST,
                sender,
                RefusalReason.RATE_LIMITED,
                "past the peer's answer budget",
                out,
            )
            return
        # The committed block is read only for digests the store does not hold, and what it
        # costs to read is charged like what is sent: a request for digests nobody has, at a
        # committed height, is a block read from SQLite, and a budget that charged only answers
        # would let a peer ask for such reads without end.
        held = [(d, self._store.get(d)) for d in request.digests]
        read_bytes, committed = 0, dict[bytes, Batch]()
        if any(batch is None for _, batch in held):
            read_bytes, committed = self._committed_batches(request.height)
        full = wire.response_budget_bytes(self._config.validators.n)
        room = full
        batches: list[Batch] = []
        for digest, kept in held:
            batch = kept or committed.get(digest)
            if batch is None:
                continue
            size = wire.batch_size_bound(batch)
            if size > room:
                break
            batches.append(batch)
            room -= size
        budget.take(full - room + read_bytes, now)
        out.append(Send(sender, BatchResponse(tuple(batches))))

    def _committed_batches(self, height: int) -> tuple[int, dict[bytes, Batch]]:
        """The batches of our committed block at `height` by digest, and the bytes read for them."""
        if height < 1:
            return 0, {}
        blocks, _ = self._committed_chain.committed_range(height, 1, wire.MAX_MESSAGE_SIZE_BYTES)
        if not blocks or blocks[0].height != height:
            return 0, {}
        read_bytes = wire.block_size_bound(blocks[0])
        split = split_payload(blocks[0].txs, blocks[0].batches) if blocks[0].batches else "no batches"
        return read_bytes, ({} if isinstance(split, str) else {b.digest: b for b in split})

    def on_batch_response(self, sender: ValidatorIndex, response: BatchResponse, out: list[Action]) -> bool:
        """Keep the wanted batches among those answered; True if any landed."""
        landed = False
        for batch in response.batches:
            want = self._wanted.get(batch.digest)
            if want is None or want.info != batch.info:
                detail = "a batch no commit waits for, or not the one its proof describes"
                self._refuse(Subject.BATCH_RESPONSE, sender, RefusalReason.NOT_REQUESTED, detail, out)
                continue
            if batch.digest not in self._kept:
                self._store.put(batch)
                self._keep(batch.info, fetched=True)
            del self._wanted[batch.digest]
            landed = True
        return landed

    # Commits.

    def on_commit(self, blocks: Iterable[Block], committed_height: int) -> None:
        """The committed chain holds `blocks` (full) durably now: their batches leave the queue and
        the store, and so does every batch and proof expired at `committed_height`."""
        gone: list[bytes] = []
        for block in blocks:
            for proof in block.batches:
                self._committed[proof.info.digest] = proof.info.expiry_height
                gone.append(proof.info.digest)
        gone.extend(d for d, info in self._kept.items() if info.expiry_height <= committed_height)
        for digest in gone:
            self._forget(digest)
        for digest in [d for d, p in self._proofs.items() if p.info.expiry_height <= committed_height]:
            del self._proofs[digest]
        self._committed = {d: e for d, e in self._committed.items() if e >= committed_height}
        self._store.remove(gone)

    def _keep(self, info: BatchInfo, fetched: bool = False) -> None:
        self._kept[info.digest] = info
        if fetched:
            self._fetched.add(info.digest)
        else:
            self._by_author.setdefault(info.author, {})[info.digest] = info.size_bytes
        self._numbers.setdefault((info.author, info.sequence), info.digest)

    def _forget(self, digest: bytes) -> None:
        info = self._kept.pop(digest, None)
        if info is not None:
            self._by_author.get(info.author, {}).pop(digest, None)
            self._fetched.discard(digest)
            if self._numbers.get((info.author, info.sequence)) == digest:
                del self._numbers[(info.author, info.sequence)]
        self._proofs.pop(digest, None)
        self._unproved.pop(digest, None)
        self._wanted.pop(digest, None)
        txs = self._own_txs.pop(digest, None)
        if txs is not None:
            self._batched.difference_update(txs)

    def _refuse(
        self, what: Subject, sender: ValidatorIndex, reason: RefusalReason, detail: str, out: list[Action]
    ) -> bool:
        out.append(Refusal(what, reason, detail, None, sender))
        return False
