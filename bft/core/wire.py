"""The wire format: the canonical encoding and strict decoding of messages and safety state.

Owns: the byte layout of every message (one table of message types, `MESSAGE_CODECS`, used both
to encode and to decode), of the durable safety-state record and of the signing payloads; the
encoded-size bounds; the checks of untrusted fields (ranges, lengths, counts).
May not: touch cbor2 (`bft.core.cbor` does), verify signatures or certificates (sorted/unique
signers, quorum sizes and validator membership are checked by certificate verification), do
I/O, or import os, time, random, socket, trio or logging.

Layout: arrays only (no maps, tags, floats or booleans; `null` marks an absent value), encoded
with cbor2's canonical mode. Every message is an array whose first element is its type tag;
blocks, certificates and the quorum store's batch infos and proofs are laid out by
`bft.core.ids`, which derives block ids and digests from them. A block without proofs of
availability has eight fields, one with proofs a ninth, their non-empty list (so that blocks
from before the quorum store keep their encoding and their id, and no block has two encodings).

`encode` trusts its input (values built by this node); `decode` trusts nothing: whatever the
bytes, it returns a message or raises a `DecodeError` subclass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from bft.core import ids
from bft.core.batches import (
    Batch,
    BatchAck,
    BatchInfo,
    BatchProof,
    BatchProofs,
    BatchRequest,
    BatchResponse,
)
from bft.core.cbor import (
    MAX_BATCHES_PER_BLOCK,
    MAX_BLOCKS_PER_RESPONSE,
    MAX_DEPTH,
    MAX_MESSAGE_SIZE_BYTES,
    MAX_SIGNATURES,
    MAX_TX_SIZE_BYTES,
    MAX_TXS_PER_BLOCK,
    array,
    bounded_list,
    byte_string,
    decode_as,
    dumps,
    uint,
    wrong,
)
from bft.core.errors import WrongType
from bft.core.ids import (
    batch_info_array,
    batch_proof_array,
    block_array,
    block_id_of,
    qc_array,
    qc_digest,
    tc_array,
    tc_digest,
)
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    RecoveryProbe,
    RecoveryReport,
    SafetyState,
    SyncInfo,
    SyncRequest,
    SyncResponse,
    Timeout,
    TimeoutCert,
    Vote,
)
from bft.core.types import BLOCK_ID_SIZE_BYTES, MAX_APP_HASH_SIZE_BYTES, BlockId, ValidatorIndex, View

__all__ = [
    "BATCH_DIGEST_SIZE_BYTES",
    "MAX_BATCHES_PER_BLOCK",
    "MAX_BLOCKS_PER_RESPONSE",
    "MAX_DEPTH",
    "MAX_MESSAGE_SIZE_BYTES",
    "MAX_SIGNATURES",
    "MAX_TXS_PER_BLOCK",
    "MAX_TX_SIZE_BYTES",
    "MESSAGE_CODECS",
    "RECOVERY_NONCE_BYTES",
    "SAFETY_STATE_FORMAT_VERSION",
    "SIGNATURE_SIZE_BYTES",
    "TAG_BATCH",
    "TAG_BATCH_ACK",
    "TAG_BATCH_PROOFS",
    "TAG_BATCH_REQUEST",
    "TAG_BATCH_RESPONSE",
    "TAG_BLOCK_REQUEST",
    "TAG_BLOCK_RESPONSE",
    "TAG_PROPOSAL",
    "TAG_RECOVERY_PROBE",
    "TAG_RECOVERY_REPORT",
    "TAG_RESERVED_FOR_NODE",
    "TAG_SYNC_INFO",
    "TAG_SYNC_REQUEST",
    "TAG_SYNC_RESPONSE",
    "TAG_TIMEOUT",
    "TAG_VOTE",
    "MessageCodec",
    "batch_ack_signing_payload",
    "batch_proof_digest",
    "batch_proof_size_bound",
    "batch_response_budget_bytes",
    "batch_size_bound",
    "block_id_of",
    "block_size_bound",
    "certificate_digest",
    "check_batch_limits",
    "check_block_limits",
    "decode",
    "decode_block",
    "decode_qc",
    "decode_safety_state",
    "decode_tc",
    "encode",
    "encode_block",
    "encode_qc",
    "encode_safety_state",
    "encode_tc",
    "max_batch_size_bound",
    "max_block_size_bound",
    "proposal_signing_payload",
    "qc_size_bound",
    "response_budget_bytes",
    "timeout_signing_payload",
    "vote_signing_payload",
]

_M = TypeVar("_M", bound=Message)

SIGNATURE_SIZE_BYTES: Final = 64
# A batch's digest (`bft.core.ids.batch_digest_of`): SHA-256, like a block id.
BATCH_DIGEST_SIZE_BYTES: Final = BLOCK_ID_SIZE_BYTES
# Views, heights and counts fit a signed 64-bit integer everywhere they are stored.
_MAX_UINT: Final = 2**63
_MAX_VALIDATOR_INDEX: Final = 2**16

TAG_PROPOSAL: Final = 1
TAG_VOTE: Final = 2
TAG_TIMEOUT: Final = 3
TAG_SYNC_INFO: Final = 4
TAG_BLOCK_REQUEST: Final = 5
TAG_BLOCK_RESPONSE: Final = 6
# Tag 7 is mempool gossip, which the node owns (`bft.node.gossip`); no core message may take it.
TAG_RESERVED_FOR_NODE: Final = 7
TAG_SYNC_REQUEST: Final = 8
TAG_SYNC_RESPONSE: Final = 9
TAG_RECOVERY_PROBE: Final = 10
TAG_RECOVERY_REPORT: Final = 11
# The quorum store (`bft.core.batches`).
TAG_BATCH: Final = 12
TAG_BATCH_ACK: Final = 13
TAG_BATCH_PROOFS: Final = 14
TAG_BATCH_REQUEST: Final = 15
TAG_BATCH_RESPONSE: Final = 16
# A recovery probe's nonce: fresh random bytes per start of a validator that lost its record.
RECOVERY_NONCE_BYTES: Final = 16

SAFETY_STATE_FORMAT_VERSION: Final = 1


def certificate_digest(cert: QuorumCert | TimeoutCert) -> bytes:
    """SHA-256 of the certificate's canonical encoding: the verified-certificate cache key.

    A QC's second element is a byte string and a TC's an array, so the two kinds never collide.
    """
    return qc_digest(cert) if isinstance(cert, QuorumCert) else tc_digest(cert)


def encode_safety_state(s: SafetyState) -> bytes:
    """The canonical encoding of the durable safety-state record."""
    return dumps(
        [
            SAFETY_STATE_FORMAT_VERSION,
            s.last_voted_view,
            qc_array(s.locked_qc),
            s.highest_timeout_view,
            s.last_vote,
            s.last_timeout,
        ]
    )


# ---------------------------------------------------------------------------------------------
# Encoded-size bounds: budgets where responses are produced, and the check at config load that
# the largest block a proposal or response can carry fits a message.

_UINT_BYTES: Final = 9  # the widest CBOR head: a uint, or the length of a byte string or array
_ID_BYTES: Final = 2 + BLOCK_ID_SIZE_BYTES
_SIG_BYTES: Final = 2 + SIGNATURE_SIZE_BYTES
_QC_FIXED_BYTES: Final = 1 + _UINT_BYTES + _ID_BYTES + _UINT_BYTES
_QC_PER_SIGNER_BYTES: Final = 1 + _UINT_BYTES + _SIG_BYTES
_TC_PER_SIGNER_BYTES: Final = 1 + 2 * _UINT_BYTES + _SIG_BYTES
_BLOCK_FIXED_BYTES: Final = (
    1 + 4 * _UINT_BYTES + _ID_BYTES + _UINT_BYTES + _UINT_BYTES + 2 + MAX_APP_HASH_SIZE_BYTES
)
# A message's array head, its tag and the head of its block (or batch) list.
_MESSAGE_FIXED_BYTES: Final = 3 * _UINT_BYTES
# A batch info: its array head, five uints and its digest.
_BATCH_INFO_BYTES: Final = 1 + 5 * _UINT_BYTES + 2 + BATCH_DIGEST_SIZE_BYTES
# A proof: its array head, its info and the head of its signature list.
_BATCH_PROOF_FIXED_BYTES: Final = 1 + _BATCH_INFO_BYTES + _UINT_BYTES
# A Batch message: its array head, tag, author, sequence, expiry and the head of its tx list.
_BATCH_FIXED_BYTES: Final = 1 + 5 * _UINT_BYTES


def qc_size_bound(signers: int) -> int:
    """At least the encoded size of a QC with `signers` signatures."""
    return _QC_FIXED_BYTES + signers * _QC_PER_SIGNER_BYTES


def batch_proof_size_bound(signers: int) -> int:
    """At least the encoded size of a proof of availability with `signers` signatures."""
    return _BATCH_PROOF_FIXED_BYTES + signers * _QC_PER_SIGNER_BYTES


def _txs_size_bound(tx_bytes: int, txs: int) -> int:
    return tx_bytes + _UINT_BYTES * txs


def _proofs_size_bound(proofs: int, signatures: int) -> int:
    """The ninth field of a block: `proofs` proofs with `signatures` signatures in all."""
    if proofs == 0:
        return 0
    return _UINT_BYTES + proofs * _BATCH_PROOF_FIXED_BYTES + signatures * _QC_PER_SIGNER_BYTES


def _failed_size_bound(failed: int) -> int:
    """The tenth field of a block (and the ninth's empty list before it): `failed` indices."""
    return 0 if failed == 0 else 2 * _UINT_BYTES + failed * _UINT_BYTES


def block_size_bound(block: Block) -> int:
    """At least the encoded size of `block` (with its transactions, as stored and served, its
    proofs and its failed leaders), without encoding it."""
    txs = _txs_size_bound(sum(len(tx) for tx in block.txs), len(block.txs))
    signatures = sum(len(p.signatures) for p in block.batches)
    proofs = _proofs_size_bound(len(block.batches), signatures)
    failed = _failed_size_bound(len(block.failed_leaders))
    return _BLOCK_FIXED_BYTES + qc_size_bound(len(block.qc.signatures)) + txs + proofs + failed


def max_block_size_bound(
    max_block_bytes: int, max_block_txs: int, validators: int, max_block_batches: int = 0
) -> int:
    """At least the encoded size of any block within these limits: up to `max_block_txs`
    transactions of `max_block_bytes` in all and up to `max_block_batches` proofs, each signed
    by up to all `validators` (a full block under the quorum store has both)."""
    txs = _txs_size_bound(max_block_bytes, max_block_txs)
    proofs = _proofs_size_bound(max_block_batches, max_block_batches * validators)
    failed = _failed_size_bound(validators)
    return _BLOCK_FIXED_BYTES + qc_size_bound(validators) + txs + proofs + failed


def batch_size_bound(batch: Batch) -> int:
    """At least the encoded size of `batch` as a Batch message (so also of its array inside a
    BatchResponse, which has no tag), without encoding it."""
    return _BATCH_FIXED_BYTES + _txs_size_bound(batch.size_bytes, len(batch.txs))


def max_batch_size_bound(max_batch_bytes: int, max_batch_txs: int) -> int:
    """At least the encoded size of any batch within these limits, as `batch_size_bound`."""
    return _BATCH_FIXED_BYTES + _txs_size_bound(max_batch_bytes, max_batch_txs)


def batch_response_budget_bytes(max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> int:
    """How many bytes of batches (by `batch_size_bound`) a BatchResponse may carry so that it
    stays within `max_size_bytes`."""
    return max_size_bytes - _MESSAGE_FIXED_BYTES


def response_budget_bytes(validators: int, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> int:
    """How many bytes of blocks (by `block_size_bound`) a BlockResponse or SyncResponse may carry
    so that, with its QC, it stays within `max_size_bytes`."""
    return max_size_bytes - _MESSAGE_FIXED_BYTES - qc_size_bound(validators)


def check_block_limits(
    max_block_bytes: int,
    max_block_txs: int,
    validators: int,
    max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES,
    max_block_batches: int = 0,
) -> str | None:
    """Why blocks within these limits (with up to `max_block_batches` proofs of availability)
    may not fit a message (a proposal with its TC, or a response), or None. Every response
    carries at least one block, so this must hold."""
    if max_block_txs > MAX_TXS_PER_BLOCK:
        return f"max_block_txs {max_block_txs} exceeds the wire limit of {MAX_TXS_PER_BLOCK}"
    if not 0 <= max_block_batches <= MAX_BATCHES_PER_BLOCK:
        return (
            f"max_block_batches {max_block_batches} is outside the wire limits [0, {MAX_BATCHES_PER_BLOCK}]"
        )
    block = max_block_size_bound(max_block_bytes, max_block_txs, validators, max_block_batches)
    tc = _QC_FIXED_BYTES + qc_size_bound(validators) + validators * _TC_PER_SIGNER_BYTES
    largest = block + max(tc + _SIG_BYTES, qc_size_bound(validators)) + _MESSAGE_FIXED_BYTES
    if largest > max_size_bytes:
        proofs = f" and {max_block_batches} proofs" if max_block_batches else ""
        return (
            f"a block of {max_block_bytes} bytes in up to {max_block_txs} transactions{proofs} encodes "
            f"to up to {largest} bytes with its certificates, above the message limit of {max_size_bytes}"
        )
    return None


def check_batch_limits(
    max_batch_bytes: int, max_batch_txs: int, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES
) -> str | None:
    """Why batches within these limits may not be made, sent or served (a Batch message, or a
    BatchResponse carrying one), or None."""
    if not 1 <= max_batch_txs <= MAX_TXS_PER_BLOCK:
        return f"max_batch_txs {max_batch_txs} is outside the wire limits [1, {MAX_TXS_PER_BLOCK}]"
    if max_batch_bytes < 1:
        return f"max_batch_bytes {max_batch_bytes} leaves no room for a transaction"
    largest = max_batch_size_bound(max_batch_bytes, max_batch_txs)
    if largest > batch_response_budget_bytes(max_size_bytes):
        return (
            f"a batch of {max_batch_bytes} bytes in up to {max_batch_txs} transactions encodes to up to "
            f"{largest} bytes, above what a message of {max_size_bytes} bytes can carry"
        )
    return None


# The three payloads differ in shape ([uint, bytes], [uint, uint], [bytes]), so they stay distinct
# even before the crypto layer prefixes its per-kind domain separator.
def vote_signing_payload(view: View, block_id: BlockId) -> bytes:
    """The bytes a validator signs to vote for `block_id` in `view`."""
    return dumps([view, block_id])


def timeout_signing_payload(view: View, high_qc_view: View) -> bytes:
    """The bytes a validator signs to time out `view` with its high QC at `high_qc_view`."""
    return dumps([view, high_qc_view])


def proposal_signing_payload(block_id: BlockId) -> bytes:
    """The bytes a leader signs to propose `block_id`."""
    return dumps([block_id])


def batch_ack_signing_payload(info: BatchInfo) -> bytes:
    """The bytes a validator signs to acknowledge that it stored the batch `info` describes."""
    return dumps(batch_info_array(info))


def batch_proof_digest(proof: BatchProof) -> bytes:
    """A proof of availability's verified-cache key (`bft.core.ids.batch_proof_digest`)."""
    return ids.batch_proof_digest(proof)


# ---------------------------------------------------------------------------------------------
# Checks of protocol-typed fields


def _view(obj: object, what: str) -> View:
    return View(uint(obj, _MAX_UINT, what))


def _index(obj: object, what: str) -> ValidatorIndex:
    return ValidatorIndex(uint(obj, _MAX_VALIDATOR_INDEX, what))


def _block_id(obj: object, what: str) -> BlockId:
    return BlockId(byte_string(obj, what, exact=BLOCK_ID_SIZE_BYTES))


def _signature(obj: object, what: str) -> bytes:
    return byte_string(obj, what, exact=SIGNATURE_SIZE_BYTES)


def _request_count(obj: object, what: str) -> int:
    return _positive(obj, MAX_BLOCKS_PER_RESPONSE + 1, what)


def _positive(obj: object, bound: int, what: str) -> int:
    """`obj` as an integer in [1, bound)."""
    value = uint(obj, bound, what)
    if value < 1:
        raise WrongType(f"{what}: must be at least 1")
    return value


def _digest(obj: object, what: str) -> bytes:
    return byte_string(obj, what, exact=BATCH_DIGEST_SIZE_BYTES)


def _txs(obj: object, what: str) -> tuple[bytes, ...]:
    tx_list = bounded_list(obj, MAX_TXS_PER_BLOCK, what)
    return tuple(byte_string(tx, "transaction", max_len=MAX_TX_SIZE_BYTES) for tx in tx_list)


def _to_qc(obj: object) -> QuorumCert:
    view, block_id, sigs = array(obj, 3, "QC")
    pairs = []
    for entry in bounded_list(sigs, MAX_SIGNATURES, "QC signatures"):
        signer, sig = array(entry, 2, "QC signature")
        pairs.append((_index(signer, "QC signer"), _signature(sig, "QC signature")))
    return QuorumCert(
        view=_view(view, "QC view"),
        block_id=_block_id(block_id, "QC block id"),
        signatures=tuple(pairs),
    )


def _to_tc(obj: object) -> TimeoutCert:
    view, high_qc, sigs = array(obj, 3, "TC")
    triples = []
    for entry in bounded_list(sigs, MAX_SIGNATURES, "TC signatures"):
        signer, hqv, sig = array(entry, 3, "TC signature")
        triples.append(
            (
                _index(signer, "TC signer"),
                _view(hqv, "TC signer's high-QC view"),
                _signature(sig, "TC signature"),
            )
        )
    return TimeoutCert(view=_view(view, "TC view"), high_qc=_to_qc(high_qc), signatures=tuple(triples))


def _to_batch_info(obj: object) -> BatchInfo:
    author, sequence, expiry_height, digest, tx_count, size_bytes = array(obj, 6, "batch info")
    return BatchInfo(
        author=_index(author, "batch info author"),
        sequence=_positive(sequence, _MAX_UINT, "batch info sequence"),
        expiry_height=uint(expiry_height, _MAX_UINT, "batch info expiry height"),
        digest=_digest(digest, "batch info digest"),
        # A batch message carries at most MAX_TXS_PER_BLOCK transactions, so no batch has more.
        tx_count=_positive(tx_count, MAX_TXS_PER_BLOCK + 1, "batch info tx count"),
        size_bytes=uint(size_bytes, _MAX_UINT, "batch info size"),
    )


def _to_batch_proof(obj: object) -> BatchProof:
    info, sigs = array(obj, 2, "batch proof")
    pairs = []
    for entry in bounded_list(sigs, MAX_SIGNATURES, "batch proof signatures"):
        signer, sig = array(entry, 2, "batch proof signature")
        pairs.append((_index(signer, "batch proof signer"), _signature(sig, "batch proof signature")))
    return BatchProof(info=_to_batch_info(info), signatures=tuple(pairs))


def _to_batch_proofs(obj: object, what: str) -> tuple[BatchProof, ...]:
    return tuple(_to_batch_proof(p) for p in bounded_list(obj, MAX_BATCHES_PER_BLOCK, what))


def _to_block(obj: object) -> Block:
    if not isinstance(obj, list):
        wrong("block", obj)
    failed: tuple[ValidatorIndex, ...] = ()
    if len(obj) == 10:
        # The tenth field exists only when the block has failed leaders, distinct and ascending:
        # each block has one encoding.
        fields, proofs = obj[:8], _to_batch_proofs(obj[8], "block proofs")
        entries = bounded_list(obj[9], MAX_SIGNATURES, "block failed leaders")
        failed = tuple(_index(v, "block failed leader") for v in entries)
        if not failed or any(a >= b for a, b in itertools.pairwise(failed)):
            raise WrongType("block failed leaders: a non-empty, strictly ascending list")
    elif len(obj) == 9:
        # The ninth field exists only when the block has proofs (or failed leaders after it): an
        # empty list would be a second encoding of the block without it.
        fields, proofs = obj[:8], _to_batch_proofs(obj[8], "block proofs")
        if not proofs:
            raise WrongType("block proofs: an empty list is encoded by leaving the field out")
    elif len(obj) == 8:
        fields, proofs = obj, ()
    else:
        raise WrongType(f"block: expected 8 to 10 elements, got {len(obj)}")
    view, height, parent_id, proposer, qc, txs, app_height, app_hash = fields
    return Block(
        view=_view(view, "block view"),
        height=uint(height, _MAX_UINT, "block height"),
        parent_id=_block_id(parent_id, "block parent id"),
        proposer=_index(proposer, "block proposer"),
        qc=_to_qc(qc),
        txs=_txs(txs, "block txs"),
        app_height=uint(app_height, _MAX_UINT, "block app height"),
        app_hash=byte_string(app_hash, "block app hash", max_len=MAX_APP_HASH_SIZE_BYTES),
        batches=proofs,
        failed_leaders=failed,
    )


def _to_blocks(obj: object, what: str) -> tuple[Block, ...]:
    return tuple(_to_block(b) for b in bounded_list(obj, MAX_BLOCKS_PER_RESPONSE, what))


def _optional_qc_array(qc: QuorumCert | None) -> list[Any] | None:
    return None if qc is None else qc_array(qc)


def _optional_tc_array(tc: TimeoutCert | None) -> list[Any] | None:
    return None if tc is None else tc_array(tc)


def _to_optional_qc(obj: object) -> QuorumCert | None:
    return None if obj is None else _to_qc(obj)


def _to_optional_tc(obj: object) -> TimeoutCert | None:
    return None if obj is None else _to_tc(obj)


# ---------------------------------------------------------------------------------------------
# The message table: each message's fields after its tag, both ways


def _proposal_fields(m: Proposal) -> list[Any]:
    return [block_array(m.block), _optional_tc_array(m.tc), m.signature]


def _to_proposal(f: list[Any]) -> Proposal:
    block, tc, sig = f
    return Proposal(
        block=_to_block(block), tc=_to_optional_tc(tc), signature=_signature(sig, "Proposal signature")
    )


def _vote_fields(m: Vote) -> list[Any]:
    return [m.view, m.block_id, m.author, m.signature]


def _to_vote(f: list[Any]) -> Vote:
    view, block_id, author, sig = f
    return Vote(
        view=_view(view, "Vote view"),
        block_id=_block_id(block_id, "Vote block id"),
        author=_index(author, "Vote author"),
        signature=_signature(sig, "Vote signature"),
    )


def _timeout_fields(m: Timeout) -> list[Any]:
    return [m.view, qc_array(m.high_qc), m.author, m.signature]


def _to_timeout(f: list[Any]) -> Timeout:
    view, high_qc, author, sig = f
    return Timeout(
        view=_view(view, "Timeout view"),
        high_qc=_to_qc(high_qc),
        author=_index(author, "Timeout author"),
        signature=_signature(sig, "Timeout signature"),
    )


def _sync_info_fields(m: SyncInfo) -> list[Any]:
    return [qc_array(m.high_qc), _optional_tc_array(m.high_tc)]


def _to_sync_info(f: list[Any]) -> SyncInfo:
    high_qc, high_tc = f
    return SyncInfo(high_qc=_to_qc(high_qc), high_tc=_to_optional_tc(high_tc))


def _block_request_fields(m: BlockRequest) -> list[Any]:
    return [m.block_id, m.max_blocks]


def _to_block_request(f: list[Any]) -> BlockRequest:
    block_id, max_blocks = f
    count = _request_count(max_blocks, "BlockRequest max_blocks")
    return BlockRequest(block_id=_block_id(block_id, "BlockRequest block id"), max_blocks=count)


def _block_response_fields(m: BlockResponse) -> list[Any]:
    return [[block_array(b) for b in m.blocks]]


def _to_block_response(f: list[Any]) -> BlockResponse:
    (blocks,) = f
    return BlockResponse(blocks=_to_blocks(blocks, "BlockResponse blocks"))


def _sync_request_fields(m: SyncRequest) -> list[Any]:
    return [m.start_height, m.max_blocks]


def _to_sync_request(f: list[Any]) -> SyncRequest:
    start, max_blocks = f
    count = _request_count(max_blocks, "SyncRequest max_blocks")
    return SyncRequest(start_height=uint(start, _MAX_UINT, "SyncRequest start height"), max_blocks=count)


def _sync_response_fields(m: SyncResponse) -> list[Any]:
    return [[block_array(b) for b in m.blocks], _optional_qc_array(m.qc)]


def _to_sync_response(f: list[Any]) -> SyncResponse:
    blocks, qc = f
    return SyncResponse(blocks=_to_blocks(blocks, "SyncResponse blocks"), qc=_to_optional_qc(qc))


def _nonce(obj: object, what: str) -> bytes:
    return byte_string(obj, what, exact=RECOVERY_NONCE_BYTES)


def _recovery_probe_fields(m: RecoveryProbe) -> list[Any]:
    return [m.nonce]


def _to_recovery_probe(f: list[Any]) -> RecoveryProbe:
    (nonce,) = f
    return RecoveryProbe(nonce=_nonce(nonce, "RecoveryProbe nonce"))


def _recovery_report_fields(m: RecoveryReport) -> list[Any]:
    return [m.nonce, m.view, qc_array(m.high_qc), _optional_tc_array(m.high_tc)]


def _to_recovery_report(f: list[Any]) -> RecoveryReport:
    nonce, view, high_qc, high_tc = f
    return RecoveryReport(
        nonce=_nonce(nonce, "RecoveryReport nonce"),
        view=_view(view, "RecoveryReport view"),
        high_qc=_to_qc(high_qc),
        high_tc=_to_optional_tc(high_tc),
    )


def _batch_fields(m: Batch) -> list[Any]:
    return [m.author, m.sequence, m.expiry_height, list(m.txs)]


def _to_batch(f: list[Any]) -> Batch:
    author, sequence, expiry_height, txs = f
    tx_tuple = _txs(txs, "Batch txs")
    if not tx_tuple:
        raise WrongType("Batch txs: a batch has at least one transaction")
    # The digest is computed by the constructor, never read from the wire.
    return Batch(
        author=_index(author, "Batch author"),
        sequence=_positive(sequence, _MAX_UINT, "Batch sequence"),
        expiry_height=uint(expiry_height, _MAX_UINT, "Batch expiry height"),
        txs=tx_tuple,
    )


def _batch_ack_fields(m: BatchAck) -> list[Any]:
    return [batch_info_array(m.info), m.author, m.signature]


def _to_batch_ack(f: list[Any]) -> BatchAck:
    info, author, sig = f
    return BatchAck(
        info=_to_batch_info(info),
        author=_index(author, "BatchAck author"),
        signature=_signature(sig, "BatchAck signature"),
    )


def _batch_proofs_fields(m: BatchProofs) -> list[Any]:
    return [[batch_proof_array(p) for p in m.proofs]]


def _to_batch_proofs_message(f: list[Any]) -> BatchProofs:
    (proofs,) = f
    return BatchProofs(proofs=_to_batch_proofs(proofs, "BatchProofs proofs"))


def _batch_request_fields(m: BatchRequest) -> list[Any]:
    return [m.height, list(m.digests)]


def _to_batch_request(f: list[Any]) -> BatchRequest:
    height, digests = f
    digest_list = bounded_list(digests, MAX_BATCHES_PER_BLOCK, "BatchRequest digests")
    if not digest_list:
        raise WrongType("BatchRequest digests: a request asks for at least one batch")
    return BatchRequest(
        height=uint(height, _MAX_UINT, "BatchRequest height"),
        digests=tuple(_digest(d, "BatchRequest digest") for d in digest_list),
    )


def _batch_response_fields(m: BatchResponse) -> list[Any]:
    return [[_batch_fields(b) for b in m.batches]]


def _to_batch_response(f: list[Any]) -> BatchResponse:
    (batches,) = f
    items = bounded_list(batches, MAX_BATCHES_PER_BLOCK, "BatchResponse batches")
    return BatchResponse(batches=tuple(_to_batch(array(b, 4, "Batch")) for b in items))


@dataclass(frozen=True, slots=True)
class MessageCodec(Generic[_M]):
    """One message type: its tag, its class, and its fields after the tag (`arity` of them) to
    and from their array form. `from_fields` gets exactly `arity` elements and checks each."""

    tag: int
    cls: type[_M]
    arity: int
    to_fields: Callable[[_M], list[Any]]
    from_fields: Callable[[list[Any]], _M]


MESSAGE_CODECS: Final[tuple[MessageCodec[Any], ...]] = (
    MessageCodec(TAG_PROPOSAL, Proposal, 3, _proposal_fields, _to_proposal),
    MessageCodec(TAG_VOTE, Vote, 4, _vote_fields, _to_vote),
    MessageCodec(TAG_TIMEOUT, Timeout, 4, _timeout_fields, _to_timeout),
    MessageCodec(TAG_SYNC_INFO, SyncInfo, 2, _sync_info_fields, _to_sync_info),
    MessageCodec(TAG_BLOCK_REQUEST, BlockRequest, 2, _block_request_fields, _to_block_request),
    MessageCodec(TAG_BLOCK_RESPONSE, BlockResponse, 1, _block_response_fields, _to_block_response),
    MessageCodec(TAG_SYNC_REQUEST, SyncRequest, 2, _sync_request_fields, _to_sync_request),
    MessageCodec(TAG_SYNC_RESPONSE, SyncResponse, 2, _sync_response_fields, _to_sync_response),
    MessageCodec(TAG_RECOVERY_PROBE, RecoveryProbe, 1, _recovery_probe_fields, _to_recovery_probe),
    MessageCodec(TAG_RECOVERY_REPORT, RecoveryReport, 4, _recovery_report_fields, _to_recovery_report),
    MessageCodec(TAG_BATCH, Batch, 4, _batch_fields, _to_batch),
    MessageCodec(TAG_BATCH_ACK, BatchAck, 3, _batch_ack_fields, _to_batch_ack),
    MessageCodec(TAG_BATCH_PROOFS, BatchProofs, 1, _batch_proofs_fields, _to_batch_proofs_message),
    MessageCodec(TAG_BATCH_REQUEST, BatchRequest, 2, _batch_request_fields, _to_batch_request),
    MessageCodec(TAG_BATCH_RESPONSE, BatchResponse, 1, _batch_response_fields, _to_batch_response),
)
_BY_CLASS: Final[Mapping[type, MessageCodec[Any]]] = {c.cls: c for c in MESSAGE_CODECS}
_BY_TAG: Final[Mapping[int, MessageCodec[Any]]] = {c.tag: c for c in MESSAGE_CODECS}
assert len(_BY_CLASS) == len(_BY_TAG) == len(MESSAGE_CODECS), "message tags and classes must be distinct"
assert TAG_RESERVED_FOR_NODE not in _BY_TAG


def encode(msg: Message) -> bytes:
    """The canonical encoding of `msg`."""
    codec = _BY_CLASS.get(type(msg))
    if codec is None:
        raise TypeError(f"not a message: {type(msg).__name__}")
    return dumps([codec.tag, *codec.to_fields(msg)])


def _to_message(obj: object) -> Message:
    if not isinstance(obj, list) or not obj:
        wrong("message", obj)
    tag = uint(obj[0], _MAX_UINT, "message type")
    codec = _BY_TAG.get(tag)
    if codec is None:
        raise WrongType(f"unknown message type {tag}")
    message: Message = codec.from_fields(array(obj, 1 + codec.arity, codec.cls.__name__)[1:])
    return message


def _to_safety_state(obj: object) -> SafetyState:
    if not isinstance(obj, list) or not obj:
        wrong("safety state", obj)
    version = uint(obj[0], _MAX_UINT, "safety state format version")
    if version != SAFETY_STATE_FORMAT_VERSION:
        raise WrongType(f"unknown safety state format version {version}")
    _, last_voted_view, locked_qc, highest_timeout_view, last_vote, last_timeout = array(
        obj, 6, "safety state"
    )
    return SafetyState(
        last_voted_view=_view(last_voted_view, "last voted view"),
        locked_qc=_to_qc(locked_qc),
        highest_timeout_view=_view(highest_timeout_view, "highest timeout view"),
        last_vote=None if last_vote is None else byte_string(last_vote, "last vote"),
        last_timeout=None if last_timeout is None else byte_string(last_timeout, "last timeout"),
    )


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(data: bytes, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> Message:
    """The message `data` canonically encodes; raises a `DecodeError` subclass for anything else."""
    return decode_as(data, _to_message, "message", max_size_bytes)


def decode_safety_state(data: bytes) -> SafetyState:
    """The safety state `data` canonically encodes; raises a `DecodeError` subclass otherwise."""
    return decode_as(data, _to_safety_state, "safety state")


def encode_block(block: Block) -> bytes:
    """A block on its own, for storage (its id is recomputed on decoding)."""
    return dumps(block_array(block))


def decode_block(data: bytes) -> Block:
    return decode_as(data, _to_block, "block")


def encode_qc(qc: QuorumCert) -> bytes:
    return dumps(qc_array(qc))


def decode_qc(data: bytes) -> QuorumCert:
    return decode_as(data, _to_qc, "QC")


def encode_tc(tc: TimeoutCert) -> bytes:
    return dumps(tc_array(tc))


def decode_tc(data: bytes) -> TimeoutCert:
    return decode_as(data, _to_tc, "TC")
