"""The wire format: canonical CBOR encoding and strict decoding of messages and safety state.

Owns: the byte layout of every message, of the durable safety-state record, of the signing
payloads, and the hashes derived from encodings (block ids, certificate digests); the size, depth
and count limits applied to untrusted input. This is the only module that touches cbor2.
May not: verify signatures or certificates (sorted/unique signers, quorum sizes and validator
membership are checked by certificate verification), do I/O, or import os, time, random, socket,
trio or logging.

Layout: arrays only (no maps, tags, floats or booleans; `null` marks an absent value), encoded
with cbor2's canonical mode. Every message is an array whose first element is its type tag.

`encode` trusts its input (values built by this node); `decode` trusts nothing: whatever the
bytes, it returns a message or raises a `DecodeError` subclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import cbor2

from bft.core.errors import (
    DecodeError,
    DuplicateKey,
    NonCanonical,
    TooDeep,
    TooLarge,
    TrailingBytes,
    Truncated,
    WrongType,
)
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SafetyState,
    SyncInfo,
    SyncRequest,
    SyncResponse,
    Timeout,
    TimeoutCert,
    Transactions,
    Vote,
    WireMessage,
)
from bft.core.types import BLOCK_ID_SIZE_BYTES, MAX_APP_HASH_SIZE_BYTES, BlockId, ValidatorIndex, View
from crypto.hashing import sha256

_T = TypeVar("_T")

MAX_MESSAGE_SIZE_BYTES: Final = 4 * 1024 * 1024
# The deepest valid value (a signature pair inside a QC inside a block inside a BlockResponse)
# nests 6 arrays; 8 leaves headroom while bounding the work any input can cause.
MAX_DEPTH: Final = 8
MAX_TXS_PER_BLOCK: Final = 10_000
MAX_SIGNATURES: Final = 1024
MAX_BLOCKS_PER_RESPONSE: Final = 256
MAX_TX_SIZE_BYTES: Final = 1024 * 1024

SIGNATURE_SIZE_BYTES: Final = 64
# Views, heights and counts fit a signed 64-bit integer everywhere they are stored.
_MAX_UINT: Final = 2**63
_MAX_VALIDATOR_INDEX: Final = 2**16

TAG_PROPOSAL: Final = 1
TAG_VOTE: Final = 2
TAG_TIMEOUT: Final = 3
TAG_SYNC_INFO: Final = 4
TAG_BLOCK_REQUEST: Final = 5
TAG_BLOCK_RESPONSE: Final = 6
TAG_TRANSACTIONS: Final = 7
TAG_SYNC_REQUEST: Final = 8
TAG_SYNC_RESPONSE: Final = 9

SAFETY_STATE_FORMAT_VERSION: Final = 1

# CBOR major types and the additional-information values the scanner distinguishes.
_MAJOR_UINT: Final = 0
_MAJOR_NEGINT: Final = 1
_MAJOR_BYTES: Final = 2
_MAJOR_TEXT: Final = 3
_MAJOR_ARRAY: Final = 4
_MAJOR_MAP: Final = 5
_MAJOR_TAG: Final = 6
_MAJOR_SIMPLE: Final = 7
_INFO_INDEFINITE: Final = 31
_SIMPLE_NULL: Final = 22
# The smallest argument each length-prefixed form may carry; anything below fits a shorter form.
# No array of the format is longer than this; rejecting longer ones in the scan refuses the
# cheapest way to make the scan itself expensive (one huge flat array) before any allocation.
_MAX_CONTAINER_LEN: Final = max(MAX_TXS_PER_BLOCK, MAX_SIGNATURES, MAX_BLOCKS_PER_RESPONSE, 8)
_MIN_ARG_FOR_INFO: Final = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
_ARG_WIDTH_FOR_INFO: Final = {24: 1, 25: 2, 26: 4, 27: 8}


# ---------------------------------------------------------------------------------------------
# Encoding


def _qc_obj(qc: QuorumCert) -> list[Any]:
    return [qc.view, qc.block_id, [[signer, sig] for signer, sig in qc.signatures]]


def _tc_obj(tc: TimeoutCert) -> list[Any]:
    sigs = [[signer, hqv, sig] for signer, hqv, sig in tc.signatures]
    return [tc.view, _qc_obj(tc.high_qc), sigs]


def _block_obj(block: Block) -> list[Any]:
    return [
        block.view,
        block.height,
        block.parent_id,
        block.proposer,
        _qc_obj(block.qc),
        list(block.txs),
        block.app_height,
        block.app_hash,
    ]


def _message_obj(msg: WireMessage) -> list[Any]:
    match msg:
        case Proposal():
            tc = None if msg.tc is None else _tc_obj(msg.tc)
            return [TAG_PROPOSAL, _block_obj(msg.block), tc, msg.signature]
        case Vote():
            return [TAG_VOTE, msg.view, msg.block_id, msg.author, msg.signature]
        case Timeout():
            return [TAG_TIMEOUT, msg.view, _qc_obj(msg.high_qc), msg.author, msg.signature]
        case SyncInfo():
            tc = None if msg.high_tc is None else _tc_obj(msg.high_tc)
            return [TAG_SYNC_INFO, _qc_obj(msg.high_qc), tc]
        case BlockRequest():
            return [TAG_BLOCK_REQUEST, msg.block_id, msg.max_blocks]
        case BlockResponse():
            return [TAG_BLOCK_RESPONSE, [_block_obj(b) for b in msg.blocks]]
        case SyncRequest():
            return [TAG_SYNC_REQUEST, msg.start_height, msg.max_blocks]
        case SyncResponse():
            qc = None if msg.qc is None else _qc_obj(msg.qc)
            return [TAG_SYNC_RESPONSE, [_block_obj(b) for b in msg.blocks], qc]
        case Transactions():
            return [TAG_TRANSACTIONS, list(msg.txs)]
    raise TypeError(f"not a message: {type(msg).__name__}")


def _dumps(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def encode(msg: WireMessage) -> bytes:
    """The canonical encoding of `msg`."""
    return _dumps(_message_obj(msg))


def encode_safety_state(s: SafetyState) -> bytes:
    """The canonical encoding of the durable safety-state record."""
    return _dumps(
        [
            SAFETY_STATE_FORMAT_VERSION,
            s.last_voted_view,
            _qc_obj(s.locked_qc),
            s.highest_timeout_view,
            s.last_vote,
            s.last_timeout,
        ]
    )


def block_id_of(block: Block) -> BlockId:
    """SHA-256 of the canonical encoding of the block's fields (never of its cached `id`)."""
    return BlockId(sha256(_dumps(_block_obj(block))))


def certificate_digest(cert: QuorumCert | TimeoutCert) -> bytes:
    """SHA-256 of the certificate's canonical encoding: the verified-certificate cache key.

    A QC's second element is a byte string and a TC's an array, so the two kinds never collide.
    """
    obj = _qc_obj(cert) if isinstance(cert, QuorumCert) else _tc_obj(cert)
    return sha256(_dumps(obj))


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
# A message's array head, its tag and the head of its block list.
_MESSAGE_FIXED_BYTES: Final = 3 * _UINT_BYTES


def qc_size_bound(signers: int) -> int:
    """At least the encoded size of a QC with `signers` signatures."""
    return _QC_FIXED_BYTES + signers * _QC_PER_SIGNER_BYTES


def block_size_bound(block: Block) -> int:
    """At least the encoded size of `block`, without encoding it."""
    txs = sum(len(tx) for tx in block.txs) + _UINT_BYTES * len(block.txs)
    return _BLOCK_FIXED_BYTES + qc_size_bound(len(block.qc.signatures)) + txs


def max_block_size_bound(max_block_bytes: int, max_block_txs: int, validators: int) -> int:
    """At least the encoded size of any block within these limits."""
    txs = max_block_bytes + _UINT_BYTES * max_block_txs
    return _BLOCK_FIXED_BYTES + qc_size_bound(validators) + txs


def response_budget_bytes(validators: int, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> int:
    """How many bytes of blocks (by `block_size_bound`) a BlockResponse or SyncResponse may carry
    so that, with its QC, it stays within `max_size_bytes`."""
    return max_size_bytes - _MESSAGE_FIXED_BYTES - qc_size_bound(validators)


def check_block_limits(
    max_block_bytes: int, max_block_txs: int, validators: int, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES
) -> str | None:
    """Why blocks within these limits may not fit a message (a proposal with its TC, or a
    response), or None. Every response carries at least one block, so this must hold."""
    if max_block_txs > MAX_TXS_PER_BLOCK:
        return f"max_block_txs {max_block_txs} exceeds the wire limit of {MAX_TXS_PER_BLOCK}"
    block = max_block_size_bound(max_block_bytes, max_block_txs, validators)
    tc = _QC_FIXED_BYTES + qc_size_bound(validators) + validators * _TC_PER_SIGNER_BYTES
    largest = block + max(tc + _SIG_BYTES, qc_size_bound(validators)) + _MESSAGE_FIXED_BYTES
    if largest > max_size_bytes:
        return (
            f"a block of {max_block_bytes} bytes in up to {max_block_txs} transactions encodes to up to "
            f"{largest} bytes with its certificates, above the message limit of {max_size_bytes}"
        )
    return None


# The three payloads differ in shape ([uint, bytes], [uint, uint], [bytes]), so they stay distinct
# even before the crypto layer prefixes its per-kind domain separator.
def vote_signing_payload(view: View, block_id: BlockId) -> bytes:
    """The bytes a validator signs to vote for `block_id` in `view`."""
    return _dumps([view, block_id])


def timeout_signing_payload(view: View, high_qc_view: View) -> bytes:
    """The bytes a validator signs to time out `view` with its high QC at `high_qc_view`."""
    return _dumps([view, high_qc_view])


def proposal_signing_payload(block_id: BlockId) -> bytes:
    """The bytes a leader signs to propose `block_id`."""
    return _dumps([block_id])


# ---------------------------------------------------------------------------------------------
# Pre-decode scan


class _Frame:
    """An open array or map in the scan: how many items it still needs."""

    __slots__ = ("key_start", "keys", "remaining")

    def __init__(self, remaining: int, is_map: bool) -> None:
        self.remaining = remaining
        # Raw encodings of the keys seen so far; canonical encodings are minimal, so equal keys
        # have equal bytes once the minimal-encoding check has passed.
        self.keys: set[bytes] | None = set() if is_map else None
        self.key_start = 0


def _scan(data: bytes) -> None:
    """Check that `data` is exactly one CBOR item in the subset this format uses.

    Iterative, so hostile nesting cannot exhaust the Python stack, and every declared length is
    checked against the bytes actually present before cbor2 is allowed to allocate for it.
    """
    n = len(data)
    pos = 0
    stack: list[_Frame] = []
    while True:
        start = pos
        parent = stack[-1] if stack else None
        if parent is not None and parent.keys is not None and parent.remaining % 2 == 0:
            parent.key_start = start
        if pos >= n:
            raise Truncated(f"input ends at byte {pos} where an item should start")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F

        if major == _MAJOR_SIMPLE:
            if info == _SIMPLE_NULL:
                pass
            elif info == _INFO_INDEFINITE:
                raise NonCanonical(f"unexpected break code at byte {start}")
            else:
                raise WrongType(f"float, boolean or simple value {initial:#04x} at byte {start}")
        else:
            if info == _INFO_INDEFINITE:
                raise NonCanonical(f"indefinite length at byte {start}")
            if info < 24:
                arg = info
            elif info in _ARG_WIDTH_FOR_INFO:
                width = _ARG_WIDTH_FOR_INFO[info]
                if n - pos < width:
                    raise Truncated(f"header at byte {start} runs past the end of input")
                arg = int.from_bytes(data[pos : pos + width], "big")
                pos += width
                if arg < _MIN_ARG_FOR_INFO[info]:
                    raise NonCanonical(f"non-minimal integer or length at byte {start}")
            else:
                raise WrongType(f"reserved additional information {info} at byte {start}")

            if major == _MAJOR_NEGINT:
                raise WrongType(f"negative integer at byte {start}")
            if major == _MAJOR_TEXT:
                raise WrongType(f"text string at byte {start}")
            if major == _MAJOR_TAG:
                raise WrongType(f"tag {arg} at byte {start}")
            if major == _MAJOR_BYTES:
                if arg > n - pos:
                    raise Truncated(f"byte string at byte {start} runs past the end of input")
                pos += arg
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
                if len(stack) >= MAX_DEPTH:
                    raise TooDeep(f"nesting deeper than {MAX_DEPTH} at byte {start}")
                items = arg * 2 if major == _MAJOR_MAP else arg
                # Every item takes at least one byte, so a count beyond the remaining bytes lies.
                if items > n - pos:
                    raise Truncated(f"container at byte {start} runs past the end of input")
                if major == _MAJOR_ARRAY and arg > _MAX_CONTAINER_LEN:
                    raise WrongType(f"array of {arg} elements at byte {start} is too long")
                if items > 0:
                    stack.append(_Frame(items, major == _MAJOR_MAP))
                    continue
                if major == _MAJOR_MAP:
                    raise WrongType(f"map at byte {start}")
            # else: an unsigned integer, already fully read.

        # One item ended at `pos`; close every container it completes.
        while stack:
            frame = stack[-1]
            if frame.keys is not None and frame.remaining % 2 == 0:
                key = data[frame.key_start : pos]
                if key in frame.keys:
                    raise DuplicateKey(f"repeated map key ending at byte {pos}")
                frame.keys.add(key)
            frame.remaining -= 1
            if frame.remaining > 0:
                break
            stack.pop()
            if frame.keys is not None:
                # Keys were checked for duplicates first; maps are still not part of the format.
                raise WrongType(f"map ending at byte {pos}")
        if not stack:
            break
    if pos != n:
        raise TrailingBytes(f"{n - pos} bytes after the value")


def _parse(data: bytes, max_size_bytes: int) -> Any:
    """Scan, decode and check canonicity; the result holds only lists, ints, bytes and None."""
    if len(data) > max_size_bytes:
        raise TooLarge(f"{len(data)} bytes exceeds the limit of {max_size_bytes}")
    data = bytes(data)
    _scan(data)
    try:
        obj = cbor2.loads(data, max_depth=MAX_DEPTH + 1, allow_indefinite=False)
        reencoded = _dumps(obj)
    except Exception as exc:  # the scan should make this unreachable; never let it escape
        raise DecodeError(f"cbor2 rejected the input: {exc!r}") from exc
    if reencoded != data:
        raise NonCanonical("input differs from the canonical encoding of its value")
    return obj


# ---------------------------------------------------------------------------------------------
# Mapping decoded values to dataclasses


def _wrong(what: str, value: object) -> NoReturn:
    raise WrongType(f"{what}: unexpected {type(value).__name__}")


def _array(obj: object, length: int, what: str) -> list[Any]:
    if not isinstance(obj, list):
        _wrong(what, obj)
    if len(obj) != length:
        raise WrongType(f"{what}: expected {length} elements, got {len(obj)}")
    return obj


def _list(obj: object, max_len: int, what: str) -> list[Any]:
    if not isinstance(obj, list):
        _wrong(what, obj)
    if len(obj) > max_len:
        raise WrongType(f"{what}: {len(obj)} elements exceeds the limit of {max_len}")
    return obj


def _uint(obj: object, bound: int, what: str) -> int:
    # `type(...) is int` rather than isinstance: bool is an int subclass.
    if type(obj) is not int:
        _wrong(what, obj)
    if not 0 <= obj < bound:
        raise WrongType(f"{what}: {obj} out of range [0, {bound})")
    return obj


def _view(obj: object, what: str) -> View:
    return View(_uint(obj, _MAX_UINT, what))


def _index(obj: object, what: str) -> ValidatorIndex:
    return ValidatorIndex(_uint(obj, _MAX_VALIDATOR_INDEX, what))


def _bytes(obj: object, what: str, *, exact: int | None = None, max_len: int | None = None) -> bytes:
    if type(obj) is not bytes:
        _wrong(what, obj)
    if exact is not None and len(obj) != exact:
        raise WrongType(f"{what}: expected {exact} bytes, got {len(obj)}")
    if max_len is not None and len(obj) > max_len:
        raise WrongType(f"{what}: {len(obj)} bytes exceeds the limit of {max_len}")
    return obj


def _block_id(obj: object, what: str) -> BlockId:
    return BlockId(_bytes(obj, what, exact=BLOCK_ID_SIZE_BYTES))


def _signature(obj: object, what: str) -> bytes:
    return _bytes(obj, what, exact=SIGNATURE_SIZE_BYTES)


def _to_qc(obj: object) -> QuorumCert:
    view, block_id, sigs = _array(obj, 3, "QC")
    pairs = []
    for entry in _list(sigs, MAX_SIGNATURES, "QC signatures"):
        signer, sig = _array(entry, 2, "QC signature")
        pairs.append((_index(signer, "QC signer"), _signature(sig, "QC signature")))
    return QuorumCert(
        view=_view(view, "QC view"),
        block_id=_block_id(block_id, "QC block id"),
        signatures=tuple(pairs),
    )


def _to_tc(obj: object) -> TimeoutCert:
    view, high_qc, sigs = _array(obj, 3, "TC")
    triples = []
    for entry in _list(sigs, MAX_SIGNATURES, "TC signatures"):
        signer, hqv, sig = _array(entry, 3, "TC signature")
        triples.append(
            (
                _index(signer, "TC signer"),
                _view(hqv, "TC signer's high-QC view"),
                _signature(sig, "TC signature"),
            )
        )
    return TimeoutCert(view=_view(view, "TC view"), high_qc=_to_qc(high_qc), signatures=tuple(triples))


def _to_optional_tc(obj: object) -> TimeoutCert | None:
    return None if obj is None else _to_tc(obj)


def _to_block(obj: object) -> Block:
    view, height, parent_id, proposer, qc, txs, app_height, app_hash = _array(obj, 8, "block")
    tx_list = _list(txs, MAX_TXS_PER_BLOCK, "block txs")
    return Block(
        view=_view(view, "block view"),
        height=_uint(height, _MAX_UINT, "block height"),
        parent_id=_block_id(parent_id, "block parent id"),
        proposer=_index(proposer, "block proposer"),
        qc=_to_qc(qc),
        txs=tuple(_bytes(tx, "transaction", max_len=MAX_TX_SIZE_BYTES) for tx in tx_list),
        app_height=_uint(app_height, _MAX_UINT, "block app height"),
        app_hash=_bytes(app_hash, "block app hash", max_len=MAX_APP_HASH_SIZE_BYTES),
    )


def _to_wire_message(obj: object) -> WireMessage:
    if isinstance(obj, list) and obj and obj[0] == TAG_TRANSACTIONS:
        _, txs = _array(obj, 2, "Transactions")
        tx_list = _list(txs, MAX_TXS_PER_BLOCK, "Transactions txs")
        return Transactions(tuple(_bytes(tx, "transaction", max_len=MAX_TX_SIZE_BYTES) for tx in tx_list))
    return _to_message(obj)


def _to_message(obj: object) -> Message:
    if not isinstance(obj, list) or not obj:
        _wrong("message", obj)
    tag = _uint(obj[0], _MAX_UINT, "message type")
    if tag == TAG_PROPOSAL:
        _, block, tc, sig = _array(obj, 4, "Proposal")
        return Proposal(
            block=_to_block(block),
            tc=_to_optional_tc(tc),
            signature=_signature(sig, "Proposal signature"),
        )
    if tag == TAG_VOTE:
        _, view, block_id, author, sig = _array(obj, 5, "Vote")
        return Vote(
            view=_view(view, "Vote view"),
            block_id=_block_id(block_id, "Vote block id"),
            author=_index(author, "Vote author"),
            signature=_signature(sig, "Vote signature"),
        )
    if tag == TAG_TIMEOUT:
        _, view, high_qc, author, sig = _array(obj, 5, "Timeout")
        return Timeout(
            view=_view(view, "Timeout view"),
            high_qc=_to_qc(high_qc),
            author=_index(author, "Timeout author"),
            signature=_signature(sig, "Timeout signature"),
        )
    if tag == TAG_SYNC_INFO:
        _, high_qc, high_tc = _array(obj, 3, "SyncInfo")
        return SyncInfo(high_qc=_to_qc(high_qc), high_tc=_to_optional_tc(high_tc))
    if tag == TAG_BLOCK_REQUEST:
        _, block_id, max_blocks = _array(obj, 3, "BlockRequest")
        count = _uint(max_blocks, MAX_BLOCKS_PER_RESPONSE + 1, "BlockRequest max_blocks")
        if count < 1:
            raise WrongType("BlockRequest max_blocks: must be at least 1")
        return BlockRequest(block_id=_block_id(block_id, "BlockRequest block id"), max_blocks=count)
    if tag == TAG_BLOCK_RESPONSE:
        _, blocks = _array(obj, 2, "BlockResponse")
        block_list = _list(blocks, MAX_BLOCKS_PER_RESPONSE, "BlockResponse blocks")
        return BlockResponse(blocks=tuple(_to_block(b) for b in block_list))
    if tag == TAG_SYNC_REQUEST:
        _, start, max_blocks = _array(obj, 3, "SyncRequest")
        count = _uint(max_blocks, MAX_BLOCKS_PER_RESPONSE + 1, "SyncRequest max_blocks")
        if count < 1:
            raise WrongType("SyncRequest max_blocks: must be at least 1")
        return SyncRequest(start_height=_uint(start, _MAX_UINT, "SyncRequest start height"), max_blocks=count)
    if tag == TAG_SYNC_RESPONSE:
        _, blocks, qc = _array(obj, 3, "SyncResponse")
        block_list = _list(blocks, MAX_BLOCKS_PER_RESPONSE, "SyncResponse blocks")
        return SyncResponse(
            blocks=tuple(_to_block(b) for b in block_list), qc=None if qc is None else _to_qc(qc)
        )
    raise WrongType(f"unknown message type {tag}")


def _to_safety_state(obj: object) -> SafetyState:
    if not isinstance(obj, list) or not obj:
        _wrong("safety state", obj)
    version = _uint(obj[0], _MAX_UINT, "safety state format version")
    if version != SAFETY_STATE_FORMAT_VERSION:
        raise WrongType(f"unknown safety state format version {version}")
    _, last_voted_view, locked_qc, highest_timeout_view, last_vote, last_timeout = _array(
        obj, 6, "safety state"
    )
    return SafetyState(
        last_voted_view=_view(last_voted_view, "last voted view"),
        locked_qc=_to_qc(locked_qc),
        highest_timeout_view=_view(highest_timeout_view, "highest timeout view"),
        last_vote=None if last_vote is None else _bytes(last_vote, "last vote"),
        last_timeout=None if last_timeout is None else _bytes(last_timeout, "last timeout"),
    )


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode_as(
    data: bytes, convert: Callable[[object], _T], what: str, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES
) -> _T:
    """Parse strictly, then convert; only ever a value or a `DecodeError`."""
    obj = _parse(data, max_size_bytes)
    try:
        return convert(obj)
    except DecodeError:
        raise
    except Exception as exc:  # the checks above should make this unreachable; contain it anyway
        raise DecodeError(f"malformed {what}: {exc!r}") from exc


def decode(data: bytes, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> Message:
    """The message `data` canonically encodes; raises a `DecodeError` subclass for anything else."""
    return _decode_as(data, _to_message, "message", max_size_bytes)


def decode_wire(data: bytes, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> WireMessage:
    """What a peer sent: a protocol message or mempool gossip; a `DecodeError` for anything else."""
    return _decode_as(data, _to_wire_message, "message", max_size_bytes)


def decode_safety_state(data: bytes) -> SafetyState:
    """The safety state `data` canonically encodes; raises a `DecodeError` subclass otherwise."""
    return _decode_as(data, _to_safety_state, "safety state")


def encode_block(block: Block) -> bytes:
    """A block on its own, for storage (its id is recomputed on decoding)."""
    return _dumps(_block_obj(block))


def decode_block(data: bytes) -> Block:
    return _decode_as(data, _to_block, "block")


def encode_qc(qc: QuorumCert) -> bytes:
    return _dumps(_qc_obj(qc))


def decode_qc(data: bytes) -> QuorumCert:
    return _decode_as(data, _to_qc, "QC")


def encode_tc(tc: TimeoutCert) -> bytes:
    return _dumps(_tc_obj(tc))


def decode_tc(data: bytes) -> TimeoutCert:
    return _decode_as(data, _to_tc, "TC")
