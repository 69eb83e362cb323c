"""Block ids and certificate digests, from the canonical encodings of blocks and certificates.

Owns: the array layout of a QC, a TC and a block (which `bft.core.wire` embeds in messages and
storage records), and the hashes derived from it: a block's id, a certificate's cache key.
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


def qc_array(qc: QuorumCertFields) -> list[Any]:
    return [qc.view, qc.block_id, [[signer, sig] for signer, sig in qc.signatures]]


def tc_array(tc: TimeoutCertFields) -> list[Any]:
    sigs = [[signer, hqv, sig] for signer, hqv, sig in tc.signatures]
    return [tc.view, qc_array(tc.high_qc), sigs]


def block_array(block: BlockFields) -> list[Any]:
    return [
        block.view,
        block.height,
        block.parent_id,
        block.proposer,
        qc_array(block.qc),
        list(block.txs),
        block.app_height,
        block.app_hash,
    ]


def block_id_of(block: BlockFields) -> BlockId:
    """SHA-256 of the canonical encoding of the block's fields (never of its cached `id`)."""
    return BlockId(sha256(dumps(block_array(block))))


# A QC's second element is a byte string and a TC's an array, so the two digests never collide.
def qc_digest(qc: QuorumCertFields) -> bytes:
    """SHA-256 of the QC's canonical encoding: the verified-certificate cache key."""
    return sha256(dumps(qc_array(qc)))


def tc_digest(tc: TimeoutCertFields) -> bytes:
    """SHA-256 of the TC's canonical encoding: the verified-certificate cache key."""
    return sha256(dumps(tc_array(tc)))
