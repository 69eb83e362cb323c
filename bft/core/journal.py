"""The block journal: uncommitted blocks kept durable across crashes.

Owns: the BlockJournal protocol and MemoryJournal (the simulator's durable journal), which also
keep the highest TC.
Why it exists: a replica locks on blocks that are certified but not yet committed. If every
replica crashed and forgot those blocks, every later proposal would conflict with the locks and
nothing would ever commit again. So a replica journals a block before voting for it (and blocks
it fetched); 2f+1 voted for any certified block, so after any crash some honest replica has it.
Likewise the highest TC: a replica that entered a view through a TC and then crashed would
otherwise be in a view its peers cannot reach, with the only proof that they may lost.
May not: decide anything; the replica adds blocks and prunes on commit (`reload_journal` puts
them back in the tree on a restart).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bft.core.blocktree import BlockTree
from bft.core.messages import Block, QuorumCert, TimeoutCert
from bft.core.types import BlockId


class BlockJournal(Protocol):
    def add(self, blocks: Sequence[Block]) -> None:
        """Return only once `blocks` are durable."""
        ...

    def blocks(self) -> Sequence[Block]:
        """Every journaled block not yet pruned, in any order."""
        ...

    def prune_to(self, height: int) -> None:
        """Forget blocks at or below `height` (they are committed or can never be)."""
        ...

    def save_tc(self, tc: TimeoutCert) -> None:
        """Keep `tc` as the highest TC; durable when this returns."""
        ...

    def high_tc(self) -> TimeoutCert | None: ...


class MemoryJournal:
    """A journal whose contents survive the simulator's crashes (it models a synced store)."""

    def __init__(self) -> None:
        self._blocks: dict[BlockId, Block] = {}
        self._tc: TimeoutCert | None = None

    def add(self, blocks: Sequence[Block]) -> None:
        for block in blocks:
            self._blocks[block.id] = block

    def blocks(self) -> Sequence[Block]:
        return list(self._blocks.values())

    def prune_to(self, height: int) -> None:
        self._blocks = {i: b for i, b in self._blocks.items() if b.height > height}

    def save_tc(self, tc: TimeoutCert) -> None:
        self._tc = tc

    def high_tc(self) -> TimeoutCert | None:
        return self._tc


def reload_journal(tree: BlockTree, journal: BlockJournal) -> list[QuorumCert]:
    """Put the journaled blocks that extend the tree's root back in the tree (a restart); return
    their QCs, so that the high QC survives the restart too."""
    qcs: list[QuorumCert] = []
    for block in sorted(journal.blocks(), key=lambda b: b.height):
        parent = tree.get(block.parent_id)
        follows = parent is not None and block.height == parent.height + 1 and block.view > parent.view
        if follows and block.id not in tree:
            tree.add(block)
            qcs.append(block.qc)
    return qcs
