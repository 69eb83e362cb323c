"""Fetching missing blocks, and every buffer of what waits for them, each bounded.

Owns: `BlockFetcher`: outstanding fetches by hash (the uncommitted tail), the block-sync request
in flight (committed blocks by height range), proposals and QCs waiting for a block, orphan
chains of fetched blocks waiting for their parent, and the bounds of each in count and bytes.
Also the answers to peers' requests (`answer_block_request`, `answer_sync_request`), each built
under a byte budget that fits one message and always carrying at least one block, and only
within the requesting validator's serving budget (`bft.core.serving`).
May not: insert blocks into the tree, commit, or touch the network: it returns what landed and
appends requests and refusals to the `out` list the replica passes in.

Why block sync: walking back by hash moves `max_fetch_blocks` per round trip, newest first, and
each answer stays an orphan until the walk reaches the committed root, so a node thousands of
blocks behind fills its orphan bound and stalls for good. A node that sees a verified block more
than `max_fetch_blocks` above what it has asks instead for committed blocks by height, oldest
first, from its root: each run is hash-linked to a block it has, and one verified QC on its last
block certifies the whole run (honest voters checked every block's QC for its parent). The
replica inserts the run and hands the QC to the commit rule, which commits the run's
three-chains exactly as it commits anything else.

Why the byte budget at the producer: a response that does not fit a frame cannot be sent, and a
lagging node asking again for the same range would make every node it asks fail the same way.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Final

from bft.core import wire
from bft.core.actions import Action, Refusal, Send
from bft.core.blocktree import BlockTree
from bft.core.certs import Certifier
from bft.core.chain import CommittedChain
from bft.core.config import ReplicaConfig
from bft.core.errors import InvariantViolation
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Proposal,
    QuorumCert,
    SyncRequest,
    SyncResponse,
)
from bft.core.refusals import RefusalReason, Refused, Subject
from bft.core.serving import ServingBudget, ServingLimits
from bft.core.types import BlockId, ValidatorIndex

# Blocks asked for in one SyncRequest (a response may carry fewer to stay within its budget).
SYNC_BATCH_BLOCKS: Final = wire.MAX_BLOCKS_PER_RESPONSE
# Synced blocks above the committed root kept uncommitted in the tree (waiting for a three-chain
# further up) before the next range is asked for.
MAX_SYNC_AHEAD_BLOCKS: Final = 2 * SYNC_BATCH_BLOCKS


@dataclass(frozen=True, slots=True)
class Landed:
    """What waited for a block that is now in the tree."""

    qc: QuorumCert | None
    proposals: list[tuple[ValidatorIndex, Proposal]]
    orphans: tuple[Block, ...] | None


@dataclass(slots=True)
class _SyncAsk:
    peer: ValidatorIndex
    start_height: int
    asked_at: float


@dataclass(slots=True)
class _Buffer:
    """A count and byte tally against its bounds."""

    max_items: int
    max_bytes: int
    items: int = 0
    size_bytes: int = 0

    def fits(self, items: int, size_bytes: int) -> bool:
        return self.items + items <= self.max_items and self.size_bytes + size_bytes <= self.max_bytes

    def add(self, items: int, size_bytes: int) -> None:
        self.items += items
        self.size_bytes += size_bytes

    def check(self, what: str, items: int, size_bytes: int) -> None:
        if (items, size_bytes) != (self.items, self.size_bytes):
            raise InvariantViolation(f"{what}: tally {self.items}/{self.size_bytes} != {items}/{size_bytes}")
        if items > self.max_items or size_bytes > self.max_bytes:
            raise InvariantViolation(f"{what}: {items} items, {size_bytes} bytes exceed the bound")


def _proposal_size(proposal: Proposal) -> int:
    tc = 0 if proposal.tc is None else wire.qc_size_bound(len(proposal.tc.signatures)) * 2
    return wire.block_size_bound(proposal.block) + tc


def _chain_size(chain: tuple[Block, ...]) -> int:
    return sum(wire.block_size_bound(b) for b in chain)


def _refuse_response(sender: ValidatorIndex, reason: RefusalReason, detail: str) -> Refusal:
    return Refusal(Subject.BLOCK_RESPONSE, reason, detail, None, sender)


def _bad_chain(detail: str) -> Refused:
    return Refused(RefusalReason.BAD_CHAIN, detail)


@dataclass(slots=True)
class BlockFetcher:
    config: ReplicaConfig
    certifier: Certifier
    _fetching: dict[BlockId, tuple[ValidatorIndex, float]] = field(default_factory=dict)
    _waiting_proposals: dict[BlockId, list[tuple[ValidatorIndex, Proposal]]] = field(default_factory=dict)
    _waiting_qcs: dict[BlockId, QuorumCert] = field(default_factory=dict)
    # Chains of fetched blocks, oldest first, keyed by the missing parent of the oldest.
    _orphans: dict[BlockId, tuple[Block, ...]] = field(default_factory=dict)
    _proposal_tally: _Buffer = field(init=False)
    _orphan_tally: _Buffer = field(init=False)
    _sync: _SyncAsk | None = None
    # The highest height a verified block showed us exists below it, and the last synced block.
    _sync_target: int = 0
    _sync_tip: Block | None = None
    # What answering each requesting validator may cost (`bft.core.serving`).
    serving: ServingBudget = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.serving = ServingBudget(ServingLimits.of(c))
        self._proposal_tally = _Buffer(c.max_pending_blocks, c.max_buffered_bytes)
        self._orphan_tally = _Buffer(c.max_pending_blocks, c.max_buffered_bytes)

    # -- what waits ------------------------------------------------------------------------------

    def wait_proposal(self, sender: ValidatorIndex, proposal: Proposal) -> Refused | None:
        """Keep `proposal` until its parent lands; BUFFER_FULL if the buffer is full."""
        size = _proposal_size(proposal)
        if not self._proposal_tally.fits(1, size):
            t = self._proposal_tally
            detail = f"{t.items} proposals ({t.size_bytes} bytes) already wait for ancestors"
            return Refused(RefusalReason.BUFFER_FULL, detail)
        self._proposal_tally.add(1, size)
        self._waiting_proposals.setdefault(proposal.block.parent_id, []).append((sender, proposal))
        return None

    def wait_qc(self, qc: QuorumCert) -> None:
        if len(self._waiting_qcs) < self.config.max_pending_blocks:
            self._waiting_qcs.setdefault(qc.block_id, qc)

    def is_certified_late(self, block_id: BlockId) -> bool:
        """Whether a QC for `block_id` waits for the block (a late proposal may still be stored)."""
        return block_id in self._waiting_qcs

    def land(self, block_id: BlockId) -> Landed:
        """`block_id` is in the tree now: hand back what waited for it."""
        self._fetching.pop(block_id, None)
        proposals = self._waiting_proposals.pop(block_id, [])
        self._proposal_tally.add(-len(proposals), -sum(_proposal_size(p) for _, p in proposals))
        orphans = self._orphans.pop(block_id, None)
        if orphans is not None:
            self._orphan_tally.add(-len(orphans), -_chain_size(orphans))
        return Landed(self._waiting_qcs.pop(block_id, None), proposals, orphans)

    def on_view(self, view: int) -> None:
        """Proposals for views below `view` can no longer be voted for: drop them."""
        kept: dict[BlockId, list[tuple[ValidatorIndex, Proposal]]] = {}
        for parent_id, waiting in self._waiting_proposals.items():
            stay = [(s, p) for s, p in waiting if p.view >= view]
            if stay:
                kept[parent_id] = stay
        self._waiting_proposals = kept
        stays = [p for ps in kept.values() for _, p in ps]
        self._proposal_tally = _Buffer(self._proposal_tally.max_items, self._proposal_tally.max_bytes)
        self._proposal_tally.add(len(stays), sum(_proposal_size(p) for p in stays))

    def on_commit(self, root: Block) -> None:
        """The committed root moved to `root`: what is at or below it is no longer missing."""
        for parent_id, chain in list(self._orphans.items()):
            if chain[-1].height <= root.height:
                del self._orphans[parent_id]
                self._orphan_tally.add(-len(chain), -_chain_size(chain))
        self._waiting_qcs = {k: qc for k, qc in self._waiting_qcs.items() if qc.view > root.view}
        if self._sync_tip is not None and self._sync_tip.height <= root.height:
            self._sync_tip = None

    # -- fetching by hash ------------------------------------------------------------------------

    def fetch(self, block_id: BlockId, peer: ValidatorIndex, now: float, out: list[Action]) -> None:
        """Ask `peer` for `block_id` and its ancestors unless already asked recently, or a sync
        is in flight (it brings them, or the next verified block asks again once it is done)."""
        if self._sync is not None:
            return
        asked = self._fetching.get(block_id)
        if asked is not None and now - asked[1] < self.config.base_timeout_s:
            return
        if asked is None and len(self._fetching) >= self.config.max_pending_blocks:
            out.append(
                Refusal(Subject.FETCH, RefusalReason.BUFFER_FULL, "too many outstanding fetches", None, peer)
            )
            return
        self._fetching[block_id] = (peer, now)
        out.append(Send(peer, BlockRequest(block_id, self.config.max_fetch_blocks)))

    def on_block_response(
        self, sender: ValidatorIndex, response: BlockResponse, tree: BlockTree, now: float, out: list[Action]
    ) -> tuple[Block, ...] | None:
        """The fetched blocks to insert now, oldest first (their oldest's parent is in the tree);
        None if there are none yet (an orphan chain is kept and walked back, or synced)."""
        blocks = response.blocks
        if not blocks or blocks[0].id not in self._fetching:
            out.append(_refuse_response(sender, RefusalReason.NOT_REQUESTED, "not requested"))
            return None
        for child, parent in itertools.pairwise(blocks):
            if child.parent_id != parent.id or child.height != parent.height + 1:
                out.append(_refuse_response(sender, RefusalReason.BAD_CHAIN, "blocks do not form a chain"))
                return None
        del self._fetching[blocks[0].id]
        root = tree.root
        chain = tuple(b for b in reversed(blocks) if b.height > root.height and b.id not in tree)
        if not chain:
            return None
        if chain[0].height == root.height + 1 and chain[0].parent_id != root.id:
            detail = "chain forks below the committed root"
            out.append(_refuse_response(sender, RefusalReason.FORKS_COMMITTED, detail))
            return None
        if chain[0].parent_id in tree:
            return chain
        previous = self._orphans.pop(chain[0].parent_id, None)
        if previous is not None:
            self._orphan_tally.add(-len(previous), -_chain_size(previous))
        size = _chain_size(chain)
        if not self._orphan_tally.fits(len(chain), size):
            t = self._orphan_tally
            detail = f"{t.items} orphan blocks ({t.size_bytes} bytes) already wait for ancestors"
            out.append(_refuse_response(sender, RefusalReason.BUFFER_FULL, detail))
            return None
        self._orphans[chain[0].parent_id] = chain
        self._orphan_tally.add(len(chain), size)
        # The newest block is the one asked for, certified (by the QC that named it, or the QC
        # its child carries): its view is a certified view, and the chain is hash-linked to it.
        if not self.need_height(chain[0].height, blocks[0].view, sender, tree, now, out):
            self.fetch(chain[0].parent_id, sender, now, out)
        return None

    # -- block sync ------------------------------------------------------------------------------

    def need_height(
        self,
        height: int,
        certified_view: int,
        peer: ValidatorIndex,
        tree: BlockTree,
        now: float,
        out: list[Action],
    ) -> bool:
        """A block at `height` whose parent a verified QC of `certified_view` certifies exists,
        and we lack its ancestors. True if they are too far above what we have to walk back by
        hash: then block sync fetches them (a request is sent to `peer` unless one is in flight).
        A height above `sync_cap` is refused (SYNC_TARGET_TOO_HIGH) and changes nothing."""
        cap = sync_cap(tree.root, certified_view)
        if height - 1 > cap:
            detail = f"height {height} over a QC of view {certified_view}: at most {cap + 1} can exist"
            out.append(Refusal(Subject.FETCH, RefusalReason.SYNC_TARGET_TOO_HIGH, detail, None, peer))
            return False
        self._sync_target = max(self._sync_target, height - 1)
        if self._sync_target - self._synced(tree).height <= self.config.max_fetch_blocks:
            return False
        self._ask_sync(peer, tree, now, out)
        return True

    def _synced(self, tree: BlockTree) -> Block:
        """The highest block of the committed chain we have: the last synced one, or the root."""
        tip = self._sync_tip
        return tip if tip is not None and tip.id in tree else tree.root

    def _ask_sync(self, peer: ValidatorIndex, tree: BlockTree, now: float, out: list[Action]) -> None:
        if self._sync is not None:
            return
        synced = self._synced(tree)
        if synced.height - tree.root.height >= MAX_SYNC_AHEAD_BLOCKS:
            return  # the tree holds enough uncommitted synced blocks; asked again after a commit
        self._sync = _SyncAsk(peer, synced.height + 1, now)
        out.append(Send(peer, SyncRequest(synced.height + 1, SYNC_BATCH_BLOCKS)))

    def on_sync_response(
        self, sender: ValidatorIndex, response: SyncResponse, tree: BlockTree, out: list[Action]
    ) -> tuple[tuple[Block, ...], QuorumCert] | None:
        """A verified run of committed blocks to insert (those not in the tree yet, oldest first)
        and the QC certifying its last block; None (with a refusal if it is bad) otherwise."""
        asked = self._sync
        if asked is None or asked.peer != sender:
            out.append(
                Refusal(Subject.SYNC_RESPONSE, RefusalReason.NOT_REQUESTED, "not requested", None, sender)
            )
            return None
        self._sync = None
        if not response.blocks:
            return None  # the peer has nothing from there: the next verified block asks another
        refused = self._check_run(response, asked.start_height, tree)
        if refused is not None:
            out.append(Refusal.of(Subject.SYNC_RESPONSE, refused, None, sender))
            return None
        assert response.qc is not None  # checked by _check_run
        self._sync_tip = response.blocks[-1]
        return tuple(b for b in response.blocks if b.id not in tree), response.qc

    def _check_run(self, response: SyncResponse, start_height: int, tree: BlockTree) -> Refused | None:
        """BAD_CHAIN unless the run starts where asked, extends our chain and is linked block to
        block by their QCs up to the response's QC; BAD_QC if that QC does not verify."""
        blocks, qc = response.blocks, response.qc
        if blocks[0].height != start_height:
            return _bad_chain(f"starts at height {blocks[0].height}, not the requested {start_height}")
        parent = tree.get(blocks[0].parent_id)
        if parent is None:
            return _bad_chain("does not extend our chain")
        for block in blocks:
            if block.height != parent.height + 1 or block.view <= parent.view:
                return _bad_chain(f"block {block.height} does not follow its parent")
            if block.parent_id != parent.id or block.qc.block_id != parent.id or block.qc.view != parent.view:
                return _bad_chain(f"block {block.height} is not linked to its parent by its QC")
            parent = block
        if qc is None or qc.block_id != parent.id or qc.view != parent.view:
            return _bad_chain("its QC does not certify its last block")
        return self.certifier.check_qc(qc)

    def continue_sync(self, peer: ValidatorIndex, tree: BlockTree, now: float, out: list[Action]) -> None:
        """After a synced run was inserted (and what it certifies committed): ask for the next
        range, or, close enough now, fetch by hash the uncommitted tail that proposals and QCs
        still wait for (their fetches waited for the sync)."""
        if self._sync_target - self._synced(tree).height > self.config.max_fetch_blocks:
            self._ask_sync(peer, tree, now, out)
            return
        for block_id in [*self._waiting_proposals, *self._waiting_qcs]:
            if block_id not in tree:
                self.fetch(block_id, peer, now, out)

    @property
    def syncing(self) -> bool:
        return self._sync is not None

    # -- dispatch --------------------------------------------------------------------------------

    def on_message(
        self,
        sender: ValidatorIndex,
        msg: BlockRequest | BlockResponse | SyncRequest | SyncResponse,
        tree: BlockTree,
        chain: CommittedChain,
        now: float,
        out: list[Action],
    ) -> tuple[tuple[Block, ...], QuorumCert | None] | None:
        """A catch-up message. Requests are answered (or refused) into `out`. For a response, the
        fetched blocks to insert now, oldest first, with, for a synced run, the QC certifying its
        last block (the replica commits what it certifies, then calls `continue_sync`)."""
        match msg:
            case BlockRequest():
                self._on_block_request(sender, msg, tree, chain, now, out)
            case SyncRequest():
                self._on_sync_request(sender, msg, tree, chain, now, out)
            case BlockResponse():
                blocks = self.on_block_response(sender, msg, tree, now, out)
                return None if blocks is None else (blocks, None)
            case SyncResponse():
                return self.on_sync_response(sender, msg, tree, out)
        return None

    # -- answering -------------------------------------------------------------------------------

    def _on_block_request(
        self,
        sender: ValidatorIndex,
        request: BlockRequest,
        tree: BlockTree,
        chain: CommittedChain,
        now: float,
        out: list[Action],
    ) -> None:
        """Answer within `sender`'s serving budget; a request beyond it is refused unread."""
        refused = self.serving.admit_block_request(sender, now)
        answer = refused or answer_block_request(request, tree, chain, self.config)
        if isinstance(answer, Refused):
            out.append(Refusal.of(Subject.BLOCK_REQUEST, answer, None, sender))
            return
        self.serving.answered_blocks(sender, answer, now)
        out.append(Send(sender, answer))

    def _on_sync_request(
        self,
        sender: ValidatorIndex,
        request: SyncRequest,
        tree: BlockTree,
        chain: CommittedChain,
        now: float,
        out: list[Action],
    ) -> None:
        """A range above our committed height is answered empty, for free (we cannot help; the
        asker tries another peer); any other is answered within `sender`'s serving budget."""
        if request.start_height > tree.root.height:
            out.append(Send(sender, SyncResponse((), None)))
            return
        refused = self.serving.admit_sync_request(sender, request.start_height, now)
        if refused is not None:
            out.append(Refusal.of(Subject.SYNC_REQUEST, refused, None, sender))
            return
        answer = answer_sync_request(request, chain, self.config)
        self.serving.answered_sync(sender, answer, request.start_height, now)
        out.append(Send(sender, answer))

    # -- retries ---------------------------------------------------------------------------------

    def retry(self, now: float, tree: BlockTree, out: list[Action]) -> None:
        """Ask another peer for every fetch, and the sync range, unanswered for a base timeout."""
        for block_id, (peer, asked_at) in list(self._fetching.items()):
            if now - asked_at >= self.config.base_timeout_s:
                del self._fetching[block_id]
                self.fetch(block_id, self._next_peer(peer), now, out)
        sync = self._sync
        if sync is not None and now - sync.asked_at >= self.config.base_timeout_s:
            self._sync = None
            self._ask_sync(self._next_peer(sync.peer), tree, now, out)

    def _next_peer(self, peer: ValidatorIndex) -> ValidatorIndex:
        n = self.config.validators.n
        other = ValidatorIndex((peer + 1) % n)
        return ValidatorIndex((other + 1) % n) if other == self.config.me else other

    # -- bounds ----------------------------------------------------------------------------------

    def statistics(self) -> dict[str, int]:
        return {
            "fetching": len(self._fetching),
            "waiting_proposals": self._proposal_tally.items,
            "waiting_proposal_bytes": self._proposal_tally.size_bytes,
            "waiting_qcs": len(self._waiting_qcs),
            "orphan_blocks": self._orphan_tally.items,
            "orphan_bytes": self._orphan_tally.size_bytes,
            "sync_in_flight": int(self._sync is not None),
            "sync_target": self._sync_target,
            **self.serving.statistics(),
        }

    def check_bounds(self) -> None:
        """Raise InvariantViolation if a buffer is past its bound or its tally is wrong."""
        limit = self.config.max_pending_blocks
        if len(self._fetching) > limit or len(self._waiting_qcs) > limit:
            raise InvariantViolation("outstanding fetches or waiting QCs exceed max_pending_blocks")
        proposals = [p for ps in self._waiting_proposals.values() for _, p in ps]
        self._proposal_tally.check("waiting proposals", len(proposals), sum(map(_proposal_size, proposals)))
        chains = list(self._orphans.values())
        self._orphan_tally.check("orphans", sum(map(len, chains)), sum(map(_chain_size, chains)))
        self.serving.check_bounds(self.config.validators.n)


def sync_cap(root: Block, certified_view: int) -> int:
    """The highest height a block certified at `certified_view` can have above `root`, the
    committed root: each block's view is above its parent's and its height one more (honest
    voters checked both before they voted), so a chain climbs at most one height per view.

    Why: a proposal's height is its proposer's word (only its QC is certified). Trusted as a
    sync target, a Byzantine leader's inflated height would keep a node syncing towards blocks
    that do not exist, with its fetches by hash held back while it does."""
    return root.height + max(0, certified_view - root.view)


# -- answering peers -----------------------------------------------------------------------------


def holder_of(config: ReplicaConfig, qc: QuorumCert, source: ValidatorIndex | None) -> ValidatorIndex:
    """A peer that has the block `qc` certifies: who sent the QC, else its proposer or a voter."""
    me = config.me
    if source is not None and source != me:
        return source
    leader = leader_of(config, qc.view)
    if leader != me:
        return leader
    return next((s for s, _ in qc.signatures if s != me), leader)


def answer_block_request(
    request: BlockRequest, tree: BlockTree, chain: CommittedChain, config: ReplicaConfig
) -> BlockResponse | Refused:
    """The requested block and its ancestors, newest first, within the response budget (at least
    the block itself); refused if we do not know the block."""
    limit = min(request.max_blocks, config.max_fetch_blocks, wire.MAX_BLOCKS_PER_RESPONSE)
    budget = wire.response_budget_bytes(config.validators.n)
    blocks: list[Block] = []
    size = 0
    block = tree.get(request.block_id) or chain.block_by_id(request.block_id)
    while block is not None and len(blocks) < limit:
        size += wire.block_size_bound(block)
        if blocks and size > budget:
            break
        blocks.append(block)
        if block.height == 0:
            break
        block = tree.get(block.parent_id) or chain.block_by_id(block.parent_id)
    if not blocks:
        return Refused(RefusalReason.UNKNOWN_BLOCK, f"unknown block {request.block_id.hex()[:16]}")
    return BlockResponse(tuple(blocks))


def answer_sync_request(request: SyncRequest, chain: CommittedChain, config: ReplicaConfig) -> SyncResponse:
    """Committed blocks from the requested height on, within the response budget (at least one
    if we have any); an empty response if we have none from there."""
    limit = min(request.max_blocks, wire.MAX_BLOCKS_PER_RESPONSE)
    budget = wire.response_budget_bytes(config.validators.n)
    blocks, qc = chain.committed_range(request.start_height, limit, budget)
    return SyncResponse(blocks, qc)
