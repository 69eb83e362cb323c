"""The HTTP API's JSON shapes of the core's values, shared by the node (which writes them) and the
client (which writes them back, e.g. `bft block`).

Owns: `b64`, `qc_json`, `block_json` and `evidence_json` (DESIGN.md: ids and hashes lowercase
hex, binary base64).
May not: import a web framework, do I/O, or read JSON (the client's verification does that).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Protocol

from bft.core.messages import Block, QuorumCert


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


def qc_json(qc: QuorumCert) -> dict[str, Any]:
    return {
        "view": int(qc.view),
        "block_id": qc.block_id.hex(),
        "signatures": [{"signer": int(s), "signature": b64(sig)} for s, sig in qc.signatures],
    }


def block_json(
    block: Block,
    qc: QuorumCert | None = None,
    commit_qc: QuorumCert | None = None,
    commit_proof: Sequence[Block] | None = None,
) -> dict[str, Any]:
    """A block. For a committed block: `qc` certifies it; `commit_proof` lists the blocks above
    it, oldest first, up to b'' of a three-chain that commits it, and `commit_qc` certifies b''
    (an entry of a proof is written with none of these)."""
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
