"""The replica's synchronous ports: everything it reads or makes durable outside its own memory.

Owns: `Ports`, one required field per port. Drivers (the node, the simulator, tests) fill it
with their implementations; `bft.core.builder.build_replica` is the one way to build a replica
from it, so every driver builds the same core.
May not: provide defaults: a replica running on a stand-in for a port is not the one that ships.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Protocol

from bft.core.app_state import ExecutedState
from bft.core.batches import Batch
from bft.core.chain import CommittedChain
from bft.core.journal import BlockJournal
from bft.core.safety_store import SafetyStore
from bft.core.types import View


class PayloadSource(Protocol):
    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        """Transactions for this replica's proposal in `view`, none of them in `exclude`."""
        ...


class BatchStore(Protocol):
    """The quorum store's batches (`bft.core.quorum_store`): ours and the peers' we acknowledged,
    until they are committed or expire. An acknowledgement promises the data survives a crash,
    so `put` makes the batch durable before it returns."""

    def put(self, batch: Batch) -> None:
        """Keep `batch` durably (a batch already kept is kept once), and raise the durable
        highest sequence of its author if `batch.sequence` is above it."""
        ...

    def get(self, digest: bytes) -> Batch | None: ...

    def remove(self, digests: Iterable[bytes]) -> None:
        """Forget these batches (committed, so in the committed chain now, or expired); the
        highest sequences stay."""
        ...

    def batches(self) -> tuple[Batch, ...]:
        """Every batch kept, for a restart."""
        ...

    def highest_sequence(self, author: int) -> int:
        """The highest sequence of `author` ever put (0 if none), surviving its batches' removal:
        an author never numbers two batches alike, even across crashes."""
        ...


@dataclass(frozen=True, slots=True)
class Ports:
    # The durable safety record (last voted view, lock, last vote and timeout bytes).
    safety_store: SafetyStore
    # Uncommitted blocks and the highest TC, durable across crashes.
    journal: BlockJournal
    # Where commits go: made durable and executed before `on_commit` returns; app hashes.
    executed: ExecutedState
    # Committed transactions and blocks, by id and by height range.
    committed: CommittedChain
    # The transactions a proposal carries, or under the quorum store our batches.
    payload: PayloadSource
    # The quorum store's batches (unused without it, still required: one way to build a replica).
    batches: BatchStore
