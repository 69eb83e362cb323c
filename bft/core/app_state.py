"""What the replica knows of the application's state: committed blocks are executed as they commit,
and each block commits to the app hash of a height fixed by its own chain.

Owns: the `ExecutedState` protocol (the replica hands it every commit, synchronously, and reads
app hashes back), `claim_height`, the rule that fixes which height a block's app-hash claim is
about, and `BlockHashChain`, the stand-in where no application runs (simulations, core tests).
May not: execute transactions itself; the node's executor does, behind the protocol.

The claim rule. A block B with parent P claims the app hash after height
`claim_height(P, middle, length) = max(P.app_height, h)`, where h is the height a QC for P
commits under the `length`-chain rule (`bft.core.commit_rule`), else 0: for the three-chain,
P.height - 2 if P, its parent (middle) and grandparent have consecutive views; for the two-chain,
P.height - 1 if P and middle have. Every
replica that votes for B has just processed B's QC for P, so it has committed, and executed,
height h; a claim equal to P's is P's own hash, which a quorum checked when it certified P. So an
honest replica can always check a claim before voting, and refuses a false one: a certified
block's claim is true by induction. (A claim cannot be about a later height: a pipelined proposer
has not executed its uncommitted ancestors, and neither have the voters.)

Decoupled execution (the quorum store's data path): the claim is `max(P.app_height, h - L)`
with L = EXECUTION_LAG_HEIGHTS. The argument is the same: a voter has committed h, so h - L
too; its executed-state port executes a committed height on demand when asked for its hash
(the node's executor runs committed blocks in the background, so usually it has), so every
honest voter can check the claim, and a certified block's claim is true by induction. What L
buys is time: the commit of h is durable when the step that committed it returns, and its
execution can wait until the step's vote or proposal is sent.
"""

from __future__ import annotations

from typing import Final, Protocol

from bft.core.actions import Commit
from bft.core.commit_rule import TWO_CHAIN
from bft.core.messages import Block
from bft.core.types import GENESIS_APP_HASH
from crypto.hashing import sha256

# Under the quorum store a block claims the app hash EXECUTION_LAG_HEIGHTS below the height the
# rule above fixes: the node executes a commit after its step's messages are out (decoupled
# execution, as in Aptos), not inside the step that committed it, and the lag leaves that
# execution a view or two to finish before a vote needs its hash.
EXECUTION_LAG_HEIGHTS: Final = 2


class ExecutedState(Protocol):
    def on_commit(self, commit: Commit) -> None:
        """Make `commit` durable and execute its blocks, before returning (the replica calls this
        while handling the input that committed them)."""
        ...

    def app_hash_at(self, height: int) -> bytes | None:
        """The app hash after executing `height` (0: before any block); None if not executed."""
        ...


def claim_height(parent: Block, middle: Block | None, length: int, lag: int = 0) -> int:
    """The height whose app hash a child of `parent` commits to under the `length`-chain
    rule, `lag` heights below it (`execution_lag`); `middle` is `parent`'s parent (None if
    unknown, e.g. above genesis)."""
    committed = 0
    if middle is not None and parent.height >= length - 1 and middle.view + 1 == parent.view:
        if length == TWO_CHAIN:
            committed = parent.height - 1
        elif middle.qc.view + 1 == middle.view:
            committed = parent.height - 2
    return max(parent.app_height, committed - lag)


def execution_lag(quorum_store: bool) -> int:
    """How many heights a block's claim lags the inline rule's: `EXECUTION_LAG_HEIGHTS` under the
    quorum store (execution trails ordering), 0 otherwise."""
    return EXECUTION_LAG_HEIGHTS if quorum_store else 0


def block_chain_hash(block: Block) -> bytes:
    """`BlockHashChain`'s app hash after executing `block` (height >= 1)."""
    return sha256(b"bft-block-chain/v1" + block.id)


class BlockHashChain:
    """An app hash per committed block, derived from its id (which already chains every block
    and transaction before it): for replicas without an application."""

    def __init__(self, root: Block) -> None:
        self._hashes: dict[int, bytes] = {0: GENESIS_APP_HASH, root.height: self._hash_of(root)}

    @staticmethod
    def _hash_of(block: Block) -> bytes:
        return block.app_hash if block.height == 0 else block_chain_hash(block)

    def on_commit(self, commit: Commit) -> None:
        for block in commit.blocks:
            self._hashes[block.height] = self._hash_of(block)

    def app_hash_at(self, height: int) -> bytes | None:
        return self._hashes.get(height)
