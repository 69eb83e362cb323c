"""Signature and certificate checks for the core's messages.

Owns: turning votes, timeouts, proposals, QCs and TCs into the crypto layer's signed bytes,
and the verified-certificate cache.
May not: change any protocol state.
"""

from __future__ import annotations

from bft.core import wire
from bft.core.batches import BatchAck, BatchInfo, BatchProof, availability_threshold
from bft.core.messages import Block, QuorumCert, Timeout, TimeoutCert, Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import BlockId, ValidatorIndex, ValidatorSet, View
from crypto.certs import SignedShare, VerifiedCertCache, verify_quorum
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache, Tag, sign, verify


class Certifier:
    """Signs and verifies on behalf of one replica of one chain and validator set."""

    def __init__(
        self,
        chain_id: str,
        validators: ValidatorSet,
        genesis_qc: QuorumCert,
        sig_cache: SignatureCache,
    ) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self._genesis_qc = genesis_qc
        self._sig_cache = sig_cache
        self._verified = VerifiedCertCache()

    # Signing: only the safety rules sign votes and timeouts; the replica signs proposals.

    def sign_vote(self, key: PrivateKey, me: ValidatorIndex, view: View, block_id: BlockId) -> Vote:
        payload = wire.vote_signing_payload(view, block_id)
        return Vote(view, block_id, me, sign(key, Tag.VOTE, self.chain_id, payload))

    def sign_timeout(self, key: PrivateKey, me: ValidatorIndex, view: View, high_qc: QuorumCert) -> Timeout:
        payload = wire.timeout_signing_payload(view, high_qc.view)
        return Timeout(view, high_qc, me, sign(key, Tag.TIMEOUT, self.chain_id, payload))

    def sign_proposal(self, key: PrivateKey, block: Block) -> bytes:
        return sign(key, Tag.PROPOSAL, self.chain_id, wire.proposal_signing_payload(block.id))

    def sign_batch_ack(self, key: PrivateKey, me: ValidatorIndex, info: BatchInfo) -> BatchAck:
        """Our acknowledgement that we stored the batch `info` describes (the quorum store signs
        it only after the batch is durable)."""
        return BatchAck(
            info, me, sign(key, Tag.BATCH_ACK, self.chain_id, wire.batch_ack_signing_payload(info))
        )

    # Verification: each returns None when valid, else the Refused verdict: a bad vote, timeout
    # or proposal signature is UNKNOWN_SIGNER or BAD_SIGNATURE, a bad QC BAD_QC, a bad TC BAD_TC.

    def check_vote(self, vote: Vote) -> Refused | None:
        payload = wire.vote_signing_payload(vote.view, vote.block_id)
        return self._check_one(vote.author, Tag.VOTE, payload, vote.signature)

    def check_timeout(self, timeout: Timeout) -> Refused | None:
        payload = wire.timeout_signing_payload(timeout.view, timeout.high_qc.view)
        return self._check_one(timeout.author, Tag.TIMEOUT, payload, timeout.signature)

    def check_proposal_signature(self, block: Block, signature: bytes) -> Refused | None:
        payload = wire.proposal_signing_payload(block.id)
        return self._check_one(block.proposer, Tag.PROPOSAL, payload, signature)

    def check_batch_ack(self, ack: BatchAck) -> Refused | None:
        payload = wire.batch_ack_signing_payload(ack.info)
        return self._check_one(ack.author, Tag.BATCH_ACK, payload, ack.signature)

    def check_batch_proof(self, proof: BatchProof) -> Refused | None:
        """None if f+1 distinct validators signed acknowledgements of `proof.info`, else BAD_PROOF."""
        digest = wire.batch_proof_digest(proof)
        if digest in self._verified:
            return None
        payload = wire.batch_ack_signing_payload(proof.info)
        shares = [SignedShare(signer, payload, sig) for signer, sig in proof.signatures]
        keys = self.validators.public_keys
        threshold = availability_threshold(self.validators.n)
        reason = verify_quorum(keys, threshold, Tag.BATCH_ACK, self.chain_id, shares, self._sig_cache)
        if reason is None:
            self._verified.add(digest)
            return None
        return Refused(RefusalReason.BAD_PROOF, reason)

    def check_qc(self, qc: QuorumCert) -> Refused | None:
        if qc.view == 0:
            if qc == self._genesis_qc:
                return None
            return Refused(RefusalReason.BAD_QC, "a view-0 QC that is not the genesis QC")
        digest = wire.certificate_digest(qc)
        if digest in self._verified:
            return None
        payload = wire.vote_signing_payload(qc.view, qc.block_id)
        shares = [SignedShare(signer, payload, sig) for signer, sig in qc.signatures]
        reason = self._check_quorum(Tag.VOTE, shares)
        if reason is None:
            self._verified.add(digest)
            return None
        return Refused(RefusalReason.BAD_QC, reason)

    def check_tc(self, tc: TimeoutCert) -> Refused | None:
        digest = wire.certificate_digest(tc)
        if digest in self._verified:
            return None
        high_qc_views = [hv for _, hv, _ in tc.signatures]
        if not high_qc_views or max(high_qc_views) != tc.high_qc.view:
            return Refused(RefusalReason.BAD_TC, "TC's high QC is not the highest its signers reported")
        if any(hv >= tc.view for hv in high_qc_views):
            return Refused(RefusalReason.BAD_TC, "TC reports a high QC not below its view")
        refused = self.check_qc(tc.high_qc)
        if refused is not None:
            return Refused(RefusalReason.BAD_TC, f"TC's high QC: {refused.detail}")
        shares = [
            SignedShare(signer, wire.timeout_signing_payload(tc.view, hv), sig)
            for signer, hv, sig in tc.signatures
        ]
        reason = self._check_quorum(Tag.TIMEOUT, shares)
        if reason is None:
            self._verified.add(digest)
            return None
        return Refused(RefusalReason.BAD_TC, reason)

    def _check_quorum(self, tag: Tag, shares: list[SignedShare]) -> str | None:
        keys = self.validators.public_keys
        return verify_quorum(keys, self.validators.quorum, tag, self.chain_id, shares, self._sig_cache)

    def _check_one(self, signer: int, tag: Tag, payload: bytes, signature: bytes) -> Refused | None:
        if not self.validators.contains(signer):
            return Refused(RefusalReason.UNKNOWN_SIGNER, f"unknown signer {signer}")
        key = self.validators.public_keys[signer]
        if verify(key, tag, self.chain_id, payload, signature, self._sig_cache):
            return None
        return Refused(RefusalReason.BAD_SIGNATURE, f"bad signature from validator {signer}")
