"""Quorum checks over sets of signed shares, and the cache of verified certificates.

Owns: `SignedShare`, the signer rule (`check_signers`), `verify_quorum` and
`VerifiedCertCache`. May not: decode or encode certificates, decide what payload a share
must carry (QC vs TC is the caller's business), or import anything beyond the stdlib and
`cryptography`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from crypto.lru import LruSet
from crypto.signing import SignatureCache, Tag, verify


@dataclass(frozen=True, slots=True)
class SignedShare:
    """One validator's signature over its own payload.

    In a quorum certificate every share's payload is the same; in a timeout certificate
    they differ. `signer` is an index into the validator list.
    """

    signer: int
    payload: bytes
    signature: bytes


def check_signers(signers: Sequence[int], n_validators: int, quorum: int) -> str | None:
    """None if `signers` are at least `quorum` distinct indices in 0..n_validators-1.

    Otherwise a reason: "unknown signer 9", "duplicate signer 2" or
    "2 distinct signers, need 3" (the first problem found, in that order per signer).
    """
    seen: set[int] = set()
    for signer in signers:
        # bool is an int subclass; True must not pass for validator 1.
        if type(signer) is not int or not 0 <= signer < n_validators:
            return f"unknown signer {signer!r}"
        if signer in seen:
            return f"duplicate signer {signer}"
        seen.add(signer)
    if len(seen) < quorum:
        return f"{len(seen)} distinct signers, need {quorum}"
    return None


def verify_quorum(
    validators: Sequence[bytes],
    quorum: int,
    tag: Tag,
    chain_id: str,
    shares: Sequence[SignedShare],
    cache: SignatureCache | None = None,
) -> str | None:
    """None if `shares` form a valid certificate, otherwise a short human-readable reason.

    Contract: the signer rule (`check_signers`) is applied first, then every share's
    signature is verified against `validators[share.signer]` under (tag, chain_id, its
    payload); any bad one refuses the whole set ("bad signature from validator 1").
    A `quorum` outside 1..len(validators) is a caller bug and raises ValueError.
    """
    if not 1 <= quorum <= len(validators):
        raise ValueError(f"quorum {quorum} impossible with {len(validators)} validators")
    # Looked up as a module global at call time, on purpose (mutation tests patch it).
    reason = check_signers([share.signer for share in shares], len(validators), quorum)
    if reason is not None:
        return reason
    for share in shares:
        public_key = validators[share.signer]
        if not verify(public_key, tag, chain_id, share.payload, share.signature, cache):
            return f"bad signature from validator {share.signer}"
    return None


class VerifiedCertCache(LruSet):
    """Bounded LRU set of digests of certificates that already passed `verify_quorum`.

    Contract: holds at most `max_entries`; a membership test that hits marks the digest
    recently used; `add` evicts the least recently used when full. Callers add only digests
    of certificates that verified. Not thread-safe.
    """

    __slots__ = ()

    def __init__(self, max_entries: int = 4096) -> None:
        super().__init__(max_entries)
