"""Tests of `bft.core.wire`: round trips, derived hashes, and strict decoding of hostile bytes."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import replace
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bft.core import cbor
from bft.core.batches import Batch, BatchAck, BatchInfo, BatchProof, BatchProofs, BatchRequest, BatchResponse
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
from bft.core.types import MAX_APP_HASH_SIZE_BYTES, BlockId, ValidatorIndex, View
from bft.core.wire import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_DEPTH,
    MAX_MESSAGE_SIZE_BYTES,
    MAX_SIGNATURES,
    MAX_TX_SIZE_BYTES,
    MAX_TXS_PER_BLOCK,
    MESSAGE_CODECS,
    RECOVERY_NONCE_BYTES,
    TAG_RECOVERY_PROBE,
    TAG_RECOVERY_REPORT,
    TAG_RESERVED_FOR_NODE,
    block_id_of,
    certificate_digest,
    decode,
    decode_block,
    decode_safety_state,
    encode,
    encode_block,
    encode_qc,
    encode_safety_state,
    proposal_signing_payload,
    timeout_signing_payload,
    vote_signing_payload,
)
from crypto.hashing import sha256

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ZERO_ID = BlockId(bytes(32))
GENESIS_QC = QuorumCert(view=View(0), block_id=ZERO_ID, signatures=())


def sig(seed: int) -> bytes:
    return bytes([seed % 256]) * 64


def bid(seed: int) -> BlockId:
    return BlockId(bytes([seed % 256]) * 32)


def qc(view: int = 7, signers: tuple[int, ...] = (0, 1, 2)) -> QuorumCert:
    return QuorumCert(
        view=View(view),
        block_id=bid(view),
        signatures=tuple((ValidatorIndex(s), sig(s)) for s in signers),
    )


def tc(view: int = 9) -> TimeoutCert:
    return TimeoutCert(
        view=View(view),
        high_qc=qc(view - 2),
        signatures=tuple((ValidatorIndex(s), View(view - 2 - s), sig(s + 10)) for s in (0, 1, 3)),
    )


def genesis_block() -> Block:
    return Block(
        view=View(0),
        height=0,
        parent_id=ZERO_ID,
        proposer=ValidatorIndex(0),
        qc=GENESIS_QC,
        txs=(),
    )


def block(view: int = 8, txs: tuple[bytes, ...] = (b"tx-a", b"", b"tx-c")) -> Block:
    return Block(
        view=View(view),
        height=view - 1,
        parent_id=bid(view - 1),
        proposer=ValidatorIndex(3),
        qc=qc(view - 1),
        txs=txs,
    )


def batch(seq: int = 1, txs: tuple[bytes, ...] = (b"b-1", b"", b"b-3")) -> Batch:
    return Batch(author=ValidatorIndex(2), sequence=seq, expiry_height=40 + seq, txs=txs)


def proof(seq: int = 1, signers: tuple[int, ...] = (0, 2)) -> BatchProof:
    return BatchProof(
        info=batch(seq).info, signatures=tuple((ValidatorIndex(s), sig(s + 20)) for s in signers)
    )


def lean_block(view: int = 8, proofs: tuple[BatchProof, ...] = (proof(1), proof(2))) -> Block:
    """A block with proofs of availability and no transactions, as proposed."""
    return replace(block(view, txs=()), batches=proofs)


def full_block(view: int = 8, proofs: tuple[BatchProof, ...] = (proof(1), proof(2))) -> Block:
    """The same block with its batches' transactions, as committed and served."""
    txs = tuple(tx for p in proofs for tx in batch(p.info.sequence).txs)
    return replace(block(view, txs=txs), batches=proofs)


def vote() -> Vote:
    return Vote(view=View(5), block_id=bid(5), author=ValidatorIndex(2), signature=sig(5))


def proposal_with_tc() -> Proposal:
    return Proposal(block=block(10), tc=tc(9), signature=sig(42))


SAMPLE_MESSAGES: list[Message] = [
    Proposal(block=genesis_block(), tc=None, signature=sig(1)),
    Proposal(block=block(), tc=None, signature=sig(2)),
    proposal_with_tc(),
    vote(),
    Timeout(view=View(6), high_qc=qc(4), author=ValidatorIndex(1), signature=sig(6)),
    Timeout(view=View(1), high_qc=GENESIS_QC, author=ValidatorIndex(0), signature=sig(7)),
    SyncInfo(high_qc=GENESIS_QC, high_tc=None),
    SyncInfo(high_qc=qc(4), high_tc=tc(6)),
    BlockRequest(block_id=bid(3), max_blocks=1),
    BlockRequest(block_id=bid(3), max_blocks=MAX_BLOCKS_PER_RESPONSE),
    BlockResponse(blocks=()),
    BlockResponse(blocks=(block(8), block(7, txs=()), genesis_block())),
    Proposal(block=lean_block(), tc=tc(7), signature=sig(3)),
    BlockResponse(blocks=(full_block(9), lean_block(8))),
    batch(),
    Batch(author=ValidatorIndex(0), sequence=2**63 - 1, expiry_height=0, txs=(b"",)),
    BatchAck(info=batch().info, author=ValidatorIndex(1), signature=sig(8)),
    BatchProofs(proofs=(proof(1), proof(2, signers=(1, 2, 3)))),
    BatchProofs(proofs=()),
    BatchRequest(height=12, digests=(batch(1).digest, batch(2).digest)),
    BatchResponse(batches=(batch(1), batch(2, txs=(b"x" * 100,)))),
    BatchResponse(batches=()),
]
SAMPLE_ENCODINGS = [encode(m) for m in SAMPLE_MESSAGES]


def dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def qc_obj(q: QuorumCert) -> list[Any]:
    return [q.view, q.block_id, [[s, g] for s, g in q.signatures]]


def vote_obj(v: Vote) -> list[Any]:
    return [2, v.view, v.block_id, v.author, v.signature]


# ---------------------------------------------------------------------------------------------
# Round trips and layout


@pytest.mark.parametrize("msg", SAMPLE_MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    decoded = decode(data)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert encode(decoded) == data


def test_round_trip_preserves_block_ids() -> None:
    msg = BlockResponse(blocks=(block(8), genesis_block()))
    decoded = decode(encode(msg))
    assert isinstance(decoded, BlockResponse)
    # `id` is excluded from equality, so compare it explicitly.
    assert [b.id for b in decoded.blocks] == [b.id for b in msg.blocks]


def test_vote_layout_is_the_documented_array() -> None:
    v = vote()
    assert encode(v) == dumps(vote_obj(v))


def test_proposal_layout_is_the_documented_array() -> None:
    p = proposal_with_tc()
    assert p.tc is not None
    b = p.block
    tc_obj = [
        p.tc.view,
        qc_obj(p.tc.high_qc),
        [[s, h, g] for s, h, g in p.tc.signatures],
    ]
    block_obj = [
        b.view,
        b.height,
        b.parent_id,
        b.proposer,
        qc_obj(b.qc),
        list(b.txs),
        b.app_height,
        b.app_hash,
    ]
    assert encode(p) == dumps([1, block_obj, tc_obj, p.signature])


@pytest.mark.parametrize("last_vote", [None, b"", encode(vote())])
@pytest.mark.parametrize("last_timeout", [None, encode(SAMPLE_MESSAGES[4])])
@pytest.mark.parametrize("locked", [GENESIS_QC, qc(12)])
def test_safety_state_round_trip(
    last_vote: bytes | None, last_timeout: bytes | None, locked: QuorumCert
) -> None:
    state = SafetyState(
        last_voted_view=View(13),
        locked_qc=locked,
        highest_timeout_view=View(2**63 - 1),
        last_vote=last_vote,
        last_timeout=last_timeout,
    )
    data = encode_safety_state(state)
    assert decode_safety_state(data) == state
    assert data == dumps([1, 13, qc_obj(locked), 2**63 - 1, last_vote, last_timeout])


def test_safety_state_rejects_unknown_version() -> None:
    data = dumps([2, 0, qc_obj(GENESIS_QC), 0, None, None])
    with pytest.raises(WrongType):
        decode_safety_state(data)


def test_safety_state_rejects_truncation_and_message_bytes() -> None:
    data = encode_safety_state(SafetyState(View(1), GENESIS_QC, View(0), last_vote=None, last_timeout=None))
    with pytest.raises(Truncated):
        decode_safety_state(data[:-1])
    with pytest.raises(WrongType):
        decode_safety_state(encode(vote()))


# ---------------------------------------------------------------------------------------------
# Derived hashes and signing payloads


def test_block_id_is_hash_of_fields() -> None:
    b = block()
    assert b.id == block_id_of(b)
    fields = [b.view, b.height, b.parent_id, b.proposer, qc_obj(b.qc), list(b.txs), b.app_height, b.app_hash]
    expected = dumps(fields)
    assert b.id == sha256(expected)
    assert len(b.id) == 32


def test_genesis_block_id_is_stable() -> None:
    assert genesis_block().id == genesis_block().id == block_id_of(genesis_block())


@pytest.mark.parametrize(
    "change",
    [
        {"view": View(9)},
        {"height": 8},
        {"parent_id": bid(99)},
        {"proposer": ValidatorIndex(4)},
        {"qc": qc(7, signers=(0, 1, 3))},
        {"qc": GENESIS_QC},
        {"txs": (b"tx-a", b"", b"tx-C")},
        {"txs": (b"tx-a", b"")},
        {"txs": ()},
    ],
)
def test_block_id_changes_with_every_field(change: dict[str, Any]) -> None:
    original = block()
    changed = dataclasses.replace(original, **change)
    assert changed.id == block_id_of(changed)
    assert changed.id != original.id


def test_signing_payloads_are_distinct_and_deterministic() -> None:
    v, b = View(5), BlockId(bytes([5]) * 32)
    payloads = {
        vote_signing_payload(v, b),
        timeout_signing_payload(v, View(5)),
        proposal_signing_payload(b),
    }
    assert len(payloads) == 3
    assert vote_signing_payload(v, b) == dumps([5, b])
    assert timeout_signing_payload(v, View(4)) == dumps([5, 4])
    assert proposal_signing_payload(b) == dumps([b])
    assert vote_signing_payload(v, b) != vote_signing_payload(View(6), b)
    assert timeout_signing_payload(v, View(4)) != timeout_signing_payload(View(4), v)


def test_certificate_digest() -> None:
    assert certificate_digest(qc()) == certificate_digest(qc())
    assert certificate_digest(qc()) == sha256(dumps(qc_obj(qc())))
    assert certificate_digest(qc()) != certificate_digest(qc(signers=(0, 1, 3)))
    assert certificate_digest(tc()) != certificate_digest(tc().high_qc)
    assert certificate_digest(tc()) != certificate_digest(tc(10))
    assert len(certificate_digest(tc())) == 32


# ---------------------------------------------------------------------------------------------
# Strict decoding: one class at a time


def test_too_large_is_checked_before_decoding() -> None:
    data = encode(vote())
    with pytest.raises(TooLarge):
        decode(data, max_size_bytes=len(data) - 1)
    assert decode(data, max_size_bytes=len(data)) == vote()
    # Garbage that would otherwise be TrailingBytes: the size check must come first.
    with pytest.raises(TooLarge):
        decode(bytes(MAX_MESSAGE_SIZE_BYTES + 1))


def test_too_deep() -> None:
    with pytest.raises(TooDeep):
        decode(b"\x81" * (MAX_DEPTH + 1) + b"\x00")
    # At exactly the limit the nesting is accepted; the shape is then simply not a message.
    with pytest.raises(WrongType):
        decode(b"\x81" * MAX_DEPTH + b"\x00")


def test_deep_nesting_never_recurses() -> None:
    with pytest.raises(TooDeep):
        decode(b"\x81" * 100_000 + b"\x00")


@pytest.mark.parametrize("data", [*SAMPLE_ENCODINGS[:3], encode(vote())])
def test_truncated_at_every_prefix(data: bytes) -> None:
    for length in range(len(data)):
        with pytest.raises(Truncated):
            decode(data[:length])


@pytest.mark.parametrize(
    "data",
    [
        b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff",  # byte string claiming 2**63 bytes
        b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff\x00",  # array claiming 2**63 items
        b"\x82\x02\x58\x20" + bytes(31),  # 32-byte string with 31 bytes present
        b"\x19\x01",  # two-byte integer with one byte present
    ],
)
def test_lying_lengths_are_truncated(data: bytes) -> None:
    with pytest.raises(Truncated):
        decode(data)


def test_trailing_bytes() -> None:
    with pytest.raises(TrailingBytes):
        decode(encode(vote()) + b"\x00")
    with pytest.raises(TrailingBytes):
        decode(encode(vote()) + encode(vote()))


def test_non_minimal_integer() -> None:
    good = encode(vote())
    assert good[:2] == b"\x85\x02"
    with pytest.raises(NonCanonical):
        decode(b"\x85\x18\x02" + good[2:])
    with pytest.raises(NonCanonical):
        decode(b"\x85\x19\x00\x02" + good[2:])


def test_non_minimal_length() -> None:
    v = vote()
    block_id_at = len(dumps([2, v.view]))
    good = encode(v)
    assert good[block_id_at : block_id_at + 2] == b"\x58\x20"
    bad = good[:block_id_at] + b"\x59\x00\x20" + good[block_id_at + 2 :]
    with pytest.raises(NonCanonical):
        decode(bad)


def test_canonical_recheck_backs_up_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    # With the header scan disabled, the re-encode comparison alone must catch non-minimal forms.
    monkeypatch.setattr(cbor, "_scan", lambda data: None)  # the scanner lives in bft.core.cbor
    good = encode(vote())
    with pytest.raises(NonCanonical):
        decode(b"\x85\x18\x02" + good[2:])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x85\x18\x02" + encode(vote())[2:], NonCanonical),
        (b"\x9f\x02\xff", NonCanonical),
        (b"\xc1\x00", WrongType),
        (b"\xfb" + bytes(8), WrongType),
        (b"\xa2\x01\x00\x01\x00", DuplicateKey),
        (b"\x81" * (MAX_DEPTH + 1) + b"\x00", TooDeep),
        (b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", Truncated),
        (encode(vote()) + b"\x00", TrailingBytes),
    ],
)
def test_scan_refuses_before_cbor2_sees_the_bytes(
    data: bytes, error: type[DecodeError], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_be_called(*args: object, **kwargs: object) -> object:
        raise AssertionError("cbor2.loads reached")

    monkeypatch.setattr(cbor2, "loads", must_not_be_called)
    with pytest.raises(error):
        decode(data)


def test_indefinite_length_array() -> None:
    good = encode(vote())
    with pytest.raises(NonCanonical):
        decode(b"\x9f" + good[1:] + b"\xff")


def test_stray_break() -> None:
    with pytest.raises(DecodeError):
        decode(b"\xff")


@pytest.mark.parametrize(
    "data",
    [
        b"\xa2\x01\x00\x01\x00",  # {1: 0, 1: 0}
        b"\x82\x02\xa2\x01\x00\x01\x01",  # nested in an array, differing values
        b"\xa2\x81\x01\x00\x81\x01\x00",  # {[1]: 0, [1]: 0}: keys that are containers
        b"\xa3\x01\x00\x02\x00\x01\x00",  # repeat not adjacent
    ],
)
def test_map_with_duplicate_key(data: bytes) -> None:
    with pytest.raises(DuplicateKey):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xa0",  # {}
        b"\xa2\x01\x00\x02\x00",  # {1: 0, 2: 0}
        b"\xa2\x81\x01\x00\x81\x02\x00",  # {[1]: 0, [2]: 0}
        b"\xa2\x01\x81\x01\x02\x81\x01",  # {1: [1], 2: [1]}: equal values are not keys
    ],
)
def test_map_without_duplicates_is_wrong_type(data: bytes) -> None:
    with pytest.raises(WrongType):
        decode(data)


def _vote_with(index: int, value: Any) -> bytes:
    obj = vote_obj(vote())
    obj[index] = value
    return dumps(obj)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (_vote_with(1, b"\x05"), "view as bytes"),
        (_vote_with(1, None), "view as null"),
        (_vote_with(1, [5]), "view as array"),
        (_vote_with(1, -1), "negative integer"),
        (_vote_with(1, 1.5), "float"),
        (_vote_with(1, 2**63), "view out of range"),
        (_vote_with(1, True), "boolean"),
        (_vote_with(1, "5"), "text string"),
        (_vote_with(1, cbor2.CBORTag(2, b"\x05")), "tag"),
        (_vote_with(2, bytes(31)), "block id too short"),
        (_vote_with(2, bytes(33)), "block id too long"),
        (_vote_with(3, 2**16), "author out of range"),
        (_vote_with(4, bytes(63)), "signature too short"),
        (_vote_with(0, 7), "unknown tag"),
        (_vote_with(0, 0), "tag zero"),
        (_vote_with(0, b"\x02"), "tag as bytes"),
        (dumps(vote_obj(vote())[:-1]), "too few fields"),
        (dumps([*vote_obj(vote()), 0]), "too many fields"),
        (dumps([]), "empty array"),
        (dumps(5), "bare integer"),
        (b"\xf6", "bare null"),
        (b"\xfb" + bytes(8), "double"),
        (b"\xf9\x3c\x00", "half float"),
        (b"\xf8\x20", "simple value"),
        (b"\xc1\x00", "tag on an integer"),
        (b"\x1c", "reserved additional information"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_wrong_type(data: bytes, what: str) -> None:
    with pytest.raises(WrongType):
        decode(data)


def test_wrong_type_boundaries_are_exact() -> None:
    assert decode(_vote_with(1, 2**63 - 1)) == dataclasses.replace(vote(), view=View(2**63 - 1))
    assert decode(_vote_with(3, 2**16 - 1)) == dataclasses.replace(vote(), author=ValidatorIndex(2**16 - 1))


@pytest.mark.parametrize("count", [0, MAX_BLOCKS_PER_RESPONSE + 1])
def test_block_request_count_out_of_range(count: int) -> None:
    with pytest.raises(WrongType):
        decode(dumps([5, bid(1), count]))


def _block_obj(txs: list[bytes], sigs: int = 0) -> list[Any]:
    q = [3, bid(3), [[i % 2**16, sig(i)] for i in range(sigs)]]
    return [4, 4, bid(3), 0, q, txs, 2, bytes(32)]


def test_limits_on_counts_and_sizes() -> None:
    ok = decode(dumps([6, [_block_obj([b""] * MAX_TXS_PER_BLOCK, MAX_SIGNATURES)]]))
    assert isinstance(ok, BlockResponse)
    assert len(ok.blocks[0].txs) == MAX_TXS_PER_BLOCK
    assert len(ok.blocks[0].qc.signatures) == MAX_SIGNATURES
    with pytest.raises(WrongType):
        decode(dumps([6, [_block_obj([b""] * (MAX_TXS_PER_BLOCK + 1))]]))
    with pytest.raises(WrongType):
        decode(dumps([6, [_block_obj([], MAX_SIGNATURES + 1)]]))
    with pytest.raises(WrongType):
        decode(dumps([6, [_block_obj([bytes(MAX_TX_SIZE_BYTES + 1)])]]))
    assert decode(dumps([6, [_block_obj([bytes(MAX_TX_SIZE_BYTES)])]]))
    with pytest.raises(WrongType):
        decode(dumps([6, [_block_obj([])] * (MAX_BLOCKS_PER_RESPONSE + 1)]))
    assert decode(dumps([6, [_block_obj([])] * MAX_BLOCKS_PER_RESPONSE]))


def test_huge_flat_array_is_refused_early() -> None:
    with pytest.raises(WrongType):
        decode(dumps([0] * (MAX_TXS_PER_BLOCK + 1)))


def test_duplicate_and_unsorted_signers_reach_verification() -> None:
    dup = QuorumCert(
        view=View(4),
        block_id=bid(4),
        signatures=(
            (ValidatorIndex(2), sig(1)),
            (ValidatorIndex(2), sig(1)),
            (ValidatorIndex(0), sig(2)),
        ),
    )
    msg = SyncInfo(high_qc=dup, high_tc=None)
    assert decode(encode(msg)) == msg


def test_decoded_block_id_is_recomputed_not_trusted() -> None:
    b = block()
    data = encode(Proposal(block=b, tc=None, signature=sig(1)))
    # Changing one tx byte must change the decoded block's id.
    tampered = data.replace(b"tx-c", b"tx-d")
    decoded = decode(tampered)
    assert isinstance(decoded, Proposal)
    assert decoded.block.id != b.id
    assert decoded.block.id == block_id_of(decoded.block)


# ---------------------------------------------------------------------------------------------
# Properties


def _decodes_or_refuses(data: bytes) -> None:
    try:
        msg = decode(data)
    except DecodeError:
        return
    # A decoded message has exactly one encoding: the bytes it came from.
    assert encode(msg) == data


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_decode_or_refuse(data: bytes) -> None:
    _decodes_or_refuses(data)


@SETTINGS
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_safety_state(data: bytes) -> None:
    try:
        state = decode_safety_state(data)
    except DecodeError:
        return
    assert encode_safety_state(state) == data


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.just(0)),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        at = where % (len(buf) + 1)
        if kind == "insert":
            buf.insert(at, value)
        elif not buf:
            continue
        elif kind == "flip":
            buf[at % len(buf)] ^= 1 << value
        elif kind == "set":
            buf[at % len(buf)] = value
        else:
            del buf[at % len(buf)]
    return bytes(buf)


@SETTINGS
@given(st.sampled_from(SAMPLE_ENCODINGS), st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_encodings_only_decode_or_refuse(data: bytes, mutations: list[tuple[str, int, int]]) -> None:
    _decodes_or_refuses(_mutate(data, mutations))


_views = st.integers(0, 2**63 - 1).map(View)
_indices = st.integers(0, 2**16 - 1).map(ValidatorIndex)
_block_ids = st.binary(min_size=32, max_size=32).map(BlockId)
_sigs = st.binary(min_size=64, max_size=64)
_qcs = st.builds(
    QuorumCert,
    view=_views,
    block_id=_block_ids,
    signatures=st.lists(st.tuples(_indices, _sigs), max_size=4).map(tuple),
)
_tcs = st.builds(
    TimeoutCert,
    view=_views,
    high_qc=_qcs,
    signatures=st.lists(st.tuples(_indices, _views, _sigs), max_size=4).map(tuple),
)
_uints = st.integers(0, 2**63 - 1)
_tx_lists = st.lists(st.binary(max_size=40), max_size=5).map(tuple)
_batch_infos = st.builds(
    BatchInfo,
    author=_indices,
    sequence=st.integers(1, 2**63 - 1),
    expiry_height=_uints,
    digest=st.binary(min_size=32, max_size=32),
    tx_count=st.integers(1, MAX_TXS_PER_BLOCK),
    size_bytes=_uints,
)
_proofs = st.builds(
    BatchProof, info=_batch_infos, signatures=st.lists(st.tuples(_indices, _sigs), max_size=4).map(tuple)
)
_batches = st.builds(
    Batch,
    author=_indices,
    sequence=st.integers(1, 2**63 - 1),
    expiry_height=_uints,
    txs=st.lists(st.binary(max_size=40), min_size=1, max_size=5).map(tuple),
)
_blocks = st.builds(
    Block,
    view=_views,
    height=_uints,
    parent_id=_block_ids,
    proposer=_indices,
    qc=_qcs,
    txs=_tx_lists,
    batches=st.lists(_proofs, max_size=3).map(tuple),
)
_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Proposal, block=_blocks, tc=st.none() | _tcs, signature=_sigs),
    st.builds(Vote, view=_views, block_id=_block_ids, author=_indices, signature=_sigs),
    st.builds(Timeout, view=_views, high_qc=_qcs, author=_indices, signature=_sigs),
    st.builds(SyncInfo, high_qc=_qcs, high_tc=st.none() | _tcs),
    st.builds(BlockRequest, block_id=_block_ids, max_blocks=st.integers(1, MAX_BLOCKS_PER_RESPONSE)),
    st.builds(BlockResponse, blocks=st.lists(_blocks, max_size=3).map(tuple)),
    _batches,
    st.builds(BatchAck, info=_batch_infos, author=_indices, signature=_sigs),
    st.builds(BatchProofs, proofs=st.lists(_proofs, max_size=3).map(tuple)),
    st.builds(
        BatchRequest,
        height=_uints,
        digests=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(BatchResponse, batches=st.lists(_batches, max_size=3).map(tuple)),
)


@SETTINGS
@given(_messages)
def test_generated_messages_round_trip(msg: Message) -> None:
    data = encode(msg)
    decoded = decode(data)
    assert decoded == msg
    assert encode(decoded) == data


@SETTINGS
@given(_messages, st.lists(_mutation, min_size=1, max_size=3))
def test_mutated_generated_messages_only_decode_or_refuse(
    msg: Message, mutations: list[tuple[str, int, int]]
) -> None:
    _decodes_or_refuses(_mutate(encode(msg), mutations))


@SETTINGS
@given(
    st.builds(
        SafetyState,
        last_voted_view=_views,
        locked_qc=_qcs,
        highest_timeout_view=_views,
        last_vote=st.none() | st.binary(max_size=200),
        last_timeout=st.none() | st.binary(max_size=200),
    )
)
def test_generated_safety_states_round_trip(state: SafetyState) -> None:
    assert decode_safety_state(encode_safety_state(state)) == state


def test_block_app_state_fields_round_trip_and_are_bounded() -> None:
    b = replace(block(), app_height=3, app_hash=bytes(range(32)))
    decoded = decode_block(encode_block(b))
    assert (decoded.app_height, decoded.app_hash, decoded.id) == (3, bytes(range(32)), b.id)
    assert replace(b, app_hash=bytes(32)).id != b.id  # the claim is part of what is signed
    obj = _block_obj([])
    obj[7] = bytes(MAX_APP_HASH_SIZE_BYTES + 1)
    with pytest.raises(DecodeError):
        decode(dumps([6, [obj]]))


# ---------------------------------------------------------------------------------------------
# The message table


def test_the_message_table_covers_every_message_type_once() -> None:
    classes = set(typing.get_args(Message))
    assert {c.cls for c in MESSAGE_CODECS} == classes
    assert len(MESSAGE_CODECS) == len(classes)
    tags = [c.tag for c in MESSAGE_CODECS]
    assert len(set(tags)) == len(tags)
    assert TAG_RESERVED_FOR_NODE not in tags  # mempool gossip, bft.node.gossip


@pytest.mark.parametrize("size", [0, RECOVERY_NONCE_BYTES - 1, RECOVERY_NONCE_BYTES + 1])
def test_a_recovery_nonce_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(DecodeError, match="nonce"):
        decode(dumps([TAG_RECOVERY_PROBE, bytes(size)]))
    with pytest.raises(DecodeError, match="nonce"):
        decode(dumps([TAG_RECOVERY_REPORT, bytes(size), 1, cbor2.loads(encode_qc(GENESIS_QC)), None]))


def test_every_message_type_encodes_through_its_table_entry() -> None:
    sync_samples: list[Message] = [
        SyncRequest(start_height=3, max_blocks=7),
        SyncResponse(blocks=(block(8), block(9, txs=())), qc=qc(9)),
        SyncResponse(blocks=(), qc=None),
        RecoveryProbe(nonce=bytes(range(RECOVERY_NONCE_BYTES))),
        RecoveryReport(nonce=bytes(RECOVERY_NONCE_BYTES), view=View(9), high_qc=qc(8), high_tc=tc(7)),
        RecoveryReport(nonce=b"\xff" * RECOVERY_NONCE_BYTES, view=View(1), high_qc=GENESIS_QC, high_tc=None),
    ]
    samples = {type(m): m for m in [*SAMPLE_MESSAGES, *sync_samples]}
    for codec in MESSAGE_CODECS:
        msg = samples[codec.cls]
        data = encode(msg)
        obj = cbor2.loads(data)
        assert obj[0] == codec.tag
        assert len(obj) == 1 + codec.arity
        assert decode(data) == msg
        assert encode(decode(data)) == data


def test_sync_layouts_are_the_documented_arrays() -> None:
    assert encode(SyncRequest(start_height=3, max_blocks=7)) == dumps([8, 3, 7])
    b = block(8)
    fields = [b.view, b.height, b.parent_id, b.proposer, qc_obj(b.qc), list(b.txs), b.app_height, b.app_hash]
    assert encode(SyncResponse(blocks=(b,), qc=qc(8))) == dumps([9, [fields], qc_obj(qc(8))])
    assert encode(SyncResponse(blocks=(), qc=None)) == dumps([9, [], None])


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError):
        encode(GENESIS_QC)  # type: ignore[arg-type]
