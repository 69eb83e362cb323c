"""What the replica reads of the committed chain, and the in-memory chain of simulations and tests.

Owns: the `CommittedChain` protocol (lookups of committed transactions and blocks, and ranges of
committed blocks by height for block sync, each range within a byte budget) and `MemoryChain`,
which is both a `CommittedChain` and an `ExecutedState`: it keeps every commit handed to it and
answers app hashes as `BlockHashChain` does. The node's block store plays both roles there.
May not: decide what is committed; it keeps what the replica commits through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bft.core import wire
from bft.core.actions import Commit
from bft.core.app_state import BlockHashChain
from bft.core.errors import InvariantViolation
from bft.core.messages import Block, QuorumCert
from bft.core.types import BlockId


class CommittedChain(Protocol):
    def tip(self) -> tuple[Block, QuorumCert] | None:
        """The last committed block with the QC certifying it; None while only genesis is."""
        ...

    def has_tx(self, tx: bytes) -> bool:
        """Whether `tx` is in a committed block."""
        ...

    def block_by_id(self, block_id: BlockId) -> Block | None:
        """The committed block with this id, if any."""
        ...

    def committed_range(
        self, start_height: int, max_blocks: int, max_bytes: int
    ) -> tuple[tuple[Block, ...], QuorumCert | None]:
        """Committed blocks from `start_height` on, oldest first: at most `max_blocks`, and no more
        than fit in `max_bytes` by encoded size (`wire.block_size_bound` or exact), but at least
        one if there is any; with the QC certifying the last one. ((), None) above the tip."""
        ...


class MemoryChain:
    """The committed chain in memory, from a root (genesis or a restart's last commit).

    A listener (`set_listener`) hears of every commit once it is kept (the simulator's checkers).
    """

    def __init__(self, root: Block, root_qc: QuorumCert) -> None:
        self._blocks: list[tuple[Block, QuorumCert]] = [(root, root_qc)]
        self._by_id: dict[BlockId, Block] = {root.id: root}
        self._txs: set[bytes] = set(root.txs) if root.height > 0 else set()
        self._app = BlockHashChain(root)
        self._listeners: list[Callable[[Commit], None]] = []

    def tip(self) -> tuple[Block, QuorumCert] | None:
        return None if self._blocks[-1][0].height == 0 else self._blocks[-1]

    @property
    def height(self) -> int:
        return self._blocks[-1][0].height

    def set_listener(self, on_commit: Callable[[Commit], None]) -> None:
        """Hear of every commit from now on (one listener; setting another replaces it)."""
        self._listeners = [on_commit]

    # ExecutedState

    def on_commit(self, commit: Commit) -> None:
        for block, qc in zip(commit.blocks, commit.qcs, strict=True):
            tip = self._blocks[-1][0]
            if block.height != tip.height + 1 or block.parent_id != tip.id or qc.block_id != block.id:
                raise InvariantViolation(f"commit of block {block.height} does not continue the chain")
            self._blocks.append((block, qc))
            self._by_id[block.id] = block
            self._txs.update(block.txs)
        self._app.on_commit(commit)
        for listener in self._listeners:
            listener(commit)

    def app_hash_at(self, height: int) -> bytes | None:
        return self._app.app_hash_at(height)

    # CommittedChain

    def has_tx(self, tx: bytes) -> bool:
        return tx in self._txs

    def block_by_id(self, block_id: BlockId) -> Block | None:
        return self._by_id.get(block_id)

    def committed_range(
        self, start_height: int, max_blocks: int, max_bytes: int
    ) -> tuple[tuple[Block, ...], QuorumCert | None]:
        first = self._blocks[0][0].height
        if start_height <= first or start_height > self.height:
            return (), None
        picked: list[tuple[Block, QuorumCert]] = []
        size = 0
        for block, qc in self._blocks[start_height - first : start_height - first + max_blocks]:
            size += wire.block_size_bound(block)
            if picked and size > max_bytes:
                break
            picked.append((block, qc))
        return tuple(b for b, _ in picked), picked[-1][1]
