"""The quorum store's values: batches of transactions and their proofs of availability.

Why they exist: consensus stays off the data path (Aptos' Quorum Store, Narwhal). Each validator
packs the transactions its clients submit into numbered batches and sends each batch once to
every peer; a peer that stored a batch durably signs an availability acknowledgement; f+1 of
them make a proof of availability, so at least one honest validator holds the data and serves
it. Proposals carry proofs, never transactions: a block stays small whatever the load, and a
Byzantine leader cannot make honest replicas vote for data that nobody has, since an honest
replica votes only for proofs that verify.

Owns: `Batch` (an author's numbered run of transactions, its digest computed on construction),
`BatchInfo` (what an acknowledgement and a proof are about), `BatchAck`, `BatchProof`, the
availability threshold, and the rule that ties a full block's transactions to its proofs
(`payload_error`).
May not: sign or verify signatures (`bft.core.certs`), encode (`bft.core.wire`), or hold state
(`bft.core.quorum_store`).

A block that carries proofs is "lean" while its `txs` is empty (as proposed) and "full" once its
`txs` is the concatenation of its batches' transactions, in proof order; both have the same id
(`bft.core.ids.block_id_of` leaves the transactions of a block with proofs out of it), so a
committed block is stored, executed and served full, and everything downstream of a commit reads
`block.txs` as for a block without proofs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bft.core.ids import batch_digest_of
from bft.core.types import ValidatorIndex, max_faulty


def availability_threshold(n: int) -> int:
    """Signers a proof of availability needs: f+1, so that one of them at least is honest."""
    return max_faulty(n) + 1


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What a batch acknowledgement and a proof of availability are about.

    `expiry_height` bounds the batch's life: a block at a height above it may not reference it,
    so once the committed height passes it every replica may forget the batch."""

    author: ValidatorIndex
    sequence: int
    expiry_height: int
    digest: bytes
    tx_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Transactions `author` packed as its batch number `sequence` (from 1, never reused: the
    author keeps its counter durable). `digest` is computed on construction."""

    author: ValidatorIndex
    sequence: int
    expiry_height: int
    txs: tuple[bytes, ...]
    digest: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", batch_digest_of(self))

    @property
    def size_bytes(self) -> int:
        return sum(len(tx) for tx in self.txs)

    @property
    def info(self) -> BatchInfo:
        return BatchInfo(
            self.author, self.sequence, self.expiry_height, self.digest, len(self.txs), self.size_bytes
        )


@dataclass(frozen=True, slots=True)
class BatchAck:
    """`author` stored the batch `info` describes, durably, and signs that it did."""

    info: BatchInfo
    author: ValidatorIndex
    signature: bytes


@dataclass(frozen=True, slots=True)
class BatchProof:
    """A proof of availability: acknowledgements of f+1 distinct validators for `info`,
    (signer, signature) pairs sorted by signer."""

    info: BatchInfo
    signatures: tuple[tuple[ValidatorIndex, bytes], ...]


@dataclass(frozen=True, slots=True)
class BatchProofs:
    """An author's new proofs, broadcast so that any leader may propose its batches."""

    proofs: tuple[BatchProof, ...]


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Asks a signer for the batches with these digests, which the block at `height` (committed
    or not) references: a replica that committed it serves them from its full block."""

    height: int
    digests: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BatchResponse:
    """The requested batches the responder holds (any subset, in any order)."""

    batches: tuple[Batch, ...]


def fit_limits(txs: Sequence[bytes], max_txs: int, max_bytes: int) -> tuple[bytes, ...]:
    """The longest prefix of `txs` within `max_txs` transactions and `max_bytes` bytes (a block's
    or a batch's)."""
    fitted: list[bytes] = []
    size = 0
    for tx in txs[:max_txs]:
        if size + len(tx) > max_bytes:
            break
        fitted.append(tx)
        size += len(tx)
    return tuple(fitted)


def referenced_totals(proofs: Sequence[BatchProof]) -> tuple[int, int]:
    """Transactions and bytes the proofs reference together."""
    return sum(p.info.tx_count for p in proofs), sum(p.info.size_bytes for p in proofs)


def split_payload(txs: Sequence[bytes], proofs: Sequence[BatchProof]) -> list[Batch] | str:
    """The batches a full block's `txs` make, cut by the proofs' transaction counts, or why they
    do not make the batches the proofs describe."""
    if len(txs) != referenced_totals(proofs)[0]:
        return f"{len(txs)} transactions where the proofs reference {referenced_totals(proofs)[0]}"
    batches: list[Batch] = []
    start = 0
    for proof in proofs:
        info = proof.info
        end = start + info.tx_count
        batch = Batch(info.author, info.sequence, info.expiry_height, tuple(txs[start:end]))
        start = end
        if batch.info != info:
            return f"batch {info.sequence} of validator {info.author} does not match its proof"
        batches.append(batch)
    return batches


def payload_error(txs: Sequence[bytes], proofs: Sequence[BatchProof]) -> str | None:
    """Why a block with these proofs may not carry these transactions, or None: a lean block
    carries none, a full one exactly its batches' transactions."""
    if not proofs:
        return None
    if not txs:
        return None
    split = split_payload(txs, proofs)
    return split if isinstance(split, str) else None
