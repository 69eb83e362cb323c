"""Block ids and certificate digests, from the canonical encodings of blocks and certificates.

Owns: the array layout of a QC, a TC, a block and the quorum store's batch infos and proofs
(which `bft.core.wire` embeds in messages and storage records), and the hashes derived from it:
a block's id, a batch's digest, a certificate's cache key.
May not: import `bft.core.messages` (it computes `Block.id` on construction, so it works on
anything shaped like a block or a certificate), decode, or do I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from bft.core.cbor import dumps
from bft.core.types import BlockId
from crypto.hashing import sha256


class QuorumCertFields(Protocol):
    """What `bft.core.messages.QuorumCert` has."""

    @property
    def view(self) -> int: ...
    @property
    def block_id(self) -> bytes: ...
    @property
    def signatures(self) -> Sequence[tuple[int, bytes]]: ...


class TimeoutCertFields(Protocol):
    """What `bft.core.messages.TimeoutCert` has."""

    @property
    def view(self) -> int: ...
    @property
    def high_qc(self) -> QuorumCertFields: ...
    @property
    def signatures(self) -> Sequence[tuple[int, int, bytes]]: ...


class BatchInfoFields(Protocol):
    """What `bft.core.batches.BatchInfo` has."""

    @property
    def author(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def expiry_height(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def tx_count(self) -> int: ...
    @property
    def size_bytes(self) -> int: ...


class BatchProofFields(Protocol):
    """What `bft.core.batches.BatchProof` has."""

    @property
    def info(self) -> BatchInfoFields: ...
    @property
    def signatures(self) -> Sequence[tuple[int, bytes]]: ...


class BatchFields(Protocol):
    """What `bft.core.batches.Batch` has, its cached digest aside."""

    @property
    def author(self) -> int: ...
    @property
    def sequence(self) -> int: ...
    @property
    def expiry_height(self) -> int: ...
    @property
    def txs(self) -> Sequence[bytes]: ...


class BlockFields(Protocol):
    """What `bft.core.messages.Block` has, its cached id aside."""

    @property
    def view(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def parent_id(self) -> bytes: ...
    @property
    def proposer(self) -> int: ...
    @property
    def qc(self) -> QuorumCertFields: ...
    @property
    def txs(self) -> Sequence[bytes]: ...
    @property
    def app_height(self) -> int: ...
    @property
    def app_hash(self) -> bytes: ...
    @property
    def batches(self) -> Sequence[BatchProofFields]: ...
    @property
    def failed_leaders(self) -> Sequence[int]: ...


def qc_array(qc: QuorumCertFields) -> list[Any]:
    return [qc.view, qc.block_id, [[signer, sig] for signer, sig in qc.signatures]]


def tc_array(tc: TimeoutCertFields) -> list[Any]:
    sigs = [[signer, hqv, sig] for signer, hqv, sig in tc.signatures]
    return [tc.view, qc_array(tc.high_qc), sigs]


def batch_info_array(info: BatchInfoFields) -> list[Any]:
    return [info.author, info.sequence, info.expiry_height, info.digest, info.tx_count, info.size_bytes]


def batch_proof_array(proof: BatchProofFields) -> list[Any]:
    return [batch_info_array(proof.info), [[signer, sig] for signer, sig in proof.signatures]]


def block_array(block: BlockFields, with_txs: bool = True) -> list[Any]:
    """The block's layout: eight fields, a ninth, its proofs of availability, when it has some or
    when a tenth follows, and the tenth, its failed leaders, only when it has some (so a block
    without either encodes, and hashes, as before the quorum store and leader reputation)."""
    fields = [
        block.view,
        block.height,
        block.parent_id,
        block.proposer,
        qc_array(block.qc),
        list(block.txs) if with_txs else [],
        block.app_height,
        block.app_hash,
    ]
    if block.batches or block.failed_leaders:
        fields.append([batch_proof_array(p) for p in block.batches])
    if block.failed_leaders:
        fields.append(list(block.failed_leaders))
    return fields


def block_id_of(block: BlockFields) -> BlockId:
    """SHA-256 of the canonical encoding of the block's fields (never of its cached `id`). A
    block with proofs of availability is hashed without its transactions: its proofs' digests
    bind them, and the lean block (as proposed) and the full one (as committed) are one block."""
    return BlockId(sha256(dumps(block_array(block, with_txs=not block.batches))))


def batch_digest_of(batch: BatchFields) -> bytes:
    """SHA-256 of the batch's canonical encoding (never of its cached `digest`): its author,
    number, expiry and transactions. The leading string keeps it apart from any block id."""
    return sha256(dumps(["batch", batch.author, batch.sequence, batch.expiry_height, list(batch.txs)]))


# A QC's second element is a byte string and a TC's an array, so the two digests never collide.
def qc_digest(qc: QuorumCertFields) -> bytes:
    """SHA-256 of the QC's canonical encoding: the verified-certificate cache key."""
    return sha256(dumps(qc_array(qc)))


def tc_digest(tc: TimeoutCertFields) -> bytes:
    """SHA-256 of the TC's canonical encoding: the verified-certificate cache key."""
    return sha256(dumps(tc_array(tc)))


def batch_proof_digest(proof: BatchProofFields) -> bytes:
    """SHA-256 of a proof of availability's canonical encoding: its verified-cache key (its
    first element is an array, where a QC's is a view and a TC's a view, so none collide)."""
    return sha256(dumps(batch_proof_array(proof)))
