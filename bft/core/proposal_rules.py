"""The checks a proposal passes before it is stored or voted for, and a vote or timeout before it
counts: pure functions of their inputs.

Owns: the stateless and signature checks of a proposal (`check_proposal`, with its parent link
`check_parent_link`), of a vote (`check_vote`) and of a timeout (`check_timeout`), the view
window of votes and timeouts (`check_window`), the checks that need the parent
(`check_extension`), and which app hash a child of a block must claim (`app_claim`,
`check_app_claim`).
May not: change any state; each returns None when the input passes, else a `Refused` verdict.
"""

from __future__ import annotations

from collections.abc import Callable

from bft.core.app_state import ExecutedState, claim_height
from bft.core.certs import Certifier
from bft.core.config import ReplicaConfig
from bft.core.leader import leader_of
from bft.core.messages import Block, Proposal, Timeout, Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import ValidatorIndex, View

# An honest leader proposes one block per view; a few more cover a Byzantine leader's
# equivocations without letting it grow the tree without bound.
MAX_BLOCKS_PER_VIEW = 4

AppClaim = tuple[int, bytes | None]


def check_proposal(
    config: ReplicaConfig,
    certifier: Certifier,
    view: View,
    sender: ValidatorIndex,
    proposal: Proposal,
    certified_late: bool,
) -> Refused | None:
    """Checks that need no tree: author, leader, links to its QC, limits, certificates.
    `certified_late`: a QC for this block is waiting for it, so an older view may be stored."""
    block, tc = proposal.block, proposal.tc
    refused = _check_author(block.proposer, sender)
    if refused is not None:
        return refused
    if block.view < view and not certified_late:
        return _stale(block.view, view)
    if not config.leader_reputation:
        refused = check_leader(block, leader_of(config, block.view))
        if refused is not None:
            return refused
        if block.failed_leaders:
            detail = "records failed leaders on a chain without leader reputation"
            return Refused(RefusalReason.WRONG_LEADER, detail)
    elif any(v >= config.validators.n for v in block.failed_leaders):
        detail = f"records failed leaders {list(block.failed_leaders)}, not all validators"
        return Refused(RefusalReason.WRONG_LEADER, detail)
    refused = check_parent_link(block)
    if refused is not None:
        return refused
    if block.qc.view >= block.view:
        detail = f"QC view {block.qc.view} is not below the block's view {block.view}"
        return Refused(RefusalReason.BAD_QC_VIEW, detail)
    if len(block.txs) > config.max_block_txs:
        detail = f"{len(block.txs)} transactions exceed the limit of {config.max_block_txs}"
        return Refused(RefusalReason.OVER_BLOCK_LIMIT, detail)
    if sum(len(tx) for tx in block.txs) > config.max_block_bytes:
        detail = f"transactions exceed the limit of {config.max_block_bytes} bytes"
        return Refused(RefusalReason.OVER_BLOCK_LIMIT, detail)
    if tc is not None and tc.view + 1 != block.view:
        detail = f"carries a TC for view {tc.view}, not the previous view"
        return Refused(RefusalReason.TC_VIEW_MISMATCH, detail)
    # A QC justifies the view after it, a TC the view after its own. Which QC a block extends
    # after a TC is the lock's business: the vote rule, not this check, keeps forks out.
    if block.view != block.qc.view + 1 and tc is None:
        return Refused(RefusalReason.SKIPS_VIEWS, "skips views without a TC for the previous view")
    reason = certifier.check_proposal_signature(block, proposal.signature)
    if reason is None:
        reason = certifier.check_qc(block.qc)
    if reason is None and tc is not None:
        reason = certifier.check_tc(tc)
    return reason


def check_leader(block: Block, leader: ValidatorIndex) -> Refused | None:
    """The block is its view's leader's (with leader reputation, the leader by its parent's
    window, checked once the parent is here: `bft.core.replica`)."""
    if block.proposer != leader:
        detail = f"wrong leader for view {block.view}: {block.proposer}, expected {leader}"
        return Refused(RefusalReason.WRONG_LEADER, detail)
    return None


def check_failed_leaders(block: Block, expected: tuple[ValidatorIndex, ...]) -> Refused | None:
    """The block records as failed exactly the leaders its parent's window names for the views
    between them (`bft.core.reputation`): a leader cannot bench an honest validator by blaming it."""
    if block.failed_leaders != expected:
        detail = f"records failed leaders {list(block.failed_leaders)}, the chain says {list(expected)}"
        return Refused(RefusalReason.WRONG_LEADER, detail)
    return None


def check_parent_link(block: Block) -> Refused | None:
    """A block's parent is the block its QC certifies. The vote rule's liveness half trusts a QC
    newer than the lock because the block extends that QC's block; a block that carries one QC
    but hangs off another parent would slip past the lock onto any branch."""
    if block.parent_id != block.qc.block_id:
        return Refused(RefusalReason.PARENT_MISMATCH, "parent is not the block its QC certifies")
    return None


def _stale(view: View, current: View) -> Refused:
    return Refused(RefusalReason.STALE_VIEW, f"stale: view {view} is below the current view {current}")


def check_window(config: ReplicaConfig, current: View, view: View) -> Refused | None:
    """Votes and timeouts are taken for the previous view up to `max_views_ahead` views ahead."""
    if view + 1 < current:
        return _stale(view, current)
    if view > current + config.max_views_ahead:
        detail = f"view {view} is more than {config.max_views_ahead} views ahead"
        return Refused(RefusalReason.FUTURE_VIEW, detail)
    return None


def check_vote(
    config: ReplicaConfig,
    certifier: Certifier,
    view: View,
    sender: ValidatorIndex,
    vote: Vote,
    next_leader: ValidatorIndex | None,
) -> Refused | None:
    """A vote counts if its sender signed it, for a view in the window, and we lead the next view
    (`next_leader`; None: not known yet, as under leader reputation for a block not here)."""
    refused = _check_author(vote.author, sender) or check_window(config, view, vote.view)
    if refused is None and next_leader is not None and next_leader != config.me:
        refused = Refused(RefusalReason.NOT_NEXT_LEADER, f"not the leader of view {vote.view + 1}")
    return refused or certifier.check_vote(vote)


def check_timeout(
    config: ReplicaConfig, certifier: Certifier, view: View, sender: ValidatorIndex, timeout: Timeout
) -> Refused | None:
    """A timeout counts if its sender signed it, for a view in the window, with a valid high QC."""
    refused = _check_author(timeout.author, sender) or check_window(config, view, timeout.view)
    return refused or certifier.check_timeout(timeout) or certifier.check_qc(timeout.high_qc)


def _check_author(author: ValidatorIndex, sender: ValidatorIndex) -> Refused | None:
    if author == sender:
        return None
    return Refused(RefusalReason.NOT_THE_SENDER, f"author {author} is not the sender {sender}")


def check_extension(
    block: Block,
    parent: Block,
    blocks_in_view: int,
    claim: AppClaim,
    pending: set[bytes],
    is_committed: Callable[[bytes], bool],
) -> Refused | None:
    """Checks that need the parent: height, the per-view cap, the app claim, and no transaction
    twice in the chain (`pending`: the uncommitted ancestors' transactions)."""
    if block.height != parent.height + 1:
        return Refused(RefusalReason.PARENT_MISMATCH, "height does not follow its parent")
    if blocks_in_view >= MAX_BLOCKS_PER_VIEW:
        detail = f"more than {MAX_BLOCKS_PER_VIEW} blocks for view {block.view}"
        return Refused(RefusalReason.TOO_MANY_BLOCKS, detail)
    reason = check_app_claim(block, claim)
    if reason is not None:
        return reason
    if len(set(block.txs)) != len(block.txs):
        return Refused(RefusalReason.DUPLICATE_TX, "a transaction appears twice in the block")
    for tx in block.txs:
        if tx in pending or is_committed(tx):
            return Refused(RefusalReason.DUPLICATE_TX, "a transaction is already in the chain")
    return None


def app_claim(
    parent: Block, grandparent: Block | None, executed: ExecutedState, length: int, lag: int = 0
) -> AppClaim:
    """The (height, app hash) a child of `parent` must claim (`bft.core.app_state`); the hash is
    None if that height is not executed here (never the case after handling the QC for `parent`)."""
    height = claim_height(parent, grandparent, length, lag)
    if height == parent.app_height:
        return height, parent.app_hash
    return height, executed.app_hash_at(height)


def check_app_claim(block: Block, claim: AppClaim) -> Refused | None:
    """The block claims the app hash of the height its chain fixes, as we executed it."""
    height, app_hash = claim
    if block.app_height != height:
        return Refused(RefusalReason.APP_CLAIM, f"app height {block.app_height}, the chain fixes {height}")
    if app_hash is None:
        return Refused(RefusalReason.APP_NOT_EXECUTED, f"app state at height {height} not executed here")
    if block.app_hash != app_hash:
        claimed, ours = block.app_hash.hex()[:16], app_hash.hex()[:16]
        return Refused(RefusalReason.APP_CLAIM, f"app hash at height {height} is {claimed}, ours is {ours}")
    return None
