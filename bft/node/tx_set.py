"""The committed-transaction set's commitment, and the state a block claims, on a state-sync chain.

Owns: `tx_record` (the bytes of one committed transaction's location: its hash, the height and
position where it first committed), `TxSet` (the LtHash of every such record up to a height,
`bft.app.lthash`), `state_claim` (what a block's app-hash claim names on a chain whose genesis
says "state_sync": the application's app hash and the transaction set's digest, hashed
together), and the page format `GET /snapshots/<h>/txs` serves records in.
May not: store anything (`bft.node.storage` keeps the set and its digest per height) or fetch.

Why the transaction set is part of the claimed state: identical bytes are one transaction for
the chain's whole life (DESIGN.md), and the executor skips a transaction whose bytes committed
earlier (`bft.node.executor`). Whether a transaction is executed therefore depends on every
transaction committed before it, so a node that joins from a snapshot must know all of them, and
must be able to check that a peer gave it all of them: a set hash the claims commit to. An
LtHash, because it is kept up to date per block from that block's new transactions alone and
verified over records in any order (a peer serves them in hash order, straight from its index).

    tx_record   = sha256(tx) || u64(height) || u32(position)     (44 bytes, big-endian integers)
    state_claim = sha256("bft-state/v1" || app_hash || tx_set_digest)   at heights >= 1

At height 0 the claim is the application's initial app hash itself: the genesis block claims it,
before any transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Final

from bft.app.lthash import LtHash
from crypto.hashing import sha256

TX_RECORD_BYTES: Final = 44
# Records per page of `GET /snapshots/<h>/txs`: about 880 KB.
MAX_RECORDS_PER_PAGE: Final = 20_000
_RECORD: Final = struct.Struct(">QI")
_CLAIM_DOMAIN: Final = b"bft-state/v1"


def tx_record(tx_hash: bytes, height: int, position: int) -> bytes:
    return bytes(tx_hash) + _RECORD.pack(height, position)


def state_claim(height: int, app_hash: bytes, tx_set_digest: bytes) -> bytes:
    """The hash a block claims for `height` on a state-sync chain (module header)."""
    if height == 0:
        return app_hash
    return sha256(_CLAIM_DOMAIN + app_hash + tx_set_digest)


class TxSet:
    """The LtHash of the transaction records up to some height; cheap to copy."""

    __slots__ = ("_hash",)

    def __init__(self, lattice: LtHash | None = None) -> None:
        self._hash = lattice if lattice is not None else LtHash()

    @classmethod
    def from_bytes(cls, raw: bytes) -> TxSet:
        return cls(LtHash.from_bytes(raw))

    def to_bytes(self) -> bytes:
        return self._hash.to_bytes()

    def copy(self) -> TxSet:
        return TxSet(self._hash.copy())

    def add(self, tx_hash: bytes, height: int, position: int) -> None:
        self._hash.add(tx_record(tx_hash, height, position))

    def digest(self) -> bytes:
        return self._hash.digest()


EMPTY_TX_SET_DIGEST: Final = TxSet().digest()


def encode_records(records: Iterable[tuple[bytes, int, int]]) -> bytes:
    """A page of records: their `tx_record` bytes, concatenated."""
    return b"".join(tx_record(h, height, pos) for h, height, pos in records)


def decode_records(page: bytes) -> Iterator[tuple[bytes, int, int]]:
    """The records of a page; ValueError if its length is not a whole number of records."""
    if len(page) % TX_RECORD_BYTES:
        raise ValueError(f"a page of records is a multiple of {TX_RECORD_BYTES} bytes, not {len(page)}")
    for offset in range(0, len(page), TX_RECORD_BYTES):
        height, position = _RECORD.unpack_from(page, offset + 32)
        yield page[offset : offset + 32], height, position
