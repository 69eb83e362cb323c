"""Tests of `bft.core.wire` for the quorum store: the batch messages' layouts and strict decoding,
blocks with proofs of availability (the optional ninth field, lean and full blocks sharing one
id), and the size bounds that keep batches and blocks with proofs within a message."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_wire import (
    GENESIS_QC,
    SETTINGS,
    _batches,
    _blocks,
    _proofs,
    batch,
    bid,
    block,
    dumps,
    full_block,
    lean_block,
    proof,
    qc_obj,
    sig,
    tc,
)

from bft.core.batches import (
    Batch,
    BatchAck,
    BatchInfo,
    BatchProof,
    BatchProofs,
    BatchRequest,
    BatchResponse,
)
from bft.core.errors import TooDeep, WrongType
from bft.core.ids import batch_digest_of, batch_info_array, batch_proof_array, block_array
from bft.core.messages import Block, BlockResponse, Message, Proposal, QuorumCert, SyncResponse
from bft.core.types import MAX_APP_HASH_SIZE_BYTES, BlockId, ValidatorIndex, View
from bft.core.wire import (
    BATCH_DIGEST_SIZE_BYTES,
    MAX_BATCHES_PER_BLOCK,
    MAX_MESSAGE_SIZE_BYTES,
    MAX_SIGNATURES,
    MAX_TX_SIZE_BYTES,
    MAX_TXS_PER_BLOCK,
    MESSAGE_CODECS,
    SIGNATURE_SIZE_BYTES,
    TAG_BATCH,
    TAG_BATCH_ACK,
    TAG_BATCH_PROOFS,
    TAG_BATCH_REQUEST,
    TAG_BATCH_RESPONSE,
    TAG_BLOCK_RESPONSE,
    TAG_PROPOSAL,
    batch_ack_signing_payload,
    batch_proof_digest,
    batch_proof_size_bound,
    batch_response_budget_bytes,
    batch_size_bound,
    block_id_of,
    block_size_bound,
    check_batch_limits,
    check_block_limits,
    decode,
    decode_block,
    encode,
    encode_block,
    max_batch_size_bound,
    max_block_size_bound,
    proposal_signing_payload,
    response_budget_bytes,
    timeout_signing_payload,
    vote_signing_payload,
)
from crypto.hashing import sha256

MAX_UINT = 2**63 - 1
MAX_INDEX = 2**16 - 1
# The id of `test_wire.block()`, as the code before the quorum store computed it: a block
# without proofs keeps its encoding, so its id, and every stored chain stays valid.
PINNED_BLOCK_ID = "ed907a196bcb5b4030dc530a82cc0a569f2b3fc09bdd424bb6cb13c77314d351"


def info_obj(i: BatchInfo) -> list[Any]:
    return [i.author, i.sequence, i.expiry_height, i.digest, i.tx_count, i.size_bytes]


def proof_obj(p: BatchProof) -> list[Any]:
    return [info_obj(p.info), [[s, g] for s, g in p.signatures]]


def batch_obj(b: Batch) -> list[Any]:
    return [b.author, b.sequence, b.expiry_height, list(b.txs)]


def block_fields(b: Block) -> list[Any]:
    return [b.view, b.height, b.parent_id, b.proposer, qc_obj(b.qc), list(b.txs), b.app_height, b.app_hash]


def ack() -> BatchAck:
    return BatchAck(info=batch().info, author=ValidatorIndex(1), signature=sig(8))


# ---------------------------------------------------------------------------------------------
# Tags and layouts


def test_the_batch_tags_are_the_documented_ones() -> None:
    tags = {c.cls: c.tag for c in MESSAGE_CODECS}
    assert (TAG_BATCH, TAG_BATCH_ACK, TAG_BATCH_PROOFS, TAG_BATCH_REQUEST, TAG_BATCH_RESPONSE) == (
        12,
        13,
        14,
        15,
        16,
    )
    assert tags[Batch] == TAG_BATCH
    assert tags[BatchAck] == TAG_BATCH_ACK
    assert tags[BatchProofs] == TAG_BATCH_PROOFS
    assert tags[BatchRequest] == TAG_BATCH_REQUEST
    assert tags[BatchResponse] == TAG_BATCH_RESPONSE


def test_batch_layouts_are_the_documented_arrays() -> None:
    b, a, p = batch(), ack(), proof()
    assert encode(b) == dumps([12, 2, 1, 41, [b"b-1", b"", b"b-3"]])
    assert encode(a) == dumps([13, info_obj(a.info), 1, a.signature])
    assert info_obj(a.info) == [2, 1, 41, b.digest, 3, 6]
    assert encode(BatchProofs((p, proof(2)))) == dumps([14, [proof_obj(p), proof_obj(proof(2))]])
    assert proof_obj(p) == [info_obj(p.info), [[0, sig(20)], [2, sig(22)]]]
    assert encode(BatchRequest(12, (b.digest,))) == dumps([15, 12, [b.digest]])
    assert encode(BatchResponse((b, batch(2)))) == dumps([16, [batch_obj(b), batch_obj(batch(2))]])
    # ids lays out infos and proofs; the wire embeds exactly that.
    assert batch_info_array(a.info) == info_obj(a.info)
    assert batch_proof_array(p) == proof_obj(p)


@pytest.mark.parametrize(
    "msg",
    [
        batch(),
        Batch(ValidatorIndex(MAX_INDEX), MAX_UINT, MAX_UINT, (bytes(MAX_TX_SIZE_BYTES),)),
        ack(),
        BatchAck(
            BatchInfo(ValidatorIndex(0), 1, 0, bytes(32), MAX_TXS_PER_BLOCK, MAX_UINT),
            ValidatorIndex(0),
            sig(0),
        ),
        BatchProofs(()),
        BatchProofs((proof(1, signers=()),)),
        BatchProofs(tuple(proof(i) for i in range(1, MAX_BATCHES_PER_BLOCK + 1))),
        BatchRequest(0, (bytes(32),)),
        BatchRequest(MAX_UINT, tuple(bytes([i % 256]) * 32 for i in range(MAX_BATCHES_PER_BLOCK))),
        BatchResponse(()),
        BatchResponse(tuple(batch(i, txs=(b"t",)) for i in range(1, MAX_BATCHES_PER_BLOCK + 1))),
    ],
    ids=lambda m: type(m).__name__,
)
def test_batch_messages_round_trip_at_their_limits(msg: Message) -> None:
    data = encode(msg)
    decoded = decode(data)
    assert decoded == msg
    assert type(decoded) is type(msg)
    assert encode(decoded) == data


def test_a_decoded_batch_has_the_digest_of_its_contents() -> None:
    b = batch()
    decoded = decode(encode(b))
    assert isinstance(decoded, Batch)
    assert decoded.digest == b.digest == batch_digest_of(b)
    assert len(decoded.digest) == BATCH_DIGEST_SIZE_BYTES
    tampered = decode(encode(b).replace(b"b-3", b"b-4"))
    assert isinstance(tampered, Batch)
    assert tampered.digest != b.digest
    assert tampered.digest == batch_digest_of(tampered)
    response = decode(encode(BatchResponse((b,))))
    assert isinstance(response, BatchResponse)
    assert response.batches[0].digest == b.digest
    assert response.batches[0].info == b.info


def test_the_batch_signing_payload_and_proof_digest() -> None:
    info = batch().info
    assert batch_ack_signing_payload(info) == dumps(info_obj(info))
    assert batch_ack_signing_payload(info) != batch_ack_signing_payload(batch(2).info)
    # Distinct in shape from every other signing payload, before any domain separator.
    others = {
        vote_signing_payload(View(5), bid(5)),
        timeout_signing_payload(View(5), View(4)),
        proposal_signing_payload(bid(5)),
    }
    assert batch_ack_signing_payload(info) not in others
    assert batch_proof_digest(proof()) == sha256(dumps(proof_obj(proof())))
    assert batch_proof_digest(proof()) != batch_proof_digest(proof(signers=(0, 1)))


# ---------------------------------------------------------------------------------------------
# Blocks with proofs of availability


def test_a_block_without_proofs_encodes_as_the_eight_field_layout() -> None:
    b = block()
    assert b.batches == ()
    assert encode_block(b) == dumps(block_fields(b))
    assert block_array(b) == block_fields(b)
    assert encode(Proposal(b, None, sig(1))) == dumps([TAG_PROPOSAL, block_fields(b), None, sig(1)])
    assert b.id.hex() == PINNED_BLOCK_ID
    assert b.id == sha256(dumps(block_fields(b))) == block_id_of(b)


def test_a_block_with_proofs_has_a_ninth_field() -> None:
    b = full_block()
    expected = [*block_fields(b), [proof_obj(p) for p in b.batches]]
    assert encode_block(b) == dumps(expected)
    assert encode(BlockResponse((b,))) == dumps([TAG_BLOCK_RESPONSE, [expected]])


def test_lean_and_full_blocks_share_an_id_but_not_an_encoding() -> None:
    lean, full = lean_block(), full_block()
    assert lean.txs == () and len(full.txs) == 6
    assert lean.batches == full.batches
    assert lean.id == full.id == block_id_of(full)
    # The id hashes the lean layout: the transactions are bound by the proofs' digests.
    assert full.id == sha256(dumps([*block_fields(lean), [proof_obj(p) for p in lean.batches]]))
    assert encode_block(lean) != encode_block(full)
    assert lean != full
    for b in (lean, full):
        decoded = decode_block(encode_block(b))
        assert decoded == b
        assert decoded.id == b.id
        assert encode_block(decoded) == encode_block(b)


@pytest.mark.parametrize(
    "proofs",
    [
        (proof(1),),
        (proof(2), proof(1)),
        (proof(1), proof(2), proof(3)),
        (proof(1, signers=(0, 3)), proof(2)),
        (replace(proof(1), info=replace(proof(1).info, expiry_height=99)), proof(2)),
    ],
)
def test_the_block_id_changes_with_its_proofs(proofs: tuple[BatchProof, ...]) -> None:
    assert replace(lean_block(), batches=proofs).id != lean_block().id


def test_the_block_id_of_a_block_with_proofs_changes_with_every_other_field() -> None:
    original = lean_block()
    changes: list[dict[str, Any]] = [
        {"view": View(9)},
        {"height": 8},
        {"parent_id": bid(99)},
        {"proposer": ValidatorIndex(4)},
        {"qc": GENESIS_QC},
        {"app_height": 1},
        {"app_hash": bytes(range(32))},
    ]
    for change in changes:
        assert replace(original, **change).id != original.id, change


def test_adding_proofs_changes_the_id() -> None:
    assert lean_block().id != block(txs=()).id


@pytest.mark.parametrize(
    "msg",
    [
        Proposal(lean_block(), tc(7), sig(3)),
        BlockResponse((full_block(9), lean_block(8), block())),
        SyncResponse((full_block(9),), QuorumCert(View(9), full_block(9).id, ((ValidatorIndex(0), sig(1)),))),
    ],
    ids=lambda m: type(m).__name__,
)
def test_blocks_with_proofs_round_trip_in_every_message_that_carries_blocks(msg: Message) -> None:
    data = encode(msg)
    decoded = decode(data)
    assert decoded == msg
    assert encode(decoded) == data
    blocks = [decoded.block] if isinstance(decoded, Proposal) else list(getattr(decoded, "blocks", ()))
    original = [msg.block] if isinstance(msg, Proposal) else list(getattr(msg, "blocks", ()))
    assert [b.id for b in blocks] == [b.id for b in original]
    assert [b.batches for b in blocks] == [b.batches for b in original]


def test_the_deepest_value_fits_the_depth_limit() -> None:
    # A signature pair in a proof in a block in a BlockResponse: seven nested arrays.
    data = encode(BlockResponse((lean_block(),)))
    assert decode(data) == BlockResponse((lean_block(),))
    too_deep = dumps(
        [TAG_BLOCK_RESPONSE, [[*block_fields(lean_block()), [[info_obj(proof().info), [[[[0]]]]]]]]]
    )
    with pytest.raises(TooDeep):
        decode(too_deep)


def _block_with_ninth(ninth: Any) -> bytes:
    return dumps([TAG_BLOCK_RESPONSE, [[*block_fields(block()), ninth]]])


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (_block_with_ninth([]), "an empty list of proofs"),
        (_block_with_ninth(None), "null proofs"),
        (_block_with_ninth(0), "proofs as an integer"),
        (_block_with_ninth(b""), "proofs as bytes"),
        (_block_with_ninth([proof_obj(proof())] * (MAX_BATCHES_PER_BLOCK + 1)), "too many proofs"),
        (_block_with_ninth([info_obj(proof().info)]), "a bare info as a proof"),
        (dumps([TAG_BLOCK_RESPONSE, [[*block_fields(block()), [proof_obj(proof())], []]]]), "ten fields"),
        (dumps([TAG_BLOCK_RESPONSE, [block_fields(block())[:7]]]), "seven fields"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_malformed_block_proofs_are_refused(data: bytes, what: str) -> None:
    with pytest.raises(WrongType):
        decode(data)


def test_the_empty_ninth_field_is_refused_in_storage_records_too() -> None:
    with pytest.raises(WrongType, match="proofs"):
        decode_block(dumps([*block_fields(block()), []]))
    assert decode_block(dumps([*block_fields(block()), [proof_obj(proof())]])).batches == (proof(),)


def test_as_many_proofs_as_the_limit_are_accepted() -> None:
    proofs = [proof_obj(proof(i)) for i in range(1, MAX_BATCHES_PER_BLOCK + 1)]
    decoded = decode(_block_with_ninth(proofs))
    assert isinstance(decoded, BlockResponse)
    assert len(decoded.blocks[0].batches) == MAX_BATCHES_PER_BLOCK


# ---------------------------------------------------------------------------------------------
# Strict decoding of the batch messages, one field at a time


def _with(obj: list[Any], path: tuple[int, ...], value: Any) -> bytes:
    """`obj` encoded with the element at `path` (indices, outermost first) replaced by `value`."""
    copy: Any = cbor2.loads(dumps(obj))
    target = copy
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = value
    return dumps(copy)


BATCH = [TAG_BATCH, *batch_obj(batch())]
ACK = [TAG_BATCH_ACK, info_obj(ack().info), 1, sig(8)]
PROOFS = [TAG_BATCH_PROOFS, [proof_obj(proof())]]
REQUEST = [TAG_BATCH_REQUEST, 12, [batch().digest]]
RESPONSE = [TAG_BATCH_RESPONSE, [batch_obj(batch())]]
INFO_IN_ACK = (1,)
INFO_IN_PROOF = (1, 0, 0)


@pytest.mark.parametrize("obj", [BATCH, ACK, PROOFS, REQUEST, RESPONSE], ids=lambda o: str(o[0]))
def test_the_unaltered_samples_decode(obj: list[Any]) -> None:
    assert encode(decode(dumps(obj))) == dumps(obj)


@pytest.mark.parametrize("obj", [BATCH, ACK, PROOFS, REQUEST, RESPONSE], ids=lambda o: str(o[0]))
def test_batch_messages_with_a_field_too_many_or_too_few_are_refused(obj: list[Any]) -> None:
    with pytest.raises(WrongType):
        decode(dumps(obj[:-1]))
    with pytest.raises(WrongType):
        decode(dumps([*obj, 0]))


def _info_cases(prefix: tuple[int, ...], where: str) -> list[tuple[list[Any], tuple[int, ...], Any, str]]:
    base = ACK if prefix == INFO_IN_ACK else PROOFS
    return [
        (base, (*prefix, 0), 2**16, f"{where} info author out of range"),
        (base, (*prefix, 1), 0, f"{where} info sequence zero"),
        (base, (*prefix, 1), 2**63, f"{where} info sequence out of range"),
        (base, (*prefix, 2), 2**63, f"{where} info expiry out of range"),
        (base, (*prefix, 2), b"", f"{where} info expiry as bytes"),
        (base, (*prefix, 3), bytes(31), f"{where} info digest too short"),
        (base, (*prefix, 3), bytes(33), f"{where} info digest too long"),
        (base, (*prefix, 3), None, f"{where} info digest null"),
        (base, (*prefix, 4), 0, f"{where} info tx count zero"),
        (base, (*prefix, 4), MAX_TXS_PER_BLOCK + 1, f"{where} info tx count above the batch limit"),
        (base, (*prefix, 5), 2**63, f"{where} info size out of range"),
        (base, prefix, [2, 1, 41, bytes(32), 3], f"{where} info of five fields"),
        (base, prefix, [2, 1, 41, bytes(32), 3, 6, 0], f"{where} info of seven fields"),
        (base, prefix, b"info", f"{where} info as bytes"),
    ]


MALFORMED: list[tuple[list[Any], tuple[int, ...], Any, str]] = [
    (BATCH, (1,), 2**16, "batch author out of range"),
    (BATCH, (1,), -1, "batch author negative"),
    (BATCH, (2,), 0, "batch sequence zero"),
    (BATCH, (2,), 2**63, "batch sequence out of range"),
    (BATCH, (3,), 2**63, "batch expiry out of range"),
    (BATCH, (4,), [], "batch without transactions"),
    (BATCH, (4,), None, "batch transactions null"),
    (BATCH, (4,), b"tx", "batch transactions as bytes"),
    (BATCH, (4,), [b"a", 1], "batch transaction as an integer"),
    (BATCH, (4,), [b""] * (MAX_TXS_PER_BLOCK + 1), "batch of too many transactions"),
    (BATCH, (4,), [bytes(MAX_TX_SIZE_BYTES + 1)], "batch transaction too large"),
    *_info_cases(INFO_IN_ACK, "ack"),
    (ACK, (2,), 2**16, "ack author out of range"),
    (ACK, (3,), sig(8)[:-1], "ack signature too short"),
    (ACK, (3,), sig(8) + b"\x00", "ack signature too long"),
    (ACK, (3,), None, "ack signature null"),
    *_info_cases(INFO_IN_PROOF, "proof"),
    (PROOFS, (1,), [proof_obj(proof())] * (MAX_BATCHES_PER_BLOCK + 1), "too many proofs"),
    (PROOFS, (1,), None, "proofs null"),
    (PROOFS, (1, 0), [info_obj(proof().info)], "proof of one field"),
    (PROOFS, (1, 0), [*proof_obj(proof()), []], "proof of three fields"),
    (PROOFS, (1, 0, 1), None, "proof signatures null"),
    (PROOFS, (1, 0, 1), [[i, sig(i)] for i in range(MAX_SIGNATURES + 1)], "too many proof signatures"),
    (PROOFS, (1, 0, 1, 0), [0], "proof signature pair of one field"),
    (PROOFS, (1, 0, 1, 0), [0, sig(0), 0], "proof signature pair of three fields"),
    (PROOFS, (1, 0, 1, 0, 0), 2**16, "proof signer out of range"),
    (PROOFS, (1, 0, 1, 0, 1), bytes(SIGNATURE_SIZE_BYTES - 1), "proof signature too short"),
    (PROOFS, (1, 0, 1, 0, 1), bytes(SIGNATURE_SIZE_BYTES + 1), "proof signature too long"),
    (REQUEST, (1,), 2**63, "request height out of range"),
    (REQUEST, (1,), None, "request height null"),
    (REQUEST, (2,), [], "request for no batch"),
    (REQUEST, (2,), [bytes(32)] * (MAX_BATCHES_PER_BLOCK + 1), "request for too many batches"),
    (REQUEST, (2, 0), bytes(31), "request digest too short"),
    (REQUEST, (2, 0), bytes(33), "request digest too long"),
    (REQUEST, (2, 0), 5, "request digest as an integer"),
    (RESPONSE, (1,), [batch_obj(batch())] * (MAX_BATCHES_PER_BLOCK + 1), "too many batches"),
    (RESPONSE, (1,), None, "response batches null"),
    (RESPONSE, (1, 0), [TAG_BATCH, *batch_obj(batch())], "response batch with its tag"),
    (RESPONSE, (1, 0), batch_obj(batch())[:3], "response batch of three fields"),
    (RESPONSE, (1, 0, 1), 0, "response batch sequence zero"),
    (RESPONSE, (1, 0, 3), [], "response batch without transactions"),
    (RESPONSE, (1, 0, 3), [bytes(MAX_TX_SIZE_BYTES + 1)], "response batch transaction too large"),
]


@pytest.mark.parametrize(("obj", "path", "value", "what"), MALFORMED, ids=[case[3] for case in MALFORMED])
def test_each_malformed_field_is_refused(
    obj: list[Any], path: tuple[int, ...], value: Any, what: str
) -> None:
    with pytest.raises(WrongType):
        decode(_with(obj, path, value))


def test_field_boundaries_are_exact() -> None:
    assert decode(_with(BATCH, (1,), MAX_INDEX))
    assert decode(_with(BATCH, (2,), 1))
    assert decode(_with(BATCH, (2,), MAX_UINT))
    assert decode(_with(BATCH, (3,), 0))
    assert decode(_with(BATCH, (4,), [b""] * MAX_TXS_PER_BLOCK))
    assert decode(_with(ACK, (1, 4), MAX_TXS_PER_BLOCK))
    assert decode(_with(ACK, (1, 5), 0))
    assert decode(_with(ACK, (2,), MAX_INDEX))
    assert decode(_with(PROOFS, (1, 0, 1), [[i, sig(i)] for i in range(MAX_SIGNATURES)]))
    assert decode(_with(REQUEST, (1,), MAX_UINT))


def test_unsorted_and_duplicate_proof_signers_reach_verification() -> None:
    # As for certificates: the wire checks shapes, verification checks signers.
    p = BatchProof(
        batch().info, ((ValidatorIndex(2), sig(1)), (ValidatorIndex(2), sig(1)), (ValidatorIndex(0), sig(2)))
    )
    assert decode(encode(BatchProofs((p,)))) == BatchProofs((p,))


# ---------------------------------------------------------------------------------------------
# Size bounds


def _widest_info(tx_count: int = MAX_TXS_PER_BLOCK) -> BatchInfo:
    return BatchInfo(ValidatorIndex(MAX_INDEX), MAX_UINT, MAX_UINT, b"\xff" * 32, tx_count, MAX_UINT)


def _widest_proof(signers: int) -> BatchProof:
    return BatchProof(
        _widest_info(), tuple((ValidatorIndex(MAX_INDEX), b"\xff" * 64) for _ in range(signers))
    )


@pytest.mark.parametrize("signers", [0, 1, 3, 100, MAX_SIGNATURES])
def test_the_proof_size_bound_holds_for_the_widest_proofs(signers: int) -> None:
    assert len(dumps(batch_proof_array(_widest_proof(signers)))) <= batch_proof_size_bound(signers)


@SETTINGS
@given(_blocks)
def test_block_size_bound_covers_blocks_with_proofs(b: Block) -> None:
    assert len(encode_block(b)) <= block_size_bound(b)


@SETTINGS
@given(st.lists(_batches, max_size=5))
def test_batch_size_bound_covers_the_message_and_its_place_in_a_response(batches: list[Batch]) -> None:
    for b in batches:
        assert len(encode(b)) <= batch_size_bound(b)
    # What a response adds to its batches is what its budget leaves out of the message limit.
    overhead = MAX_MESSAGE_SIZE_BYTES - batch_response_budget_bytes()
    size = sum(batch_size_bound(b) for b in batches)
    assert len(encode(BatchResponse(tuple(batches)))) <= overhead + size


def test_the_block_size_bound_counts_each_proofs_signatures() -> None:
    few = replace(block(), batches=(proof(1, signers=(0,)),))
    many = replace(block(), batches=(proof(1, signers=(0, 1, 2, 3)),))
    assert block_size_bound(few) > block_size_bound(block())
    assert block_size_bound(many) - block_size_bound(few) >= 3 * (SIGNATURE_SIZE_BYTES + 2)
    widest = replace(block(), batches=tuple(_widest_proof(7) for _ in range(5)))
    assert len(encode_block(widest)) <= block_size_bound(widest)


def _widest_block(max_block_bytes: int, max_block_txs: int, validators: int, max_block_batches: int) -> Block:
    """A block at these limits with every field at its widest encoding."""
    per_tx, extra = divmod(max_block_bytes, max_block_txs)
    txs = tuple(b"\xff" * (per_tx + (1 if i < extra else 0)) for i in range(max_block_txs))
    signers = tuple((ValidatorIndex(MAX_INDEX), b"\xff" * 64) for _ in range(validators))
    return Block(
        view=View(MAX_UINT),
        height=MAX_UINT,
        parent_id=BlockId(b"\xff" * 32),
        proposer=ValidatorIndex(MAX_INDEX),
        qc=QuorumCert(View(MAX_UINT), BlockId(b"\xff" * 32), signers),
        txs=txs,
        app_height=MAX_UINT,
        app_hash=b"\xff" * MAX_APP_HASH_SIZE_BYTES,
        batches=tuple(_widest_proof(validators) for _ in range(max_block_batches)),
    )


@pytest.mark.parametrize(
    ("max_block_bytes", "max_block_txs", "validators", "max_block_batches"),
    [(1, 1, 1, 1), (1000, 10, 4, 3), (5000, 50, 7, 20), (100, 2, 31, MAX_BATCHES_PER_BLOCK)],
)
def test_max_block_size_bound_covers_the_widest_block_with_proofs(
    max_block_bytes: int, max_block_txs: int, validators: int, max_block_batches: int
) -> None:
    b = _widest_block(max_block_bytes, max_block_txs, validators, max_block_batches)
    bound = max_block_size_bound(max_block_bytes, max_block_txs, validators, max_block_batches)
    assert block_size_bound(b) <= bound
    assert len(encode_block(b)) <= bound


def test_the_block_limit_defaults_are_unchanged_without_proofs() -> None:
    assert max_block_size_bound(1000, 10, 4) == max_block_size_bound(1000, 10, 4, 0)
    assert max_block_size_bound(1000, 10, 4, 1) > max_block_size_bound(1000, 10, 4)
    assert check_block_limits(1_000_000, 1000, 4) is None
    assert check_block_limits(1_000_000, 1000, 4, max_block_batches=MAX_BATCHES_PER_BLOCK) is None


@pytest.mark.parametrize("max_block_batches", [-1, MAX_BATCHES_PER_BLOCK + 1, 10_000])
def test_check_block_limits_refuses_more_proofs_than_the_wire_allows(max_block_batches: int) -> None:
    reason = check_block_limits(1000, 10, 4, max_block_batches=max_block_batches)
    assert reason is not None and "max_block_batches" in reason


def test_check_block_limits_counts_the_proofs() -> None:
    # Blocks that just fit without proofs no longer fit with them.
    validators = 100
    fits = max(
        size
        for size in range(MAX_MESSAGE_SIZE_BYTES - 200_000, MAX_MESSAGE_SIZE_BYTES, 1000)
        if check_block_limits(size, 10, validators) is None
    )
    reason = check_block_limits(fits, 10, validators, max_block_batches=MAX_BATCHES_PER_BLOCK)
    assert reason is not None and f"{MAX_BATCHES_PER_BLOCK} proofs" in reason
    assert check_block_limits(fits, 10, validators, MAX_MESSAGE_SIZE_BYTES, 0) is None


def test_a_response_with_the_largest_accepted_block_with_proofs_fits() -> None:
    validators, txs, batches = 7, 8, 40
    limit = 1_000_000
    assert check_block_limits(limit, txs, validators, max_block_batches=batches) is None
    b = _widest_block(limit, txs, validators, batches)
    qc = QuorumCert(
        View(MAX_UINT), b.id, tuple((ValidatorIndex(MAX_INDEX), b"\xff" * 64) for _ in range(validators))
    )
    assert block_size_bound(b) <= response_budget_bytes(validators)
    data = encode(SyncResponse((b,), qc))
    assert len(data) <= MAX_MESSAGE_SIZE_BYTES
    assert decode(data) == SyncResponse((b,), qc)


def test_check_batch_limits() -> None:
    assert check_batch_limits(256 * 1024, 500) is None
    assert check_batch_limits(1, 1) is None
    for txs in (0, MAX_TXS_PER_BLOCK + 1):
        reason = check_batch_limits(1000, txs)
        assert reason is not None and "max_batch_txs" in reason
    reason = check_batch_limits(0, 10)
    assert reason is not None and "max_batch_bytes" in reason
    reason = check_batch_limits(MAX_MESSAGE_SIZE_BYTES, 8)
    assert reason is not None and str(MAX_MESSAGE_SIZE_BYTES) in reason
    assert check_batch_limits(1000, 10, max_size_bytes=1000) is not None


def test_the_largest_batch_check_batch_limits_accepts_fits_a_message() -> None:
    txs = 8
    low, high = 1, MAX_MESSAGE_SIZE_BYTES
    while low < high:  # the largest max_batch_bytes accepted with 8 transactions
        mid = (low + high + 1) // 2
        low, high = (mid, high) if check_batch_limits(mid, txs) is None else (low, mid - 1)
    assert check_batch_limits(low + 1, txs) is not None
    assert low > MAX_MESSAGE_SIZE_BYTES - 1000
    per_tx, extra = divmod(low, txs)
    assert per_tx + 1 <= MAX_TX_SIZE_BYTES
    b = Batch(
        ValidatorIndex(MAX_INDEX),
        MAX_UINT,
        MAX_UINT,
        tuple(b"\xff" * (per_tx + (1 if i < extra else 0)) for i in range(txs)),
    )
    assert b.size_bytes == low
    assert batch_size_bound(b) <= max_batch_size_bound(low, txs)
    for msg in (b, BatchResponse((b,))):
        data = encode(msg)
        assert len(data) <= MAX_MESSAGE_SIZE_BYTES
        assert decode(data) == msg


@SETTINGS
@given(st.lists(_proofs, max_size=4))
def test_generated_batch_proofs_round_trip(proofs: list[BatchProof]) -> None:
    msg = BatchProofs(tuple(proofs))
    assert decode(encode(msg)) == msg
