"""The safety rules: the only holder of the validator's key, so the only code that signs votes,
timeouts and proposals.

Owns: the vote rule, the lock, the timeout-signing and proposal-signing rules, for the commit
rule the genesis chose (`bft.core.commit_rule`), and the persistence discipline:
the new safety state is saved durably through the injected store BEFORE a vote or timeout is
returned, and a request for a view already signed returns the identical stored bytes.
May not: send anything, or sign anything its rules do not allow.

The two rule sets, one lock field. Three-chain (chained HotStuff): the lock is the QC inside the
highest certified block (the two-chain lock), and a vote must extend the locked block or carry a
newer QC. Two-chain (Jolteon, DiemBFT v4): the lock is the highest QC seen (Jolteon's "one-chain
round"), raised by every vote to the voted block's QC and saved with the vote; a vote needs the
block's QC to be for the view just before it, or, after a TC for that view, to be at least the
TC's high QC; and a timeout is signed only with a high QC at or above the lock. Why that is
enough: if b commits (b <- b' in views v, v+1, a QC for b'), 2f+1 validators voted for b' and so
hold a lock >= v. A later block is certified only if f+1 honest validators voted for it: either
its QC is for the view before it (by induction, a block extending b), or it follows a TC whose
2f+1 signers include an honest voter of b' that timed out after voting (our rules refuse a vote
in a view timed out in), whose high QC, and so the TC's, is >= v: the block's QC is then a QC
of view >= v, again on b's branch.
"""

from __future__ import annotations

from dataclasses import replace

from bft.core import wire
from bft.core.batches import BatchAck, BatchInfo
from bft.core.blocktree import BlockTree, genesis
from bft.core.certs import Certifier
from bft.core.commit_rule import THREE_CHAIN, TWO_CHAIN
from bft.core.errors import InvariantViolation
from bft.core.messages import Block, Proposal, QuorumCert, SafetyState, Timeout, TimeoutCert, Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.safety_store import SafetyStore
from bft.core.types import ValidatorIndex, View
from crypto.keys import PrivateKey


def initial_state(genesis_qc: QuorumCert) -> SafetyState:
    return SafetyState(
        last_voted_view=View(0),
        locked_qc=genesis_qc,
        highest_timeout_view=View(0),
        last_vote=None,
        last_timeout=None,
    )


def first_state(chain_id: str) -> SafetyState:
    """The safety record a validator starts a new chain with: `bft testnet` and the simulator
    write it before a validator's first start, so that a missing record always means a lost one
    (`bft.core.recovery`)."""
    return initial_state(genesis(chain_id)[1])


def respects_lock(block: Block, tree: BlockTree, locked_qc: QuorumCert) -> bool:
    """The lock half of the vote rule: the block extends the locked block, or its QC is newer
    than the lock. A locked block at or below the committed root is implied by the root."""
    if block.qc.view > locked_qc.view:
        return True
    if locked_qc.block_id in tree:
        return tree.extends(block, locked_qc.block_id)
    return locked_qc.view <= tree.root.view


def follows_its_certificate(block: Block, tc: TimeoutCert | None) -> Refused | None:
    """The two-chain vote rule (Jolteon): `block`'s QC is for the view just before it, or `tc`
    (verified, the proposal's) is for that view and `block`'s QC is at least its high QC."""
    if block.qc.view + 1 == block.view:
        return None
    if tc is None or tc.view + 1 != block.view:
        detail = f"QC view {block.qc.view} is not the previous view and no TC for it"
        return Refused(RefusalReason.BELOW_TC_HIGH_QC, detail)
    if block.qc.view < tc.high_qc.view:
        detail = f"QC view {block.qc.view} is below the high QC view {tc.high_qc.view} of the TC"
        return Refused(RefusalReason.BELOW_TC_HIGH_QC, detail)
    return None


def _acted_in(view: View, state: SafetyState) -> Refused | None:
    """Why nothing more may be signed for `view`: we voted or timed out in it or above."""
    if view <= state.last_voted_view:
        return Refused(RefusalReason.ALREADY_VOTED, f"already voted in view {state.last_voted_view}")
    if view <= state.highest_timeout_view:
        return Refused(RefusalReason.ALREADY_TIMED_OUT, f"timed out in view {state.highest_timeout_view}")
    return None


_RECOVERING = Refused(RefusalReason.RECOVERING, "the safety record was lost; recovering")


class SafetyRules:
    """Holds the safety state of one validator; persisted on every signature."""

    def __init__(
        self,
        key: PrivateKey,
        me: ValidatorIndex,
        store: SafetyStore,
        certifier: Certifier,
        genesis_qc: QuorumCert,
        commit_chain: int = THREE_CHAIN,
    ) -> None:
        self._key = key
        self._two_chain = commit_chain == TWO_CHAIN
        self._me = me
        self._store = store
        self._certifier = certifier
        loaded = store.load()
        # No record is a lost record (`bft testnet` writes the first one): sign nothing until
        # `finish_recovery` (see `bft.core.recovery`).
        self._recovering = loaded is None
        self._state = loaded if loaded is not None else initial_state(genesis_qc)

    @property
    def state(self) -> SafetyState:
        return self._state

    @property
    def recovering(self) -> bool:
        return self._recovering

    def finish_recovery(self, floor: View, high_qc: QuorumCert) -> None:
        """End a recovery (`bft.core.recovery`): durably, sign nothing at or below `floor` and
        lock on `high_qc` if it is newer than the lock; then signing may resume."""
        if not self._recovering:
            raise InvariantViolation("finish_recovery without a recovery")
        state = self._state
        self._persist(
            replace(
                state,
                last_voted_view=max(state.last_voted_view, floor),
                highest_timeout_view=max(state.highest_timeout_view, floor),
                locked_qc=high_qc if high_qc.view > state.locked_qc.view else state.locked_qc,
            )
        )
        self._recovering = False

    def observe_certified(self, certified: Block, qc: QuorumCert) -> None:
        """A verified `qc` certifies `certified`: the lock rises to `certified`'s own QC (the
        three-chain rule's two-chain lock) or to `qc` itself (the two-chain rule's highest QC),
        if newer. It is saved with the next signature: a lock that no vote relied on may be
        forgotten in a crash without harm (a two-chain vote raises the lock it relies on itself).
        """
        self._state = self._locked_on(self._state, qc if self._two_chain else certified.qc)

    @staticmethod
    def _locked_on(state: SafetyState, qc: QuorumCert) -> SafetyState:
        return replace(state, locked_qc=qc) if qc.view > state.locked_qc.view else state

    def vote(self, block: Block, tree: BlockTree, tc: TimeoutCert | None = None) -> Vote | Refused:
        """A vote for `block` (already checked valid and in the tree; `tc` is its proposal's), or
        the reason for none."""
        if self._recovering:
            return _RECOVERING
        state = self._state
        if block.view == state.last_voted_view and state.last_vote is not None:
            previous = wire.decode(state.last_vote)
            if isinstance(previous, Vote) and previous.view == block.view:
                return previous  # the identical bytes, whatever block is asked for now
        refused = _acted_in(block.view, state)
        if refused is not None:
            return refused
        if self._two_chain:
            refused = follows_its_certificate(block, tc)
            if refused is not None:
                return refused
            state = self._locked_on(state, block.qc)
        elif not respects_lock(block, tree, state.locked_qc):
            detail = f"block conflicts with the lock at view {state.locked_qc.view}"
            return Refused(RefusalReason.LOCK_CONFLICT, detail)
        vote = self._certifier.sign_vote(self._key, self._me, block.view, block.id)
        self._persist(replace(state, last_voted_view=block.view, last_vote=wire.encode(vote)))
        return vote

    def sign_proposal(self, block: Block, tc: TimeoutCert | None) -> Proposal | Refused:
        """Our signed proposal of `block`, or the reason for none: only for a view above every
        view we voted or timed out in (a restarted leader that already acted in a view must not
        propose a second block for it; its vote for its own proposal is what records the view)."""
        if self._recovering:
            return _RECOVERING
        state = self._state
        if block.proposer != self._me:
            return Refused(
                RefusalReason.NOT_OURS, f"block's proposer {block.proposer} is not us ({self._me})"
            )
        refused = _acted_in(block.view, state)
        if refused is not None:
            return refused
        return Proposal(block, tc, self._certifier.sign_proposal(self._key, block))

    def sign_batch_ack(self, info: BatchInfo) -> BatchAck | Refused:
        """Our acknowledgement of a batch the quorum store just kept durably. No safety state:
        acknowledging a batch twice only says twice that we hold it."""
        if self._recovering:
            return _RECOVERING
        return self._certifier.sign_batch_ack(self._key, self._me, info)

    def timeout(self, view: View, high_qc: QuorumCert) -> Timeout | Refused:
        """A timeout for `view` carrying `high_qc`, or the reason for none."""
        if self._recovering:
            return _RECOVERING
        state = self._state
        if view == state.highest_timeout_view and state.last_timeout is not None:
            previous = wire.decode(state.last_timeout)
            if isinstance(previous, Timeout) and previous.view == view:
                return previous
        if view <= state.highest_timeout_view:
            detail = f"already timed out in view {state.highest_timeout_view}"
            return Refused(RefusalReason.ALREADY_TIMED_OUT, detail)
        if view < state.last_voted_view:
            detail = f"view {view} is below the last voted view {state.last_voted_view}"
            return Refused(RefusalReason.BELOW_LAST_VOTE, detail)
        if high_qc.view < state.locked_qc.view:
            # The two-chain rule's safety needs it (a TC's high QC covers every signer's lock);
            # under the three-chain rule the high QC is never below the lock anyway.
            detail = f"high QC view {high_qc.view} is below the lock at view {state.locked_qc.view}"
            return Refused(RefusalReason.BELOW_LOCK, detail)
        timeout = self._certifier.sign_timeout(self._key, self._me, view, high_qc)
        self._persist(replace(state, highest_timeout_view=view, last_timeout=wire.encode(timeout)))
        return timeout

    def _persist(self, new: SafetyState) -> None:
        old = self._state
        if (
            new.last_voted_view < old.last_voted_view
            or new.highest_timeout_view < old.highest_timeout_view
            or new.locked_qc.view < old.locked_qc.view
        ):
            raise InvariantViolation("safety state would regress")
        self._store.save(new)
        self._state = new
