"""What the replica knows of the application's executed state: the app hash per committed height.

Owns: the `ExecutedState` protocol the replica reads when it proposes (which state its block
commits to) and when it votes (whether the proposer's claim matches its own), and
`BlockHashChain`, the stand-in used where no application runs (simulations, core tests).
May not: execute transactions; the node executes committed blocks in its application.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from bft.core.messages import Block
from crypto.hashing import sha256


class ExecutedState(Protocol):
    def executed(self) -> tuple[int, bytes]:
        """The height of the latest executed committed block and the app hash after it."""
        ...

    def app_hash_at(self, height: int) -> bytes | None:
        """The app hash after executing `height`; None if this replica has not executed it (yet)."""
        ...


class BlockHashChain:
    """An app hash per committed block, derived from its id (which already chains every block
    and transaction before it): for replicas without an application. Updated by the replica on
    commit, so it is never behind the committed root."""

    def __init__(self, root: Block) -> None:
        self._hashes: dict[int, bytes] = {}
        self._latest = (root.height, self._hash_of(root))
        self._hashes[root.height] = self._latest[1]

    @staticmethod
    def _hash_of(block: Block) -> bytes:
        return block.app_hash if block.height == 0 else sha256(b"bft-block-chain/v1" + block.id)

    def on_commit(self, blocks: Iterable[Block]) -> None:
        for block in blocks:
            self._latest = (block.height, self._hash_of(block))
            self._hashes[block.height] = self._latest[1]

    def executed(self) -> tuple[int, bytes]:
        return self._latest

    def app_hash_at(self, height: int) -> bytes | None:
        return self._hashes.get(height)
