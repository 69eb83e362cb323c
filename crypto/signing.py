"""Domain-separated Ed25519 signatures and the cache of verified signatures.

Owns: the signing tags, the exact bytes that get signed (`signing_bytes`), `sign`, `verify`
and `SignatureCache`. May not: know what a vote, timeout or certificate means (callers pass
opaque payload bytes), or import anything beyond the stdlib and `cryptography`.
"""

from __future__ import annotations

import enum

from cryptography.exceptions import InvalidSignature

from crypto.errors import CryptoError
from crypto.hashing import sha256
from crypto.keys import PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey, load_public_key
from crypto.lru import LruSet


class Tag(bytes, enum.Enum):
    """What a signature is for; a signature made under one tag is invalid under any other."""

    VOTE = b"bft/vote/v1"
    TIMEOUT = b"bft/timeout/v1"
    PROPOSAL = b"bft/proposal/v1"
    HANDSHAKE = b"bft/handshake/v1"
    BATCH_ACK = b"bft/batch-ack/v1"


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def signing_bytes(tag: Tag, chain_id: str, payload: bytes) -> bytes:
    """Return the exact bytes signed for (tag, chain_id, payload).

    Contract: injective: len32(tag) | tag | len32(utf8(chain_id)) | utf8(chain_id) | payload,
    lengths as 4-byte big-endian. Every field but the last is length-prefixed, so distinct
    triples always give distinct bytes.
    """
    return _length_prefixed(Tag(tag).value) + _length_prefixed(chain_id.encode("utf-8")) + bytes(payload)


def sign(key: PrivateKey, tag: Tag, chain_id: str, payload: bytes) -> bytes:
    """Return the 64-byte signature by `key` over `signing_bytes(tag, chain_id, payload)`."""
    return key.sign(signing_bytes(tag, chain_id, payload))


def verify(
    public_key: bytes,
    tag: Tag,
    chain_id: str,
    payload: bytes,
    signature: bytes,
    cache: SignatureCache | None = None,
) -> bool:
    """True iff `signature` is `public_key`'s signature over (tag, chain_id, payload).

    Contract: never raises for bad key or signature bytes (wrong length, not a valid key):
    the answer is then False. With a `cache`, a triple already verified costs one SHA-256;
    only successes are remembered.
    """
    if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    message = signing_bytes(tag, chain_id, payload)
    if cache is not None and cache.contains(public_key, message, signature):
        return True
    if not _ed25519_verify(bytes(public_key), message, bytes(signature)):
        return False
    if cache is not None:
        cache.add(public_key, message, signature)
    return True


def _ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    # The single place that does the expensive check; tests count calls to it.
    try:
        load_public_key(public_key).verify(signature, message)
    except (CryptoError, InvalidSignature):
        return False
    return True


class SignatureCache:
    """Bounded LRU set of (public_key, signing bytes, signature) triples that verified.

    Contract: holds at most `max_entries`; evicts the least recently used. Entries are keyed
    by SHA-256 of the length-prefixed triple, so memory per entry is constant. Only `verify`
    should `add`, and only after a successful Ed25519 check. Not thread-safe (single-threaded
    trio callers).
    """

    __slots__ = ("_entries",)

    def __init__(self, max_entries: int = 65536) -> None:
        self._entries = LruSet(max_entries)

    @staticmethod
    def _digest(public_key: bytes, message: bytes, signature: bytes) -> bytes:
        return sha256(
            _length_prefixed(bytes(public_key))
            + _length_prefixed(message)
            + _length_prefixed(bytes(signature))
        )

    def contains(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        """True if the triple was added and not yet evicted; a hit marks it recently used."""
        return self._digest(public_key, message, signature) in self._entries

    def add(self, public_key: bytes, message: bytes, signature: bytes) -> None:
        """Remember a triple that verified, evicting the least recently used if full."""
        self._entries.add(self._digest(public_key, message, signature))

    def __len__(self) -> int:
        return len(self._entries)
