"""QC and TC verification (`bft.core.certs.Certifier`), including the verified-certificate cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from core_helpers import (
    CHAIN,
    GENESIS_BLOCK,
    GENESIS_QC,
    KEYS,
    certifier,
    make_block,
    make_qc,
    make_tc,
    sign_timeout,
    sign_vote,
    vi,
)

from bft.core import certs as core_certs
from bft.core.blocktree import genesis
from bft.core.messages import QuorumCert, TimeoutCert
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import BlockId, View
from crypto import signing
from crypto.certs import verify_quorum
from crypto.signing import SignatureCache

B1 = make_block(GENESIS_BLOCK, 1)
B2 = make_block(B1, 2)


def refused(verdict: Refused | None, *words: str) -> RefusalReason:
    assert verdict is not None, "expected a refusal"
    for word in words:
        assert word in verdict.detail, f"{word!r} not in {verdict.detail!r}"
    return verdict.reason


@pytest.fixture
def quorum_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts full quorum verifications done by the core's Certifier."""
    calls: list[int] = []
    real = verify_quorum

    def counting(*args: Any, **kwargs: Any) -> str | None:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(core_certs, "verify_quorum", counting)
    return calls


@pytest.fixture
def ed25519_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real: Callable[[bytes, bytes, bytes], bool] = signing._ed25519_verify

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(public_key)
        return real(public_key, message, signature)

    monkeypatch.setattr(signing, "_ed25519_verify", counting)
    return calls


# --- QCs -----------------------------------------------------------------------------------------


def test_valid_qc_accepted_with_any_quorum_of_signers() -> None:
    c = certifier()
    for signers in [(0, 1, 2), (1, 2, 3), (0, 2, 3), (0, 1, 2, 3)]:
        assert c.check_qc(make_qc(B1.id, 1, signers)) is None


def test_qc_with_a_duplicated_signer_is_refused() -> None:
    good = make_qc(B1.id, 1, (0, 1, 2))
    (s0, s1, _) = good.signatures
    # Validator 1's valid signature repeated to reach the quorum of 3.
    for sigs in [(s0, s1, s1), (s0, s0, s1), (s1, s1, s1)]:
        refused(certifier().check_qc(QuorumCert(good.view, good.block_id, sigs)), "duplicate")
    # Also when there are enough distinct signers besides the repeat.
    full = make_qc(B1.id, 1, (0, 1, 2, 3))
    repeated = (*full.signatures, full.signatures[3])
    refused(certifier().check_qc(QuorumCert(full.view, full.block_id, repeated)), "duplicate")


def test_qc_with_fewer_than_a_quorum_is_refused() -> None:
    c = certifier()
    refused(c.check_qc(make_qc(B1.id, 1, (0, 1))), "need 3")
    refused(c.check_qc(make_qc(B1.id, 1, ())))


def test_qc_with_an_unknown_signer_is_refused() -> None:
    good = make_qc(B1.id, 1, (0, 1, 2))
    stranger = good.signatures[2][1]
    for signer in (4, 99):
        sigs = (*good.signatures[:2], (vi(signer), stranger))
        refused(certifier().check_qc(QuorumCert(good.view, good.block_id, sigs)), "unknown signer")


def test_qc_signed_for_another_chain_is_refused() -> None:
    foreign = make_qc(B1.id, 1, (0, 1, 2), chain_id="another-chain")
    refused(certifier().check_qc(foreign), "bad signature")
    # The same QC is valid on its own chain (same validator keys): only the chain id differs.
    other_genesis = genesis("another-chain")[1]
    assert (
        core_certs.Certifier(
            "another-chain", certifier().validators, other_genesis, SignatureCache()
        ).check_qc(foreign)
        is None
    )


def test_qc_signatures_over_another_block_or_view_are_refused() -> None:
    good = make_qc(B1.id, 1)
    refused(certifier().check_qc(QuorumCert(good.view, B2.id, good.signatures)), "bad signature")
    refused(certifier().check_qc(QuorumCert(View(2), good.block_id, good.signatures)), "bad signature")
    # One bad share among good ones is enough to refuse.
    mixed = (*good.signatures[:2], (vi(2), sign_vote(2, 1, B2.id).signature))
    refused(certifier().check_qc(QuorumCert(good.view, good.block_id, mixed)), "bad signature")


def test_qc_with_timeout_signatures_is_refused() -> None:
    # Timeouts sign (view, high QC view): a different tag and payload, never a vote.
    sigs = tuple((vi(s), sign_timeout(s, 1, GENESIS_QC).signature) for s in (0, 1, 2))
    refused(certifier().check_qc(QuorumCert(View(1), B1.id, sigs)), "bad signature")


def test_genesis_qc_accepted_only_in_its_exact_form() -> None:
    c = certifier()
    assert c.check_qc(GENESIS_QC) is None
    assert c.check_qc(QuorumCert(View(0), GENESIS_BLOCK.id, ())) is None
    refused(c.check_qc(QuorumCert(View(0), B1.id, ())), "genesis")
    refused(c.check_qc(genesis("another-chain")[1]), "genesis")
    sig = sign_vote(0, 0, GENESIS_BLOCK.id).signature
    refused(c.check_qc(QuorumCert(View(0), GENESIS_BLOCK.id, ((vi(0), sig),))), "genesis")
    # A real quorum over view 0 is still not the genesis QC.
    refused(c.check_qc(make_qc(GENESIS_BLOCK.id, 0, (0, 1, 2))), "genesis")


def test_valid_qc_is_served_from_the_verified_cache(
    quorum_calls: list[int], ed25519_calls: list[bytes]
) -> None:
    c = certifier()
    qc = make_qc(B1.id, 1)
    assert c.check_qc(qc) is None
    assert (len(quorum_calls), len(ed25519_calls)) == (1, 3)
    for _ in range(5):
        assert c.check_qc(qc) is None
        # An equal QC built separately hits the same entry.
        assert c.check_qc(QuorumCert(qc.view, qc.block_id, tuple(qc.signatures))) is None
    assert (len(quorum_calls), len(ed25519_calls)) == (1, 3)


def test_refused_qc_is_not_cached_and_a_cached_qc_does_not_vouch_for_a_mutant(
    quorum_calls: list[int],
) -> None:
    c = certifier()
    bad = make_qc(B1.id, 1, (0, 1))
    refused(c.check_qc(bad))
    refused(c.check_qc(bad))
    assert len(quorum_calls) == 2
    good = make_qc(B1.id, 1)
    assert c.check_qc(good) is None
    flipped = bytes([good.signatures[0][1][0] ^ 1]) + good.signatures[0][1][1:]
    mutant = QuorumCert(good.view, good.block_id, ((vi(0), flipped), *good.signatures[1:]))
    refused(c.check_qc(mutant), "bad signature")
    refused(c.check_qc(QuorumCert(good.view, B2.id, good.signatures)), "bad signature")


# --- TCs -----------------------------------------------------------------------------------------


def test_valid_tc_accepted_and_cached(quorum_calls: list[int]) -> None:
    qc1 = make_qc(B1.id, 1)
    tc = make_tc(3, {0: GENESIS_QC, 1: qc1, 2: GENESIS_QC})
    assert tc.high_qc == qc1
    c = certifier()
    assert c.check_tc(tc) is None
    calls = len(quorum_calls)
    assert calls == 2  # the high QC, then the timeout signatures
    assert c.check_tc(tc) is None
    assert len(quorum_calls) == calls


def test_tc_whose_high_qc_is_not_the_highest_reported_is_refused() -> None:
    qc1, qc2 = make_qc(B1.id, 1), make_qc(B2.id, 2)
    tc = make_tc(3, {0: qc2, 1: qc1, 2: qc1})
    # Carries a lower QC than one signer reported (hides the highest).
    refused(certifier().check_tc(TimeoutCert(tc.view, qc1, tc.signatures)), "high QC")
    # Carries a QC higher than any signer reported.
    low = make_tc(3, {0: qc1, 1: qc1, 2: GENESIS_QC})
    refused(certifier().check_tc(TimeoutCert(low.view, qc2, low.signatures)), "high QC")
    assert certifier().check_tc(tc) is None


def test_tc_whose_signers_report_a_high_qc_not_below_its_view_is_refused() -> None:
    qc3 = make_qc(make_block(B2, 3).id, 3)
    for view in (3, 2):
        tc = make_tc(view, {0: qc3, 1: qc3, 2: qc3})
        refused(certifier().check_tc(tc), "not below")


def test_tc_with_duplicate_unknown_or_too_few_signers_is_refused() -> None:
    tc = make_tc(2, {0: GENESIS_QC, 1: GENESIS_QC, 2: GENESIS_QC})
    s0, s1, _ = tc.signatures
    refused(certifier().check_tc(TimeoutCert(tc.view, tc.high_qc, (s0, s1, s1))), "duplicate")
    refused(certifier().check_tc(TimeoutCert(tc.view, tc.high_qc, (s0, s1))), "need 3")
    stranger = (vi(7), s1[1], s1[2])
    refused(certifier().check_tc(TimeoutCert(tc.view, tc.high_qc, (s0, s1, stranger))), "unknown signer")
    refused(certifier().check_tc(TimeoutCert(tc.view, tc.high_qc, ())))


def test_tc_signatures_over_another_view_or_chain_are_refused() -> None:
    tc = make_tc(2, {0: GENESIS_QC, 1: GENESIS_QC, 2: GENESIS_QC})
    refused(certifier().check_tc(TimeoutCert(View(3), tc.high_qc, tc.signatures)), "bad signature")
    other = core_certs.Certifier(
        "another-chain", certifier().validators, genesis("another-chain")[1], SignatureCache()
    )
    refused(other.check_tc(tc))


def test_tc_with_an_invalid_high_qc_is_refused() -> None:
    tc = make_tc(3, {0: GENESIS_QC, 1: GENESIS_QC, 2: GENESIS_QC})
    bad_qc = make_qc(B1.id, 1, (0, 1))
    # Signers honestly report view 1 but the QC they carry lacks a quorum.
    sigs = tuple((vi(s), View(1), sign_timeout(s, 3, bad_qc).signature) for s in (0, 1, 2))
    refused(certifier().check_tc(TimeoutCert(tc.view, bad_qc, sigs)), "high QC")


def test_vote_timeout_and_proposal_signatures_checked_per_signer() -> None:
    c = certifier()
    vote = sign_vote(1, 4, B1.id)
    assert c.check_vote(vote) is None
    refused(c.check_vote(type(vote)(vote.view, vote.block_id, vi(2), vote.signature)), "bad signature")
    refused(c.check_vote(type(vote)(vote.view, vote.block_id, vi(9), vote.signature)), "unknown signer")
    proposal_sig = c.sign_proposal(KEYS[B1.proposer], B1)
    assert c.check_proposal_signature(B1, proposal_sig) is None
    refused(c.check_proposal_signature(B2, proposal_sig), "bad signature")
    assert (
        core_certs.Certifier(CHAIN, c.validators, GENESIS_QC, SignatureCache()).check_timeout(
            sign_timeout(3, 2, GENESIS_QC)
        )
        is None
    )


def test_block_id_is_bound_to_content() -> None:
    assert B1.id != make_block(GENESIS_BLOCK, 1, txs=(b"other",)).id
    assert BlockId(B1.id) == make_block(GENESIS_BLOCK, 1).id


def test_each_check_refuses_with_its_category() -> None:
    c = certifier()
    good = make_qc(B1.id, 1)
    assert refused(c.check_qc(QuorumCert(good.view, B2.id, good.signatures))) is RefusalReason.BAD_QC
    assert refused(c.check_qc(QuorumCert(View(0), B1.id, ()))) is RefusalReason.BAD_QC
    tc = make_tc(2, {0: GENESIS_QC, 1: GENESIS_QC, 2: GENESIS_QC})
    assert refused(c.check_tc(TimeoutCert(View(3), tc.high_qc, tc.signatures))) is RefusalReason.BAD_TC
    # A TC whose high QC is bad is a bad TC, whatever is wrong with the QC.
    bad_qc = make_qc(B1.id, 1, (0, 1))
    sigs = tuple((vi(s), View(1), sign_timeout(s, 3, bad_qc).signature) for s in (0, 1, 2))
    assert refused(c.check_tc(TimeoutCert(View(3), bad_qc, sigs)), "TC's high QC") is RefusalReason.BAD_TC
    vote = sign_vote(1, 4, B1.id)
    forged = type(vote)(vote.view, vote.block_id, vi(2), vote.signature)
    assert refused(c.check_vote(forged)) is RefusalReason.BAD_SIGNATURE
    stranger = type(vote)(vote.view, vote.block_id, vi(9), vote.signature)
    assert refused(c.check_vote(stranger)) is RefusalReason.UNKNOWN_SIGNER
    verdict = c.check_vote(forged)
    assert verdict is not None and str(verdict) == verdict.detail == "bad signature from validator 2"
