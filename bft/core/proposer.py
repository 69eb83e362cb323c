"""The leader's side: when to propose, with which transactions, and the block it builds.

Owns: when the leader of a view may propose (its justification, the high QC's block and, after
a view without a QC, the TC for it, are here), the pacing rule (below), the block limits applied
to the payload (transactions, or under the quorum store proofs of availability from its queue),
the one proposal per view, and the block itself; the safety rules sign it.

Pacing: no batch clock. A leader proposes the moment it may if there is anything to propose:
transactions in the mempool, or transactions in the chain that need descendants, either to
commit (uncommitted blocks with transactions) or to tell the others they committed (the QC a
proposal carries is how followers learn of a commit, so the three blocks ending at the high QC's
block count). Only an idle leader waits, up to `max_batch_delay_s`, and a transaction arriving
meanwhile (`on_payload`) ends the wait: empty blocks are paced, transactions never are. Under
load the batch is what arrived during the previous view, so blocks grow with the load by
themselves.
May not: check other proposals or send: the replica does.
"""

from __future__ import annotations

from bft.core.batches import BatchProof, fit_limits
from bft.core.chain_state import ChainState
from bft.core.config import ReplicaConfig
from bft.core.messages import Block, Proposal, TimeoutCert
from bft.core.ports import PayloadSource
from bft.core.quorum_store import QuorumStore
from bft.core.refusals import RefusalReason, Refused
from bft.core.safety import SafetyRules
from bft.core.types import View


class Proposer:
    def __init__(
        self, config: ReplicaConfig, payload: PayloadSource, safety: SafetyRules, store: QuorumStore
    ) -> None:
        self._config = config
        self._payload = payload
        self._store = store
        self._safety = safety
        self._proposed_view = View(0)
        # An idle leader's proposal, paced: (view, when it goes out regardless).
        self._deferred: tuple[View, float] | None = None

    def deadline(self, view: View) -> float | None:
        """When the paced (idle) proposal for `view` goes out regardless, if one waits."""
        return self._deferred[1] if self._deferred is not None and self._deferred[0] == view else None

    def expire(self, view: View, now: float) -> bool:
        """Whether a deferred proposal for `view` is due; a due one is no longer deferred, so its
        deadline never stays in the past (it goes out now with `wait=False`, or, if it cannot yet,
        when what it waits for arrives)."""
        if self._deferred is None or self._deferred[0] != view or now < self._deferred[1]:
            return False
        self._deferred = None
        return True

    def has_proposed(self, view: View) -> bool:
        return self._proposed_view >= view

    def propose(
        self, view: View, now: float, chain: ChainState, last_tc: TimeoutCert | None, wait: bool
    ) -> Proposal | Refused | None:
        """Our proposal for `view` if we lead it and have not proposed in it yet, extending the
        high QC's block, with none of the uncommitted ancestors' transactions (the payload source
        leaves out committed ones). None until the justification is here, or while an idle
        proposal is paced (only with `wait`); the reason if refused."""
        high_qc = chain.high_qc
        parent = chain.tree.get(high_qc.block_id)
        if parent is None or chain.leader(view, parent) != self._config.me or self.has_proposed(view):
            return None  # proposes once the high QC's block lands, if it leads the view then
        tc = last_tc if view != high_qc.view + 1 else None
        if view != high_qc.view + 1 and (tc is None or tc.view + 1 != view):
            return None  # or once a TC for the previous view is here
        config = self._config
        txs: tuple[bytes, ...] = ()
        batches: tuple[BatchProof, ...] = ()
        if config.quorum_store:
            pending = chain.pending_batches(parent)
            batches = self._store.proofs_for(parent.height + 1, chain.tree.root.height, pending)
        else:
            pending = chain.pending_txs(parent)
            txs = fit_limits(
                self._payload.payload_for(view, pending), config.max_block_txs, config.max_block_bytes
            )
        idle = not txs and not batches and not pending and not chain.awaits_descendants(parent)
        if wait and config.max_batch_delay_s > 0 and idle:
            if self._deferred is None or self._deferred[0] != view:
                self._deferred = (view, now + self._config.max_batch_delay_s)
            return None
        self._deferred = None
        app_height, app_hash = chain.claim(parent)
        if app_hash is None:
            return Refused(
                RefusalReason.APP_NOT_EXECUTED, f"app state at height {app_height} not executed here"
            )
        block = Block(
            view,
            parent.height + 1,
            parent.id,
            config.me,
            high_qc,
            txs,
            app_height,
            app_hash,
            batches,
            chain.failed_leaders(view, parent),
        )
        proposal = self._safety.sign_proposal(block, tc)
        if isinstance(proposal, Proposal):
            self._proposed_view = view
        return proposal
