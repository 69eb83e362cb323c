"""The protocol's messages and certificates as frozen, slotted dataclasses.

Owns: the shape of every value that crosses the network or the safety store.
May not: encode or decode (that is `bft.core.wire`; a block's id comes from `bft.core.ids`), verify
signatures (that is `bft.core.certs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bft.core.batches import Batch, BatchAck, BatchProof, BatchProofs, BatchRequest, BatchResponse
from bft.core.ids import block_id_of
from bft.core.types import GENESIS_APP_HASH, BlockId, ValidatorIndex, View


@dataclass(frozen=True, slots=True)
class QuorumCert:
    """2f+1 votes for `block_id` in `view`: (signer, signature) pairs sorted by signer.

    The genesis QC (view 0, no signatures) certifies the genesis block by definition.
    """

    view: View
    block_id: BlockId
    signatures: tuple[tuple[ValidatorIndex, bytes], ...]


@dataclass(frozen=True, slots=True)
class TimeoutCert:
    """2f+1 timeouts for `view`: (signer, signer's high-QC view, signature) sorted by signer.

    `high_qc` is the highest QC among the signers'; its view equals the largest signed high-QC view.
    """

    view: View
    high_qc: QuorumCert
    signatures: tuple[tuple[ValidatorIndex, View, bytes], ...]


@dataclass(frozen=True, slots=True)
class Block:
    """A block of the tree. Its parent is always the block its QC certifies.

    `app_hash` is the application's state hash after executing the committed blocks up to
    `app_height` (< `height`), as the proposer had executed them: each block commits to the state
    of an earlier height, so replicas that executed it check they agree before voting.
    `id` is the SHA-256 of the block's canonical encoding, computed on construction.
    `batches` are its proofs of availability under the quorum store (`bft.core.batches`): then
    `txs` is empty as proposed, or exactly its batches' transactions once filled in (the id
    leaves them out). `failed_leaders` are in the id: a block certifies whom its chain blames.
    """

    view: View
    height: int
    parent_id: BlockId
    proposer: ValidatorIndex
    qc: QuorumCert
    txs: tuple[bytes, ...]
    app_height: int = 0
    app_hash: bytes = GENESIS_APP_HASH
    batches: tuple[BatchProof, ...] = ()
    # Under leader reputation (`bft.core.reputation`): the leaders of the views between the
    # parent's and this one, which produced no block of this chain (distinct, ascending).
    failed_leaders: tuple[ValidatorIndex, ...] = ()
    id: BlockId = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", block_id_of(self))


@dataclass(frozen=True, slots=True)
class Proposal:
    """The leader's block for its view, signed; carries the TC when the previous view timed out."""

    block: Block
    tc: TimeoutCert | None
    signature: bytes

    @property
    def author(self) -> ValidatorIndex:
        return self.block.proposer

    @property
    def view(self) -> View:
        return self.block.view


@dataclass(frozen=True, slots=True)
class Vote:
    """A validator's signed vote for `block_id` in `view`, sent to the leader of `view + 1`."""

    view: View
    block_id: BlockId
    author: ValidatorIndex
    signature: bytes


@dataclass(frozen=True, slots=True)
class Timeout:
    """A validator's signed statement that `view` timed out, with its high QC."""

    view: View
    high_qc: QuorumCert
    author: ValidatorIndex
    signature: bytes


@dataclass(frozen=True, slots=True)
class SyncInfo:
    """The sender's highest certificates, sent to a peer that is behind."""

    high_qc: QuorumCert
    high_tc: TimeoutCert | None


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Asks for the block `block_id` and up to `max_blocks - 1` of its ancestors, newest first."""

    block_id: BlockId
    max_blocks: int


@dataclass(frozen=True, slots=True)
class BlockResponse:
    """Blocks answering a BlockRequest, newest first, each the parent of the one before."""

    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Block sync: asks for committed blocks from `start_height` on, at most `max_blocks` of them."""

    start_height: int
    max_blocks: int


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """Committed blocks answering a SyncRequest, oldest first, heights consecutive from the
    requested start, each the parent of the next; `qc` certifies the last one (None if no blocks).

    One verified QC on top makes the whole run certified: honest voters checked each block's own
    QC for its parent before voting. The three-chains inside the run then commit it."""

    blocks: tuple[Block, ...]
    qc: QuorumCert | None


@dataclass(frozen=True, slots=True)
class RecoveryProbe:
    """Sent by a validator that lost its safety record (`bft.core.recovery`): "what view are you
    in?". `nonce` is fresh for each start, so that only answers made after it count."""

    nonce: bytes


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """The answer to a RecoveryProbe: the sender's current view and highest certificates. Not
    signed: the transport authenticates the sender, and only the prober reads it."""

    nonce: bytes
    view: View
    high_qc: QuorumCert
    high_tc: TimeoutCert | None


Message = (
    Proposal
    | Vote
    | Timeout
    | SyncInfo
    | BlockRequest
    | BlockResponse
    | SyncRequest
    | SyncResponse
    | RecoveryProbe
    | RecoveryReport
    | Batch
    | BatchAck
    | BatchProofs
    | BatchRequest
    | BatchResponse
)


@dataclass(frozen=True, slots=True)
class SafetyState:
    """What the safety rules must never forget, written as one durable record.

    `last_vote` / `last_timeout` are the exact encoded bytes last released, re-sent verbatim if
    asked again for the same view.
    """

    last_voted_view: View
    locked_qc: QuorumCert
    highest_timeout_view: View
    last_vote: bytes | None
    last_timeout: bytes | None

    @property
    def locked_view(self) -> View:
        return self.locked_qc.view
