"""The block tree: every known block from the last committed one (the root) upwards.

Owns: genesis, block storage by id, ancestry, the committed root, pruning on commit, the
highest QC known for each block.
May not: decide what is safe or committed (safety rules and the commit rule decide; the tree obeys).
"""

from __future__ import annotations

from collections.abc import Iterator

from bft.core.errors import InvariantViolation
from bft.core.messages import Block, QuorumCert
from bft.core.types import BLOCK_ID_SIZE_BYTES, BlockId, ValidatorIndex, View

ZERO_ID = BlockId(bytes(BLOCK_ID_SIZE_BYTES))


def genesis(chain_id: str) -> tuple[Block, QuorumCert]:
    """The genesis block (view 0, height 0) of `chain_id` and the QC that certifies it by definition."""
    block = Block(
        view=View(0),
        height=0,
        parent_id=ZERO_ID,
        proposer=ValidatorIndex(0),
        qc=QuorumCert(View(0), ZERO_ID, ()),
        txs=(chain_id.encode(),),
    )
    return block, QuorumCert(View(0), block.id, ())


class BlockTree:
    """Blocks reachable from the root by parent links. Every block added must extend the root."""

    def __init__(self, root: Block, root_qc: QuorumCert) -> None:
        if root_qc.block_id != root.id:
            raise InvariantViolation("root QC does not certify the root block")
        self._blocks: dict[BlockId, Block] = {root.id: root}
        self._qcs: dict[BlockId, QuorumCert] = {root.id: root_qc}
        self._root = root

    @property
    def root(self) -> Block:
        """The last committed block."""
        return self._root

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_id: BlockId) -> bool:
        return block_id in self._blocks

    def get(self, block_id: BlockId) -> Block | None:
        return self._blocks.get(block_id)

    def parent(self, block: Block) -> Block | None:
        return self._blocks.get(block.parent_id)

    def qc_for(self, block_id: BlockId) -> QuorumCert | None:
        """The highest QC seen certifying `block_id`, if any."""
        return self._qcs.get(block_id)

    def add(self, block: Block) -> None:
        """Insert a block whose parent is in the tree. Callers check validity first."""
        parent = self._blocks.get(block.parent_id)
        if parent is None:
            raise InvariantViolation("block added before its parent")
        if block.height != parent.height + 1 or block.view <= parent.view:
            raise InvariantViolation("block added with a height or view that does not follow its parent")
        self._blocks[block.id] = block
        self.record_qc(block.qc)

    def record_qc(self, qc: QuorumCert) -> None:
        """Remember `qc` as certifying its block if it is the highest QC seen for it."""
        known = self._qcs.get(qc.block_id)
        if known is None or qc.view > known.view:
            self._qcs[qc.block_id] = qc

    def ancestors(self, block: Block) -> Iterator[Block]:
        """`block` and its ancestors down to, but excluding, the root."""
        current: Block | None = block
        while current is not None and current.height > self._root.height:
            yield current
            current = self._blocks.get(current.parent_id)

    def extends(self, block: Block, ancestor_id: BlockId) -> bool:
        """Whether `ancestor_id` is `block` itself or one of its ancestors in the tree."""
        ancestor = self._blocks.get(ancestor_id)
        if ancestor is None:
            return False
        current: Block | None = block
        while current is not None and current.height > ancestor.height:
            current = self._blocks.get(current.parent_id)
        return current is not None and current.id == ancestor_id

    def commit(self, block: Block) -> tuple[tuple[Block, ...], tuple[QuorumCert, ...]]:
        """Make `block` the root. Returns the newly committed blocks, oldest first, with the QCs
        certifying them, and prunes every block that does not extend the new root."""
        path = list(self.ancestors(block))
        if not path or self._blocks.get(path[-1].parent_id) is not self._root:
            raise InvariantViolation(
                f"commit of block at height {block.height} that does not extend the committed root"
            )
        path.reverse()
        qcs: list[QuorumCert] = []
        for committed in path:
            qc = self._qcs.get(committed.id)
            if qc is None:
                raise InvariantViolation("committing a block with no QC")
            qcs.append(qc)
        self._root = block
        keep = {bid: b for bid, b in self._blocks.items() if self._extends_new_root(b)}
        self._blocks = keep
        self._qcs = {bid: qc for bid, qc in self._qcs.items() if bid in keep}
        return tuple(path), tuple(qcs)

    def _extends_new_root(self, block: Block) -> bool:
        return block.height >= self._root.height and self.extends(block, self._root.id)
