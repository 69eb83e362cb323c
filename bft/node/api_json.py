"""The HTTP API's JSON shapes of the core's values, shared by the node (which writes them) and the
client (which writes them back, e.g. `bft block`).

Owns: `b64`, `qc_json`, `batch_proof_json`, `block_json` and `evidence_json` (DESIGN.md: ids and
hashes lowercase hex, binary base64), and the shapes of the operator endpoints (`health_json`,
`net_info_json`, `consensus_state_json`, `pending_txs_json`).
May not: import a web framework, do I/O, or read JSON (the client's verification does that).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from bft.core.batches import BatchProof
from bft.core.messages import Block, QuorumCert
from bft.node.health import Health
from bft.node.operator_views import CertRef, ConsensusState, NetInfo, PeerInfo, PendingTxs


class EvidenceRecord(Protocol):
    """What `evidence_json` reads (`bft.node.storage.StoredEvidence` has it)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def validator(self) -> int: ...
    @property
    def view(self) -> int: ...
    @property
    def first(self) -> bytes: ...
    @property
    def second(self) -> bytes: ...


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _signatures_json(signatures: Sequence[tuple[int, bytes]]) -> list[dict[str, Any]]:
    return [{"signer": int(s), "signature": b64(sig)} for s, sig in signatures]


def qc_json(qc: QuorumCert) -> dict[str, Any]:
    return {
        "view": int(qc.view),
        "block_id": qc.block_id.hex(),
        "signatures": _signatures_json(qc.signatures),
    }


def batch_proof_json(proof: BatchProof) -> dict[str, Any]:
    """A proof of availability: the batch's info and the acknowledgements of its signers, in the
    QC's signature shape."""
    info = proof.info
    return {
        "author": int(info.author),
        "sequence": info.sequence,
        "expiry_height": info.expiry_height,
        "digest": info.digest.hex(),
        "tx_count": info.tx_count,
        "size_bytes": info.size_bytes,
        "signatures": _signatures_json(proof.signatures),
    }


def block_json(
    block: Block,
    qc: QuorumCert | None = None,
    commit_qc: QuorumCert | None = None,
    commit_proof: Sequence[Block] | None = None,
) -> dict[str, Any]:
    """A block. For a committed block: `qc` certifies it; `commit_proof` lists the blocks above
    it, oldest first, up to the last block of a commit chain that commits it (b'' of a three-chain
    b <- b' <- b'', or b' of a two-chain b <- b', as the genesis' rule says), and `commit_qc`
    certifies that last block (an entry of a proof is written with none of these).

    A block with proofs of availability (quorum store) also has "batches", the proofs in block
    order; its "txs" are then its batches' transactions in that order if it is full (a committed
    block is), or empty if it is lean (an entry of a commit proof may be). A block without proofs
    has no "batches" key, so its JSON is as before the quorum store. Likewise "failed_leaders"
    (leader reputation, `bft.core.reputation`): the leaders its chain records as failed before
    it, ascending, only when there are any (they are in its id)."""
    doc: dict[str, Any] = {
        "height": block.height,
        "view": int(block.view),
        "id": block.id.hex(),
        "parent_id": block.parent_id.hex(),
        "proposer": int(block.proposer),
        "txs": [b64(tx) for tx in block.txs],
        "justify": qc_json(block.qc),
        "app_height": block.app_height,
        "app_hash": block.app_hash.hex(),
    }
    if block.batches:
        doc["batches"] = [batch_proof_json(p) for p in block.batches]
    if block.failed_leaders:
        doc["failed_leaders"] = [int(v) for v in block.failed_leaders]
    if qc is not None:
        doc["qc"] = qc_json(qc)
    if commit_qc is not None:
        doc["commit_qc"] = qc_json(commit_qc)
    if commit_proof is not None:
        doc["commit_proof"] = [block_json(b) for b in commit_proof]
    return doc


def evidence_json(evidence: EvidenceRecord) -> dict[str, Any]:
    """One kept equivocation: `first` and `second` are the two signed messages, each the base64
    of its wire encoding (a Vote or a Proposal, by `kind`); `seq` is the cursor for `before`."""
    return {
        "seq": evidence.seq,
        "kind": evidence.kind,
        "validator": evidence.validator,
        "view": evidence.view,
        "first": b64(evidence.first),
        "second": b64(evidence.second),
    }


def health_json(health: Health) -> dict[str, Any]:
    """`GET /health`: the verdict's fields as they are named; `reason` is null when healthy."""
    return dataclasses.asdict(health)


def _cert_ref_json(ref: CertRef) -> dict[str, Any]:
    return {"view": ref.view, "block_id": ref.block_id.hex()}


def consensus_state_json(state: ConsensusState) -> dict[str, Any]:
    """`GET /consensus_state`."""
    tc = state.last_tc
    return {
        "view": state.view,
        "time_in_view_s": round(state.time_in_view_s, 3),
        "next_deadline_in_s": None
        if state.next_deadline_in_s is None
        else round(state.next_deadline_in_s, 3),
        "leader": state.leader,
        "upcoming_leaders": [{"view": view, "leader": leader} for view, leader in state.upcoming_leaders],
        "height": state.height,
        "high_qc": _cert_ref_json(state.high_qc),
        "locked_qc": _cert_ref_json(state.locked_qc),
        "last_voted_view": state.last_voted_view,
        "last_tc": None
        if tc is None
        else {"view": tc.view, "high_qc": _cert_ref_json(tc.high_qc), "signers": list(tc.signers)},
        "timeouts": {
            "seen": list(state.timeouts_seen),
            "count": len(state.timeouts_seen),
            "sent": state.timeouts_sent,
            "quorum": state.quorum,
        },
    }


def _peer_json(peer: PeerInfo) -> dict[str, Any]:
    return {
        "index": peer.index,
        "address": peer.address,
        "connected": peer.connected,
        "dialed_by": peer.dialed_by,
        "remote": peer.remote,
        "connected_for_s": None if peer.connected_for_s is None else round(peer.connected_for_s, 3),
        "bytes_sent": peer.bytes_sent,
        "bytes_received": peer.bytes_received,
        "frames_dropped": peer.frames_dropped,
        "dropped": {
            "outgoing_full": peer.dropped_outgoing_full,
            "outgoing_expired": peer.dropped_outgoing_expired,
            "incoming": peer.dropped_incoming,
        },
        "queued_frames": peer.queued_frames,
        "queued_bytes": peer.queued_bytes,
    }


def net_info_json(info: NetInfo) -> dict[str, Any]:
    """`GET /net_info`."""
    return {
        "listening": list(info.listening),
        "n_peers": info.n_peers,
        "peers": [_peer_json(peer) for peer in info.peers],
    }


def pending_txs_json(pending: PendingTxs) -> dict[str, Any]:
    """`GET /unconfirmed_txs`: `hashes` are the oldest first, at most the asked limit."""
    return {
        "count": pending.count,
        "total_bytes": pending.size_bytes,
        "hashes": [h.hex() for h in pending.hashes],
    }
