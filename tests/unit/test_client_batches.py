"""Blocks of the quorum store through `block_json` and the client's verification, at a realistic
size (8 batches of 500 transactions of 256 bytes, real signatures): the JSON shape of "batches",
a proof-less block's JSON as before, ids recomputed without the transactions, the transactions
tied to the proofs (reordered, replaced, dropped or added ones refused although the id still
matches), proofs of availability checked for f+1 valid signers, lean commit-proof entries, and
strict parsing of malformed "batches" (always a `CertificateError`, never another exception).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Final

import pytest
from core_helpers import CHAIN, GENESIS_BLOCK, GENESIS_QC, KEYS, N, certifier, chain, qc_for, vi
from test_client import (
    _DELETE,
    CERTIFIER,
    MAIN,
    STRANGERS,
    block_doc,
    entry_doc,
    serving,
)
from test_client import (
    _set as set_field,
)

from bft.client import CertificateError, VerifiedBlock, verify_block
from bft.core import wire
from bft.core.batches import Batch, BatchInfo, BatchProof, availability_threshold
from bft.core.messages import Block, QuorumCert
from bft.core.types import ValidatorIndex, View
from bft.core.wire import MAX_BATCHES_PER_BLOCK
from bft.node.api_json import b64, batch_proof_json, block_json, qc_json
from crypto.signing import Tag, sign

BATCHES_PER_BLOCK: Final = 8
TXS_PER_BATCH: Final = 500
TX_SIZE_BYTES: Final = 256
EXPIRY_HEIGHT: Final = 100
THRESHOLD: Final = availability_threshold(N)
_SIGNER: Final = certifier()
_RNG: Final = random.Random(20240611)

# The keys of a block's JSON before the quorum store (DESIGN.md's fields, and the rest the node
# has always written), and those of a proof of availability.
PROOF_LESS_KEYS: Final = frozenset(
    {"height", "view", "id", "parent_id", "proposer", "txs", "justify", "app_height", "app_hash"}
)
COMMITTED_KEYS: Final = PROOF_LESS_KEYS | {"qc", "commit_qc", "commit_proof"}
BATCH_KEYS: Final = frozenset(
    {"author", "sequence", "expiry_height", "digest", "tx_count", "size_bytes", "signatures"}
)


def random_txs(count: int, size_bytes: int = TX_SIZE_BYTES) -> tuple[bytes, ...]:
    return tuple(_RNG.randbytes(size_bytes) for _ in range(count))


def make_batch(author: int, sequence: int, txs: tuple[bytes, ...]) -> Batch:
    return Batch(vi(author), sequence, EXPIRY_HEIGHT, txs)


def acks(info: BatchInfo, signers: Sequence[int]) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    """Real acknowledgements of `info` by `signers`, in that order."""
    signed = [_SIGNER.sign_batch_ack(KEYS[s], vi(s), info) for s in signers]
    return tuple((a.author, a.signature) for a in signed)


def prove(batch: Batch, signers: Sequence[int] | None = None) -> BatchProof:
    """A proof of availability for `batch`, by default by f+1 validators: its author and the next."""
    chosen = sorted({batch.author, (batch.author + 1) % N}) if signers is None else signers
    return BatchProof(batch.info, acks(batch.info, chosen))


def batched_block(parent: Block, view: int, proofs: Sequence[BatchProof], txs: Sequence[bytes] = ()) -> Block:
    """A child of `parent` with these proofs of availability: lean unless `txs` are given."""
    return Block(
        View(view),
        parent.height + 1,
        parent.id,
        vi(view % N),
        GENESIS_QC if parent.height == 0 else qc_for(parent),
        tuple(txs),
        app_height=parent.height,
        app_hash=bytes([view]) * 32,
        batches=tuple(proofs),
    )


def full_block(
    parent: Block, view: int, batches: Sequence[Batch], proofs: Sequence[BatchProof] = ()
) -> Block:
    """A committed block of `batches` (proved by `proofs`, by default `prove` of each), full."""
    txs = [tx for batch in batches for tx in batch.txs]
    return batched_block(parent, view, proofs or [prove(b) for b in batches], txs)


def wire_json(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as a client reads it: through JSON text, so only JSON's types survive."""
    result: dict[str, Any] = json.loads(json.dumps(doc))
    return result


def committed_doc(block: Block, above: Sequence[Block] | None = None) -> dict[str, Any]:
    """The node's JSON for committed `block`: its QC, its commit proof (by default two plain
    blocks of the next views, a three-chain) and the commit QC of the proof's last block."""
    proof = chain(block, [block.view + 1, block.view + 2]) if above is None else list(above)
    return wire_json(block_json(block, qc_for(block), qc_for(proof[-1]), proof))


BATCHES: Final = tuple(
    make_batch(i % N, 1 + i // N, random_txs(TXS_PER_BATCH)) for i in range(BATCHES_PER_BLOCK)
)
PROOFS: Final = tuple(prove(b) for b in BATCHES)
ALL_TXS: Final = tuple(tx for b in BATCHES for tx in b.txs)
BIG: Final = full_block(GENESIS_BLOCK, 1, BATCHES, PROOFS)
BIG_DOC: Final = committed_doc(BIG)

# A small block with proofs, for the tables of malformed fields.
SMALL_BATCHES: Final = (make_batch(1, 1, random_txs(3, 40)), make_batch(2, 1, random_txs(2, 40)))
SMALL: Final = full_block(GENESIS_BLOCK, 1, SMALL_BATCHES)


def verified(doc: dict[str, Any]) -> VerifiedBlock:
    return verify_block(doc, CERTIFIER)


# The JSON shape


def test_a_batched_block_keeps_every_field_and_adds_its_proofs() -> None:
    doc = BIG_DOC
    assert set(doc) == COMMITTED_KEYS | {"batches"}
    assert (doc["height"], doc["view"], doc["id"], doc["parent_id"]) == (
        1,
        1,
        BIG.id.hex(),
        GENESIS_BLOCK.id.hex(),
    )
    assert doc["txs"] == [b64(tx) for tx in ALL_TXS] and len(doc["txs"]) == 8 * 500
    assert doc["app_hash"] == BIG.app_hash.hex() and doc["qc"]["block_id"] == BIG.id.hex()
    assert len(doc["batches"]) == BATCHES_PER_BLOCK
    for entry, batch, proof in zip(doc["batches"], BATCHES, PROOFS, strict=True):
        assert set(entry) == BATCH_KEYS
        assert entry == {
            "author": batch.author,
            "sequence": batch.sequence,
            "expiry_height": EXPIRY_HEIGHT,
            "digest": batch.digest.hex(),
            "tx_count": TXS_PER_BATCH,
            "size_bytes": TXS_PER_BATCH * TX_SIZE_BYTES,
            "signatures": [{"signer": s, "signature": b64(sig)} for s, sig in proof.signatures],
        }
        assert len(entry["signatures"]) == THRESHOLD


def test_proofs_are_written_like_qc_signatures() -> None:
    proof = PROOFS[3]
    as_qc = qc_json(QuorumCert(View(1), BIG.id, proof.signatures))
    assert batch_proof_json(proof)["signatures"] == as_qc["signatures"]
    assert batch_proof_json(proof)["digest"] == proof.info.digest.hex()


@pytest.mark.parametrize("block", MAIN[1:], ids=lambda b: f"height-{b.height}")
def test_a_proof_less_block_writes_exactly_the_json_it_always_did(block: Block) -> None:
    at = MAIN.index(block)
    above = MAIN[at + 1 : at + 3]
    if len(above) < 2:
        above = tuple(chain(block, [block.view + 1, block.view + 2]))
    written = wire_json(block_json(block, qc_for(block), qc_for(above[-1]), above))
    assert written == block_doc(block, proof=above)
    assert set(written) == COMMITTED_KEYS and "batches" not in written
    assert all(set(entry) == PROOF_LESS_KEYS for entry in written["commit_proof"])
    assert wire_json(block_json(block)) == entry_doc(block)


def test_commit_proof_entries_carry_their_proofs_lean_or_full() -> None:
    lean = batched_block(BIG, 2, [prove(make_batch(3, 9, random_txs(4)))])
    batch = make_batch(0, 9, random_txs(5))
    full = full_block(lean, 3, [batch])
    doc = committed_doc(BIG, [lean, full])
    first, second = doc["commit_proof"]
    assert first["txs"] == [] and [p["sequence"] for p in first["batches"]] == [9]
    assert second["txs"] == [b64(tx) for tx in batch.txs]
    assert second["batches"] == [batch_proof_json(full.batches[0])]


# Round trips


def test_a_big_batched_block_round_trips_through_the_client() -> None:
    with serving(BIG_DOC).client() as client:
        got = client.block(1)
    assert got is not None and got.proven_committed and got.commit_height == 1
    assert got.block == BIG and got.id == BIG.id.hex()
    assert got.txs == ALL_TXS and got.batches == PROOFS
    assert got.commit_proof == tuple(chain(BIG, [2, 3]))
    assert wire_json(got.to_json()) == BIG_DOC
    assert verified(got.to_json()) == got


def test_the_id_of_a_batched_block_leaves_its_transactions_out() -> None:
    lean = batched_block(GENESIS_BLOCK, 1, PROOFS)
    assert lean.id == BIG.id and lean.txs == () and BIG.txs == ALL_TXS
    assert BIG_DOC["id"] == lean.id.hex()


def test_reading_unverified_checks_the_transactions_but_not_the_signatures() -> None:
    got = verify_block(BIG_DOC, None)
    assert got.block == BIG and got.commit_height is None
    doc = copy.deepcopy(BIG_DOC)
    doc["txs"][0], doc["txs"][1] = doc["txs"][1], doc["txs"][0]
    with pytest.raises(CertificateError, match="txs are not the block's batches"):
        verify_block(doc, None)


def test_lean_commit_proof_entries_verify_by_their_ids() -> None:
    lean_1 = batched_block(BIG, 2, [prove(make_batch(3, 9, random_txs(4)))])
    lean_2 = batched_block(
        lean_1, 3, [prove(make_batch(1, 9, random_txs(6))), prove(make_batch(2, 9, (b"x",)))]
    )
    got = verified(committed_doc(BIG, [lean_1, lean_2]))
    assert got.commit_proof == (lean_1, lean_2) and got.commit_height == 1


def test_a_full_commit_proof_entry_verifies() -> None:
    above = full_block(BIG, 2, [make_batch(2, 7, random_txs(9))])
    got = verified(committed_doc(BIG, [above, *chain(above, [3])]))
    assert got.commit_proof[0] == above and got.commit_height == 1


@pytest.mark.parametrize("signers", [(0, 1), (2, 3), (0, 1, 2), (3, 2, 1, 0)], ids=str)
def test_any_f_plus_1_or_more_signers_make_a_proof(signers: tuple[int, ...]) -> None:
    batches = list(SMALL_BATCHES)
    block = full_block(GENESIS_BLOCK, 1, batches, [prove(batches[0]), prove(batches[1], signers)])
    assert verified(committed_doc(block)).block == block


# Tampered transactions: the id still matches, the proofs' digests do not


def _swap(i: int, j: int) -> Callable[[list[str]], None]:
    def change(txs: list[str]) -> None:
        txs[i], txs[j] = txs[j], txs[i]

    return change


def _swap_batches(txs: list[str]) -> None:
    txs[:1000] = txs[500:1000] + txs[:500]


def _replace(txs: list[str]) -> None:
    txs[1234] = b64(random_txs(1)[0])


def _duplicate(txs: list[str]) -> None:
    txs[5] = txs[4]


def _move(txs: list[str]) -> None:
    txs.insert(2600, txs.pop(10))


def _drop_and_add(txs: list[str]) -> None:
    del txs[10]
    txs.insert(600, b64(random_txs(1)[0]))


def _truncate_one(txs: list[str]) -> None:
    txs[7] = txs[7][:-4]


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_swap(0, 1), "batch 1 of validator 0 does not match its proof"),
        (_swap(499, 500), "batch 1 of validator 0 does not match its proof"),
        (_swap(0, 3999), "batch 1 of validator 0 does not match its proof"),
        (_swap_batches, "batch 1 of validator 0 does not match its proof"),
        (lambda txs: txs.reverse(), "batch 1 of validator 0 does not match its proof"),
        (_replace, "batch 1 of validator 2 does not match its proof"),
        (_duplicate, "batch 1 of validator 0 does not match its proof"),
        (_move, "batch 1 of validator 0 does not match its proof"),
        (_drop_and_add, "batch 1 of validator 0 does not match its proof"),
        (_truncate_one, "batch 1 of validator 0 does not match its proof"),
        (lambda txs: txs.pop(), "3999 transactions where the proofs reference 4000"),
        (lambda txs: txs.pop(0), "3999 transactions where the proofs reference 4000"),
        (lambda txs: txs.append(txs[0]), "4001 transactions where the proofs reference 4000"),
        (lambda txs: txs.extend(txs[:500]), "4500 transactions where the proofs reference 4000"),
    ],
    ids=[
        "swap-in-a-batch",
        "swap-across-batches",
        "swap-first-and-last",
        "swap-two-batches",
        "reverse",
        "replace-one",
        "duplicate-one",
        "move-one",
        "drop-one-add-one",
        "shorten-one",
        "drop-last",
        "drop-first",
        "add-one",
        "add-a-batch",
    ],
)
def test_tampered_transactions_are_refused_although_the_id_matches(
    change: Callable[[list[str]], None], complaint: str
) -> None:
    doc = copy.deepcopy(BIG_DOC)
    change(doc["txs"])
    with serving(doc).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    message = str(info.value)
    assert message.startswith("block 1: txs are not the block's batches: ") and complaint in message
    assert "is not the hash" not in message


def test_a_committed_block_without_its_transactions_is_refused() -> None:
    doc = copy.deepcopy(BIG_DOC)
    doc["txs"] = []
    with pytest.raises(CertificateError) as info:
        verified(doc)
    assert str(info.value).startswith(
        "block: txs is empty: a committed block carries its batches' transactions (8 proofs of availability: "
        "0 transactions where the proofs reference 4000)"
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda txs: txs.pop(),
        _swap(0, 1),
        lambda txs: txs.__setitem__(slice(None), txs[:4]),
    ],
    ids=["drop-one", "swap", "another-batch"],
)
def test_a_tampered_full_commit_proof_entry_is_refused(change: Callable[[list[str]], None]) -> None:
    above = full_block(BIG, 2, [make_batch(2, 7, random_txs(9))])
    doc = committed_doc(BIG, [above, *chain(above, [3])])
    change(doc["commit_proof"][0]["txs"])
    with pytest.raises(CertificateError, match=r"commit_proof\[0\]\.txs are not the block's batches"):
        verified(doc)


def test_stripping_the_proofs_does_not_make_a_proof_less_block() -> None:
    doc = copy.deepcopy(BIG_DOC)
    del doc["batches"]
    with pytest.raises(CertificateError, match="is not the hash of the block's contents"):
        verified(doc)


@pytest.mark.parametrize(
    "change",
    [
        set_field("batches.0.tx_count", 499),
        set_field("batches.0.size_bytes", 1),
        set_field("batches.0.sequence", 2),
        set_field("batches.0.author", 3),
        set_field("batches.0.expiry_height", 1),
        set_field("batches.0.digest", "00" * 32),
        set_field("batches.0.signatures", []),
        lambda doc: doc["batches"].reverse(),
        lambda doc: doc["batches"].pop(),
    ],
)
def test_changed_proofs_change_the_id(change: Callable[[dict[str, Any]], None]) -> None:
    doc = copy.deepcopy(BIG_DOC)
    change(doc)
    with pytest.raises(CertificateError, match="is not the hash of the block's contents"):
        verified(doc)


# Proofs of availability without f+1 valid acknowledgements


def _forged(info: BatchInfo) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    return tuple(
        (vi(i), sign(STRANGERS[i], Tag.BATCH_ACK, CHAIN, wire.batch_ack_signing_payload(info)))
        for i in (1, 2)
    )


def _of_another_batch(info: BatchInfo) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    return acks(SMALL_BATCHES[0].info, [1, 2])


def _with_another_tag(info: BatchInfo) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    payload = wire.batch_ack_signing_payload(info)
    return (*acks(info, [1]), (vi(2), sign(KEYS[2], Tag.VOTE, CHAIN, payload)))


def _of_another_chain(info: BatchInfo) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    other = certifier("another-chain")
    return tuple((vi(s), other.sign_batch_ack(KEYS[s], vi(s), info).signature) for s in (1, 2))


def _unknown_signer(info: BatchInfo) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    ((_, sig),) = acks(info, [1])
    return (*acks(info, [2]), (ValidatorIndex(7), sig))


@pytest.mark.parametrize(
    ("signatures_of", "complaint"),
    [
        (lambda info: acks(info, [2]), "1 distinct signers, need 2"),
        (lambda info: (), "0 distinct signers, need 2"),
        (lambda info: acks(info, [2, 2]), "duplicate signer 2"),
        (lambda info: acks(info, [2, 2, 2]), "duplicate signer 2"),
        (_unknown_signer, "unknown signer 7"),
        (_forged, "bad signature from validator 1"),
        (_of_another_batch, "bad signature from validator 1"),
        (_with_another_tag, "bad signature from validator 2"),
        (_of_another_chain, "bad signature from validator 1"),
        (lambda info: ((vi(1), b"\x00" * 64), *acks(info, [2])), "bad signature from validator 1"),
        (lambda info: ((vi(1), b""), *acks(info, [2])), "bad signature from validator 1"),
    ],
    ids=[
        "one-signer",
        "no-signer",
        "duplicate",
        "one-signer-thrice",
        "unknown-signer",
        "forged",
        "of-another-batch",
        "vote-tag",
        "another-chain",
        "zero-signature",
        "empty-signature",
    ],
)
def test_a_proof_without_f_plus_1_valid_signers_is_refused(
    signatures_of: Callable[[BatchInfo], tuple[tuple[ValidatorIndex, bytes], ...]], complaint: str
) -> None:
    good, bad = SMALL_BATCHES
    block = full_block(
        GENESIS_BLOCK, 1, SMALL_BATCHES, [prove(good), BatchProof(bad.info, signatures_of(bad.info))]
    )
    doc = committed_doc(block)  # a consistent block, certified by a real QC: only the proof is wrong
    with serving(doc).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    assert str(info.value) == (
        "block 1: batches[1] (batch 1 of validator 2) does not verify against the genesis validators: "
        + complaint
    )
    unverified = verify_block(doc, None)
    assert unverified.block == block and unverified.commit_height is None


# Malformed "batches": a clear refusal naming the field, never another exception

_BAD_PARSES: Final = [
    ("batches", None, "batches is null, not an array"),
    ("batches", {}, "batches is an object, not an array"),
    ("batches", "proofs", "batches is a string, not an array"),
    ("batches", [], "batches is empty"),
    ("batches.0", 5, r"batches\[0\] is int, not a JSON object"),
    ("batches.1", None, r"batches\[1\] is null, not a JSON object"),
    ("batches.0", [], r"batches\[0\] is an array, not a JSON object"),
    *[(f"batches.0.{key}", _DELETE, rf"batches\[0\]\.{key} is missing") for key in sorted(BATCH_KEYS)],
    ("batches.0.author", "1", r"batches\[0\]\.author is '1', not a non-negative integer"),
    ("batches.0.author", True, r"batches\[0\]\.author is True, not a non-negative integer"),
    ("batches.0.author", -1, r"batches\[0\]\.author is -1, not a non-negative integer"),
    ("batches.0.author", 1.0, r"batches\[0\]\.author is 1\.0, not a non-negative integer"),
    ("batches.0.sequence", None, r"batches\[0\]\.sequence is None, not a non-negative integer"),
    ("batches.0.expiry_height", 2**63, r"batches\[0\]\.expiry_height is 9223372036854775808, not a"),
    ("batches.1.tx_count", [2], r"batches\[1\]\.tx_count is \[2\], not a non-negative integer"),
    ("batches.1.size_bytes", "80", r"batches\[1\]\.size_bytes is '80', not a non-negative integer"),
    ("batches.0.digest", 5, r"batches\[0\]\.digest is int, not a string"),
    ("batches.0.digest", None, r"batches\[0\]\.digest is null, not a string"),
    ("batches.0.digest", "zz" * 32, r"batches\[0\]\.digest is 'zzzz.*, not lowercase hex"),
    ("batches.0.digest", "AB" * 32, r"batches\[0\]\.digest is 'ABAB.*, not lowercase hex"),
    ("batches.0.digest", "abc", r"batches\[0\]\.digest is 'abc', not lowercase hex"),
    ("batches.0.digest", "00" * 31, r"batches\[0\]\.digest is 31 bytes, not 32"),
    ("batches.0.digest", "00" * 33, r"batches\[0\]\.digest is 33 bytes, not 32"),
    ("batches.0.digest", "", r"batches\[0\]\.digest is 0 bytes, not 32"),
    ("batches.0.signatures", None, r"batches\[0\]\.signatures is null, not an array"),
    ("batches.0.signatures", {}, r"batches\[0\]\.signatures is an object, not an array"),
    ("batches.0.signatures.0", 1, r"batches\[0\]\.signatures\[0\] is int, not a JSON object"),
    ("batches.0.signatures.1.signer", _DELETE, r"batches\[0\]\.signatures\[1\]\.signer is missing"),
    ("batches.0.signatures.0.signer", True, r"batches\[0\]\.signatures\[0\]\.signer is True"),
    ("batches.0.signatures.0.signer", "1", r"batches\[0\]\.signatures\[0\]\.signer is '1'"),
    ("batches.0.signatures.0.signature", _DELETE, r"batches\[0\]\.signatures\[0\]\.signature is missing"),
    ("batches.0.signatures.0.signature", 7, r"batches\[0\]\.signatures\[0\]\.signature is int, not a base64"),
    (
        "batches.0.signatures.0.signature",
        "%%%",
        r"batches\[0\]\.signatures\[0\]\.signature is '%%%', not valid",
    ),
    (
        "batches.0.signatures.0.signature",
        "AAA",
        r"batches\[0\]\.signatures\[0\]\.signature is 'AAA', not valid base64",
    ),
    (
        "batches.0.signatures.0.signature",
        "AB==",
        r"batches\[0\]\.signatures\[0\]\.signature is 'AB==', not canonical base64",
    ),
    (
        "batches.0.signatures.0.signature",
        "AA AA",
        r"batches\[0\]\.signatures\[0\]\.signature is 'AA AA', not valid base64",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    _BAD_PARSES,
    # Ids that are the same in every process (pytest-xdist compares them): no object addresses.
    ids=[f"{p}-missing" if v is _DELETE else f"{p}={v!r}" for p, v, _ in _BAD_PARSES],
)
@pytest.mark.parametrize("where", ["block", "commit-proof"])
def test_malformed_batches_are_refused_naming_the_field(
    path: str, value: Any, complaint: str, where: str
) -> None:
    if where == "block":
        doc = committed_doc(SMALL)
        target = doc
    else:
        above = batched_block(BIG, 2, [prove(b) for b in SMALL_BATCHES])
        doc = committed_doc(BIG, [above, *chain(above, [3])])
        target = doc["commit_proof"][0]
        complaint = r"commit_proof\[0\]\." + complaint
    set_field(path, value)(target)
    # Without a certifier the commit proof is not read (`verify_block`), so neither are its batches.
    for checker in (CERTIFIER, None) if where == "block" else (CERTIFIER,):
        with pytest.raises(CertificateError, match=complaint):
            verify_block(doc, checker)


def test_too_many_proofs_are_refused_before_they_are_read() -> None:
    doc = committed_doc(SMALL)
    doc["batches"] = [None] * (MAX_BATCHES_PER_BLOCK + 1)
    with pytest.raises(
        CertificateError, match=f"batches lists 257 proofs, more than the {MAX_BATCHES_PER_BLOCK}"
    ):
        verified(doc)


_JUNK: Final = [None, True, False, -1, 2**64, 1.5, "", "zz", "AA==", [], [1], {}, {"signer": 0}]


@pytest.mark.parametrize("field", [*sorted(BATCH_KEYS), "signatures.0.signer", "signatures.0.signature"])
def test_no_junk_in_a_proof_gets_past_the_client(field: str) -> None:
    """Every junk value in every field of a proof is refused (malformed, or the id no longer
    matches), as a CertificateError: never a crash of another kind, never an acceptance."""
    base = committed_doc(SMALL)
    for value in _JUNK:
        for index in (0, 1):
            doc = copy.deepcopy(base)
            set_field(f"batches.{index}.{field}", value)(doc)
            for checker in (CERTIFIER, None):
                with pytest.raises(CertificateError):
                    verify_block(doc, checker)
