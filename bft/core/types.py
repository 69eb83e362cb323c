"""Distinct types for the protocol's scalar values, and the validator set.

Owns: View, ValidatorIndex, BlockId, the fault threshold and quorum size.
May not: import anything outside the standard library and `crypto`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

View = NewType("View", int)
ValidatorIndex = NewType("ValidatorIndex", int)
BlockId = NewType("BlockId", bytes)

BLOCK_ID_SIZE_BYTES = 32
# Blocks carry an application state hash of at most this size; the one at height 0, before any
# block executed, is this fixed value unless the application says otherwise.
MAX_APP_HASH_SIZE_BYTES = 64
GENESIS_APP_HASH = bytes(32)


def max_faulty(n: int) -> int:
    """The largest f with n >= 3f + 1."""
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """Smallest quorum whose pairwise intersections exceed f: (n + f) // 2 + 1 (2f+1 at n = 3f+1)."""
    return (n + max_faulty(n)) // 2 + 1


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The fixed, ordered set of validators' Ed25519 public keys; a validator's index is its position."""

    public_keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.public_keys) < 1:
            raise ValueError("a validator set needs at least one validator")
        if len(set(self.public_keys)) != len(self.public_keys):
            raise ValueError("validator public keys must be distinct")

    @property
    def n(self) -> int:
        return len(self.public_keys)

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def quorum(self) -> int:
        return quorum_size(self.n)

    def contains(self, index: int) -> bool:
        return 0 <= index < self.n
