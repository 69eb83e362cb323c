"""The quorum store's batches in memory, for core tests and replicas without a disk.

Owns: `MemoryBatchStore`, a `bft.core.ports.BatchStore` kept in a dict: "durable" for as long as
the object lives (a test that restarts a replica hands the new one the same object). The node's
is `bft.node.batch_store.SqliteBatchStore`, which the simulator runs too.
May not: decide what to keep; the quorum store does.
"""

from __future__ import annotations

from collections.abc import Iterable

from bft.core.batches import Batch


class MemoryBatchStore:
    def __init__(self) -> None:
        self._batches: dict[bytes, Batch] = {}
        self._highest: dict[int, int] = {}

    def put(self, batch: Batch) -> None:
        self._batches.setdefault(batch.digest, batch)
        self._highest[batch.author] = max(self._highest.get(batch.author, 0), batch.sequence)

    def get(self, digest: bytes) -> Batch | None:
        return self._batches.get(digest)

    def remove(self, digests: Iterable[bytes]) -> None:
        for digest in digests:
            self._batches.pop(digest, None)

    def batches(self) -> tuple[Batch, ...]:
        return tuple(sorted(self._batches.values(), key=lambda b: (b.author, b.sequence)))

    def highest_sequence(self, author: int) -> int:
        return self._highest.get(author, 0)
