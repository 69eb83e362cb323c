"""The commit rule: a chain of direct parents with consecutive views, three blocks long (chained
HotStuff) or two (Jolteon / DiemBFT v4), as the genesis chooses.

Owns: deciding which block a newly certified block commits, and the chain lengths allowed.
May not: mutate the tree.

The two rules and what each needs of the safety rules (`bft.core.safety`):
- three-chain: a QC for b'' commits b when b <- b' <- b'' are direct parents in consecutive
  views. The vote rule is the lock of chained HotStuff (extend the locked block or carry a newer
  QC); a timeout's high QC plays no part in safety.
- two-chain: a QC for b' commits b when b <- b' are direct parents in consecutive views: one
  message delay less per commit. It is safe only with Jolteon's rules: a replica votes for a
  block whose QC is for the view just before it, or, after a TC, whose QC is at least the TC's
  high QC; and it signs a timeout only with a high QC at least as high as every QC it voted on.
"""

from __future__ import annotations

from typing import Final

from bft.core.blocktree import BlockTree
from bft.core.messages import Block

THREE_CHAIN: Final = 3
TWO_CHAIN: Final = 2
COMMIT_CHAINS: Final = (TWO_CHAIN, THREE_CHAIN)
DEFAULT_COMMIT_CHAIN: Final = THREE_CHAIN


def check_commit_chain(length: int) -> None:
    if length not in COMMIT_CHAINS:
        raise ValueError(f"commit_chain must be one of {COMMIT_CHAINS}, not {length}")


def committed_by(tree: BlockTree, certified: Block, length: int) -> Block | None:
    """The block a QC for `certified` commits under the `length`-chain rule: the block
    `length - 1` parents below it when each link is a direct parent with the next view, else
    None. Without the consecutive-views condition the rule is unsafe: a skipped view lets a
    conflicting block gather a lock (or, for two-chain, a higher QC) in between."""
    current = certified
    for _ in range(length - 1):
        parent = tree.parent(current)
        if parent is None or parent.view + 1 != current.view:
            return None
        current = parent
    return current


def commit_proof(tree: BlockTree, committed: Block, certified: Block, length: int) -> tuple[Block, ...]:
    """The `length - 1` blocks from `certified` down, oldest first, when the oldest is
    `committed`'s child: with the QC for `certified`, the commit's proof. Empty if they do not
    chain to `committed` (only a broken commit rule asks that; whoever checks proofs, the
    simulator's checkers or a client, then refuses the commit)."""
    run: list[Block] = []
    current: Block | None = certified
    while current is not None and len(run) < length - 1:
        run.append(current)
        current = tree.parent(current)
    if len(run) != length - 1 or run[-1].parent_id != committed.id:
        return ()
    return tuple(reversed(run))
