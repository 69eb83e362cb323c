"""An in-memory filter over the hashes of committed transactions: "certainly not committed" without
a disk lookup.

Owns: `CommittedTxFilter`, a scalable Bloom filter (Almeida et al., "Scalable Bloom Filters",
2007): layers of bit arrays, each `GROWTH` times the capacity of the one before at `TIGHTENING`
times its false-positive rate, so it grows with the chain without a rebuild and its
false-positive rate stays below 1% however long the chain. Memory: 4 to 8 bytes per transaction
ever committed (measured: 11 MB for 1.5 million hashes; the newest layer is sized ahead).
May not: answer "committed" on its own: a "maybe" must be confirmed by the block store's index.

Why: every node checks every transaction it admits, gossiped ones included, and every
transaction of every proposal it votes for against the committed chain, and almost all of those
checks answer "no". That SQLite lookup by a random 32-byte key was the hottest function of a
saturated node (issue 12). A filter never forgets an added hash (no false negatives), so a
"no" is as good as the index's.
"""

from __future__ import annotations

import math
from typing import Final

FIRST_CAPACITY: Final = 1 << 16
FIRST_FALSE_POSITIVE_RATE: Final = 0.005
# Each layer holds GROWTH times the hashes of the one before, at TIGHTENING times its false-
# positive rate: few layers (six for ten million hashes), and a total rate below
# FIRST_FALSE_POSITIVE_RATE / (1 - TIGHTENING).
GROWTH: Final = 4
TIGHTENING: Final = 0.5


class _Layer:
    __slots__ = ("_bits", "_k", "_m", "capacity", "count")

    def __init__(self, capacity: int, false_positive_rate: float) -> None:
        # m rounded up to a power of two: a position is a mask, not a division, away.
        bits = math.ceil(-capacity * math.log(false_positive_rate) / math.log(2) ** 2)
        self._m = 1 << (bits - 1).bit_length()
        self._k = max(1, round(self._m / capacity * math.log(2)))
        self._bits = bytearray(self._m // 8)
        self.capacity = capacity
        self.count = 0

    # Double hashing (Kirsch and Mitzenmacher): the k positions are h1 + i * h2 (mod m), from two
    # 64-bit halves of a SHA-256 digest, which are already uniform.

    def add(self, h1: int, h2: int) -> None:
        bits, mask = self._bits, self._m - 1
        for i in range(self._k):
            p = (h1 + i * h2) & mask
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def holds(self, h1: int, h2: int) -> bool:
        # A hash never added meets a clear bit after about two probes: most checks end early.
        bits, mask = self._bits, self._m - 1
        for i in range(self._k):
            p = (h1 + i * h2) & mask
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True

    @property
    def size_bytes(self) -> int:
        return len(self._bits)


def _halves(digest: bytes) -> tuple[int, int]:
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little") | 1


class CommittedTxFilter:
    """`add(hash)` for each committed transaction's SHA-256; `might_contain(hash)` is False only
    for a hash never added."""

    def __init__(self) -> None:
        self._layers = [_Layer(FIRST_CAPACITY, FIRST_FALSE_POSITIVE_RATE)]

    def add(self, digest: bytes) -> None:
        layer = self._layers[-1]
        if layer.count >= layer.capacity:
            n = len(self._layers)
            layer = _Layer(FIRST_CAPACITY * GROWTH**n, FIRST_FALSE_POSITIVE_RATE * TIGHTENING**n)
            self._layers.append(layer)
        layer.add(*_halves(digest))

    def might_contain(self, digest: bytes) -> bool:
        h1, h2 = _halves(digest)
        return any(layer.holds(h1, h2) for layer in self._layers)

    def statistics(self) -> dict[str, int]:
        """Hashes added, layers and bytes held: for metrics and tests of its bounds."""
        return {
            "hashes": sum(layer.count for layer in self._layers),
            "layers": len(self._layers),
            "bytes": sum(layer.size_bytes for layer in self._layers),
        }
