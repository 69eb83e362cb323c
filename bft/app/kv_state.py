"""The key-value ledger's state as the commitment (hash version 2) and the snapshots see it.

Owns: the limits on a key and a value (`MAX_KEY_BYTES`, `MAX_VALUE_BYTES`), `element(k, v)`
(`kv_element`), state(h) built from scratch (`state_lthash`), the size of chain(h)
(`CHAIN_SIZE_BYTES`) and the version-2 app hash of a chain and a state (`app_hash_v2`); the
formulas are in `bft.app.kv`'s header ("Hash version 2"), which re-exports these names.
May not: import anything outside the standard library and `bft.app.lthash`, know transactions,
SQLite or files: it is what both the ledger (`bft.app.kv`) and its snapshots
(`bft.app.kv_snapshots`) build on, so that neither imports the other's internals.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Final

from bft.app.lthash import LtHash

MAX_KEY_BYTES: Final = 1024
MAX_VALUE_BYTES: Final = 64 * 1024
CHAIN_SIZE_BYTES: Final = 32

_HASH_DOMAIN_V2: Final = b"bft-kv/v2"
_U32: Final = struct.Struct(">I")


def kv_element(key: bytes, value: bytes) -> bytes:
    """`element(k, v)` of the header: one entry of the state commitment and of a snapshot chunk."""
    return _U32.pack(len(key)) + key + _U32.pack(len(value)) + value


def state_lthash(entries: Iterable[tuple[bytes, bytes]]) -> LtHash:
    """state(h) built from scratch over (key, value) pairs of UTF-8 bytes, each key once."""
    lattice = LtHash()
    for key, value in entries:
        lattice.add(kv_element(key, value))
    return lattice


def app_hash_v2(chain: bytes, lattice: LtHash) -> bytes:
    """The version-2 app hash of a height from its chain(h) and state(h) (see the header)."""
    return hashlib.sha256(_HASH_DOMAIN_V2 + chain + lattice.digest()).digest()
