"""Byzantine leaders that fork with blocks no simple validity check refuses: both blocks of an
equivocation to the same replicas, forks off an older certified block than the high QC, and a
block hung off another parent than the block its QC certifies.

Owns: SameTargetEquivocator, ForkParent, DetachedParent, and `certified_sibling` (a valid block for
a new view on an older certified parent, with the app claim an honest replica computes for it).
May not: break the Behaviour frame (only rewrite what the inner replica sends); state is bounded
(a few held-back sends, one block id, one withheld QC and at most n timeouts).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour
from bft.core.actions import Action, Broadcast, Send
from bft.core.messages import Block, Message, Proposal, QuorumCert, SyncInfo, Timeout, TimeoutCert, Vote
from bft.core.types import BlockId, ValidatorIndex

# How far below the high QC's block a fork goes: 1 forks off its parent (the lock of whoever saw
# the high QC, so honest replicas vote), 2 and 3 go under the lock, where only the lock stops it.
FORK_DEPTHS = (1, 2, 2, 3)


def certified_sibling(
    blocks: dict[BlockId, Block], high_qc: QuorumCert, depth: int, template: Block
) -> Block | None:
    """A block like `template` (its view, proposer and transactions) that extends the parent of
    the block `depth - 1` steps below the high QC's block, None if that chain is not remembered.

    The walk ends at a certified block `child` (the high QC's block or an ancestor of it, each
    certified by the QC its child carries); the result is `child`'s sibling: the same parent,
    the same QC for it, the same height and the same app claim. The claim is a function of the
    parent and grandparent alone (`bft.core.app_state.claim_height`), and `child`'s claim is
    the true one (a quorum checked it when it certified `child`), so the sibling claims exactly
    what an honest replica computes for that parent: only the lock and the vote rule stand in
    its way."""
    child = blocks.get(high_qc.block_id)
    for _ in range(depth - 1):
        if child is None:
            return None
        child = blocks.get(child.parent_id)
    if child is None or child.height < 1:
        return None
    return replace(child, view=template.view, proposer=template.proposer, txs=template.txs)


class SameTargetEquivocator(Behaviour):
    """As leader, sends BOTH of two conflicting blocks for its view to EVERY peer, each peer
    getting them in its own random order, and a quarter of the second copies held back until its
    next input (so that votes, timeouts and the other block interleave with them); it votes for
    both. The twin has the original's parent, QC and app claim and other transactions; after a
    TC, half the time it extends an older certified block instead. Unlike `equivocate` (one
    block per half), every honest replica sees the equivocation, and each must still vote at
    most once in the view."""

    name = "equivocate-same"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # At most one held-back proposal per peer, released at the next input or timer.
        self._held: list[Action] = []

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        return self._release()

    def on_timer(self, now: float) -> list[Action]:
        return super().on_timer(now) + self._release()

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        original = action.msg
        block = original.block
        twin_block = self._twin(block, original.tc)
        self._remember_block(twin_block)
        twin = self.propose(twin_block, original.tc)
        out: list[Action] = []
        held: list[Action] = []
        for peer in self.peers:
            first, second = (original, twin) if self.rng.random() < 0.5 else (twin, original)
            out.append(Send(peer, first))
            (held if self.rng.random() < 0.25 else out).append(Send(peer, second))
        self._held = held
        # The inner replica votes for the original itself; this is the second vote of the view.
        return out + self.vote_to_next_leader(block.view, twin_block.id)

    def _twin(self, block: Block, tc: TimeoutCert | None) -> Block:
        marker = b"equivocate-same/%d/%d" % (block.view, self.rng.getrandbits(32))
        if tc is not None and self.rng.random() < 0.5:
            sibling = certified_sibling(self.blocks, block.qc, self.rng.choice(FORK_DEPTHS), block)
            if sibling is not None:
                return replace(sibling, txs=(*block.txs, marker))
        return replace(block, txs=(*block.txs[1:], marker))

    def _release(self) -> list[Action]:
        out, self._held = self._held, []
        return out


class ForkParent(Behaviour):
    """As leader, proposes (and votes for) a block that extends an older certified block than its
    high QC: the parent of the high QC's block, or one or two blocks further down, with the QC
    that certifies that parent, a height that follows it and the app claim an honest replica
    computes for it (`certified_sibling`). A block that skips views needs a TC for the previous
    view: it forks whenever its proposal carries one, and to get one, half the time it leads two
    views in a row it withholds the first proposal, lets the view time out and forks in the
    second. Whether anyone votes is up to the lock: this probes the vote rule, not validity."""

    name = "fork-parent"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The inner replica's block that was withheld or replaced: its own vote for it is dropped.
        self._replaced: BlockId | None = None

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if isinstance(action, Send) and isinstance(action.msg, Vote):
            return [] if action.msg.block_id == self._replaced else [action]
        if not (isinstance(action, Broadcast) and isinstance(action.msg, Proposal)):
            return [action]
        original = action.msg
        block = original.block
        tc = original.tc
        if tc is None:
            if self.next_leader(block.view, block.id) == self.me and self.rng.random() < 0.5:
                self._replaced = block.id  # this view times out; the next one, ours too, forks
                return []
            return [action]
        fork = certified_sibling(self.blocks, block.qc, self.rng.choice(FORK_DEPTHS), block)
        if fork is None:
            return [action]
        self._replaced = block.id
        self._remember_block(fork)
        return [Broadcast(self.propose(fork, tc)), *self.vote_to_next_leader(fork.view, fork.id)]


class DetachedParent(Behaviour):
    """As leader after a three-chain b <- b' <- b'' of consecutive views (b <- b' under the
    two-chain rule: read b' for b'' below), withholds the QC for b'' that its inner replica formed
    (the QC that commits b): drops the proposal that carries it and
    every message of its own that would. Honest replicas time out in the view of b''; from their
    timeouts (and one of its own) it builds the TC for that view, whose high QC is the one for b',
    and proposes in its view a block that carries that QC but hangs off the parent of b, as a
    sibling of b: its height and the app claim an honest replica computes for that parent.
    Honest replicas are locked on b (the QC for b' is inside b''), and the QC it carries is newer
    than that lock, so the vote rule lets them vote: only the rule that a block's parent is the
    block its QC certifies stops it. Once a later view has a proposal, it releases the withheld
    QC: replicas commit b, which the detached block's QC, if one formed, conflicts with. It takes
    half of its chances; otherwise it proposes as an honest leader."""

    name = "detached-parent"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._withheld: QuorumCert | None = None
        self._template: Block | None = None  # the inner replica's proposal that carried it
        self._timeouts: dict[ValidatorIndex, Timeout] = {}
        self._forked = False

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not isinstance(action, Broadcast | Send):
            return [action]
        msg = action.msg
        withheld = self._withheld
        if withheld is None:
            if (
                isinstance(action, Broadcast)
                and isinstance(msg, Proposal)
                and self._closes_commit_chain(msg)
                and self.rng.random() < 0.5
            ):
                self._withheld, self._template, self._forked = msg.block.qc, msg.block, False
                self._timeouts = {}
                return []
            return [action]
        if _carries(msg, withheld):
            return []
        template = self._template
        if isinstance(msg, Vote) and template is not None and msg.block_id == template.id:
            return []
        return [action]

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        withheld, template = self._withheld, self._template
        if withheld is None or template is None:
            return []
        if isinstance(msg, Proposal) and msg.block.view > template.view:
            return self._release(withheld)
        if self._forked or not isinstance(msg, Timeout) or msg.view != withheld.view:
            return []
        if msg.author != sender or self.certifier.check_timeout(msg) is not None:
            return []
        self._timeouts[msg.author] = msg
        return self._fork(withheld, template)

    def _closes_commit_chain(self, proposal: Proposal) -> bool:
        """Whether the proposal's QC commits a block (height 1 or more) under the genesis'
        rule: b <- b' <- b'' (or b <- b' for the two-chain) in consecutive views."""
        if proposal.tc is not None:
            return False
        current = self.blocks.get(proposal.block.qc.block_id)
        for _ in range(self.config.commit_chain - 1):
            parent = None if current is None else self.blocks.get(current.parent_id)
            if current is None or parent is None or parent.view + 1 != current.view:
                return False
            current = parent
        return current is not None and current.height >= 1

    def _fork(self, withheld: QuorumCert, template: Block) -> list[Action]:
        if len(self._timeouts) + 1 < self.config.validators.quorum:
            return []
        high = max((t.high_qc for t in self._timeouts.values()), key=lambda qc: qc.view)
        own = self.certifier.sign_timeout(self.key, self.me, withheld.view, high)
        chosen = [*self._timeouts.values(), own]
        signatures = tuple(sorted((t.author, t.high_qc.view, t.signature) for t in chosen))
        tc = TimeoutCert(withheld.view, high, signatures)
        # The sibling of the block below the one `high` certifies: same parent, height, app claim.
        sibling = certified_sibling(self.blocks, high, 2, template)
        if sibling is None:
            return []
        self._forked = True
        marker = b"detached-parent/%d" % template.view
        fork = replace(sibling, qc=high, txs=(*template.txs, marker))
        self._remember_block(fork)
        return [Broadcast(self.propose(fork, tc)), *self.vote_to_next_leader(fork.view, fork.id)]

    def _release(self, withheld: QuorumCert) -> list[Action]:
        self._withheld, self._template, self._timeouts = None, None, {}
        return [Broadcast(SyncInfo(withheld, None))]


def _carries(msg: Message, qc: QuorumCert) -> bool:
    """Whether `msg` would show `qc` to its receiver."""
    if isinstance(msg, Proposal):
        return msg.block.qc == qc or (msg.tc is not None and msg.tc.high_qc == qc)
    if isinstance(msg, Timeout | SyncInfo):
        return msg.high_qc == qc
    return False
