"""The commit rule: a three-chain of direct parents with consecutive views.

Owns: deciding which block a newly certified block commits.
May not: mutate the tree.
"""

from __future__ import annotations

from typing import Final

from bft.core.blocktree import BlockTree
from bft.core.messages import Block

# The blocks of a commit's chain: b, b' and b'' (the QC that certifies b'' commits b).
COMMIT_CHAIN_BLOCKS: Final = 3


def committed_by(tree: BlockTree, certified: Block) -> Block | None:
    """When `certified` (b'') has a QC and b <- b' <- b'' are direct parents with consecutive views,
    b is committed. Without the consecutive-views condition the rule is unsafe: a skipped view
    lets a conflicting block gather a lock between b' and b''."""
    middle = tree.parent(certified)
    if middle is None or middle.view + 1 != certified.view:
        return None
    first = tree.parent(middle)
    if first is None or first.view + 1 != middle.view:
        return None
    return first
