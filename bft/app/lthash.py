"""LtHash: a homomorphic hash of a multiset of byte strings, for state commitments.

Owns: `LtHash` (the lattice vector and its add / remove / digest / serialisation).
May not: import anything outside the standard library, or know what its elements mean (the
key-value ledger decides how an entry becomes an element).

The construction is Bellare and Micciancio's additive hash with the parameters of Lewi et al.,
"Securing update propagation with homomorphic hashing" (LtHash16): the state is a vector of
1024 lanes of 16 bits; an element's vector is the 2048 bytes of `shake_128(DOMAIN || element)`,
read as 1024 little-endian u16 lanes; adding an element adds its vector lane-wise mod 2**16,
removing subtracts it. So the hash of a set depends only on the set, not on the order of its
updates, and `remove(x)` exactly undoes `add(x)`: a state commitment that can be maintained from
each block's changes alone, and rebuilt from scratch over a snapshot's entries to the same value.
It is a multiset hash: adding an element twice is not adding it once. Callers keep it over sets
(each key present at most once), removing an entry's old element before adding its new one.

`to_bytes()` is the 2048-byte lane vector (lane i at bytes 2i, 2i+1, little-endian);
`digest()` is its SHA-256, the 32 bytes that go into an app hash.

Representation, for speed in pure Python: one int of 1024 32-bit slots, each holding one 16-bit
lane (the even lanes in slots 0..511, the odd lanes in slots 512..1023), so a whole vector add is
one big-int addition (no carry crosses a slot: 0xFFFF + 0xFFFF < 2**32) followed by one mask;
removal adds 0x10000 to every slot first so that no slot borrows. An element's 2048 bytes become
that int with one `int.from_bytes` and two mask-and-shift steps, about twice as fast as spreading
the bytes with slice assignments into a 4096-byte buffer.

Cost (CPython 3.11, one core of the 2-core development machine, `bench/kv_snapshot_figures.py`):
about 7.5 us per `add` and 8.5 us per `remove` of an 84-byte element, of which `shake_128` is about
4.3 us and turning its output into the slot int about 2.7 us; `digest()` about 1.8 us.
"""

from __future__ import annotations

import hashlib
from typing import Final, Self

LANES: Final = 1024
LANE_BITS: Final = 16
SIZE_BYTES: Final = LANES * LANE_BITS // 8  # 2048
DOMAIN: Final = b"bft/lthash16/v1\x00"

_HALF_BITS: Final = LANES // 2 * 32  # the odd lanes' slots start here
# 0x0000FFFF in each of 512 32-bit slots: one u16 lane of every pair, from the 16-bit packing.
_PAIR_LOW: Final = int.from_bytes(b"\xff\xff\x00\x00" * (LANES // 2), "little")
# 0x0000FFFF in every slot: keeps each slot's low 16 bits.
_MASK: Final = int.from_bytes(b"\xff\xff\x00\x00" * LANES, "little")
_HALF_MASK: Final = (1 << _HALF_BITS) - 1
# 0x00010000 in every slot: added before a subtraction so that no slot goes negative.
_BORROW: Final = int.from_bytes(b"\x00\x00\x01\x00" * LANES, "little")


def _spread(lanes16: bytes) -> int:
    """2048 bytes of little-endian u16 lanes as the slot int (even lanes low, odd lanes high)."""
    packed = int.from_bytes(lanes16, "little")
    return (packed & _PAIR_LOW) | (((packed >> LANE_BITS) & _PAIR_LOW) << _HALF_BITS)


def _element(element: bytes) -> int:
    return _spread(hashlib.shake_128(DOMAIN + element).digest(SIZE_BYTES))


class LtHash:
    """A mutable LtHash16 value; starts as the hash of the empty set (all lanes zero)."""

    __slots__ = ("_vector",)

    def __init__(self) -> None:
        self._vector = 0

    def add(self, element: bytes) -> None:
        """Add one occurrence of `element`."""
        self._vector = (self._vector + _element(element)) & _MASK

    def remove(self, element: bytes) -> None:
        """Remove one occurrence of `element` (the inverse of `add`)."""
        self._vector = (self._vector + _BORROW - _element(element)) & _MASK

    def copy(self) -> LtHash:
        clone = LtHash()
        clone._vector = self._vector
        return clone

    def to_bytes(self) -> bytes:
        """The 2048-byte lane vector."""
        even, odd = self._vector & _HALF_MASK, self._vector >> _HALF_BITS
        return (even | (odd << LANE_BITS)).to_bytes(SIZE_BYTES, "little")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        """The value whose `to_bytes()` is `raw`; ValueError unless `raw` is 2048 bytes."""
        if len(raw) != SIZE_BYTES:
            raise ValueError(f"an LtHash is {SIZE_BYTES} bytes, not {len(raw)}")
        value = cls()
        value._vector = _spread(bytes(raw))
        return value

    def digest(self) -> bytes:
        """SHA-256 of the lane vector: the 32-byte commitment."""
        return hashlib.sha256(self.to_bytes()).digest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LtHash):
            return NotImplemented
        return self._vector == other._vector

    # Mutable, so unhashable (defining __eq__ alone sets __hash__ to None).

    def __repr__(self) -> str:
        return f"LtHash({self.digest().hex()[:16]}...)"
