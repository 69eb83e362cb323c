"""The replica: chained HotStuff with a timeout-certificate pacemaker, as a pure state machine.

Owns: dispatching each input to the protocol's parts, in order, and nothing else of its own
but the view (through the pacemaker). The parts: the chain state (block tree, high QC, commits
through the executed-state port), the safety rules (the only signer), vote collection, view
sync (timeouts, TCs, SyncInfo), the proposer, the proposal rules, the block fetcher and the
quorum store (batches and their proofs of availability, when the genesis enables it). Every
effect leaves as an Action; every refusal is a typed `Refusal` (a `RefusalReason` and a
detail), and equivocation seen in votes or proposals leaves as `Evidence`.
May not: perform I/O, read clocks or randomness (time comes in as `now`), or be built except by
`bft.core.builder.build_replica`.
"""

from __future__ import annotations

from bft.core.actions import Action, Broadcast, Commit, Evidence, Refusal, Send, ViewChange
from bft.core.batches import Batch, BatchAck, BatchProofs, BatchRequest, BatchResponse
from bft.core.certs import Certifier
from bft.core.chain_state import ChainState
from bft.core.config import ReplicaConfig
from bft.core.equivocation import ProposalLog
from bft.core.errors import InvariantViolation
from bft.core.fetcher import BlockFetcher, holder_of
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    RecoveryProbe,
    RecoveryReport,
    SafetyState,
    SyncInfo,
    SyncRequest,
    SyncResponse,
    Timeout,
    TimeoutCert,
    Vote,
)
from bft.core.pacemaker import Pacemaker
from bft.core.ports import Ports
from bft.core.proposal_rules import (
    check_failed_leaders,
    check_leader,
    check_proposal,
    check_timeout,
    check_vote,
)
from bft.core.proposer import Proposer
from bft.core.quorum_store import QuorumStore
from bft.core.recovery import Recovery
from bft.core.refusals import RefusalReason, Refused, Subject
from bft.core.safety import SafetyRules
from bft.core.types import BlockId, ValidatorIndex, View
from bft.core.view_sync import ViewSync
from bft.core.votes import VoteCollector, double_vote_detail


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        ports: Ports,
        certifier: Certifier,
        safety: SafetyRules,
        now: float,
        recovery_nonce: bytes,
    ) -> None:
        """Start (or restart) from durable state: the chain state reloads the committed tip and
        the journal, view sync the highest TC, `safety` loaded the safety state; if it found
        none, a recovery (`bft.core.recovery`) probing with `recovery_nonce` starts."""
        self._config = config
        self._me = config.me
        self._ports = ports
        self._certifier = certifier
        self._safety = safety
        self._store = QuorumStore(config, certifier, safety, ports.batches, ports.committed)
        self._chain = ChainState(config, ports, safety, self._store)
        self._sync = ViewSync(config, certifier, safety, ports.journal)
        self._pacemaker = Pacemaker(config, self._sync.start_view(self.high_qc), now)
        self._votes = VoteCollector(config.validators)
        self._proposer = Proposer(config, ports.payload, safety, self._store)
        self._fetcher = BlockFetcher(config, certifier)
        self._proposals = ProposalLog()
        self._out: list[Action] = []
        self._recovery = (
            Recovery(
                config.validators,
                config.me,
                recovery_nonce,
                config.base_timeout_s,
                config.max_views_ahead,
                now,
            )
            if safety.recovering
            else None
        )
        # When we last answered each validator's recovery probe (one answer per half base timeout).
        self._reported_at: dict[ValidatorIndex, float] = {}
        # The first on_timer call (due at once) lets the leader of the start view propose.
        self._started_at: float | None = now

    # Read-only views for drivers, tests and the simulator.

    @property
    def view(self) -> View:
        return self._pacemaker.view

    @property
    def committed_height(self) -> int:
        return self._chain.tree.root.height

    @property
    def last_committed(self) -> Block:
        return self._chain.tree.root

    @property
    def high_qc(self) -> QuorumCert:
        return self._chain.high_qc

    @property
    def last_tc(self) -> TimeoutCert | None:
        return self._sync.last_tc

    @property
    def safety_state(self) -> SafetyState:
        return self._safety.state

    def timeout_authors(self, view: View) -> frozenset[ValidatorIndex]:
        """The validators whose verified timeouts for `view` are held (ours included once we
        timed out in it); empty for views pruned or not reached."""
        return self._sync.timeout_authors(view)

    def has_block(self, block_id: BlockId) -> bool:
        """Whether the block is in the tree (the committed root or an uncommitted block)."""
        return block_id in self._chain.tree

    def statistics(self) -> dict[str, int]:
        """Sizes of everything the replica holds, for metrics and the bounded-state invariant."""
        held = {"vote_views": self._votes.views_held(), "timeout_views": self._sync.views_held()}
        parts = {**self._fetcher.statistics(), **self._store.statistics()}
        return {"tree_blocks": len(self._chain.tree), "view": self.view, **held, **parts}

    def check_invariants(self) -> None:
        """Raise InvariantViolation if the replica's own state is inconsistent (after any input)."""
        if self._safety.state.locked_view > self.high_qc.view:
            raise InvariantViolation("the lock is above the high QC")
        # Votes and timeouts are kept for the window of views check_window admits.
        window = self._config.max_views_ahead + 2
        if self._votes.views_held() > window or self._sync.views_held() > window:
            raise InvariantViolation(f"votes or timeouts held for more than {window} views")
        self._fetcher.check_bounds()
        self._store.check_bounds()

    @property
    def recovery(self) -> Recovery | None:
        """The recovery of a lost safety record, while it runs (None otherwise)."""
        return self._recovery if self._recovery is not None and self._recovery.done is None else None

    def next_deadline(self) -> float | None:
        if self._started_at is not None:
            return self._started_at
        deadlines = [self._pacemaker.deadline, self._proposer.deadline(self.view), self._store.deadline()]
        if self._recovery is not None:
            deadlines.append(self._recovery.deadline)
        return min(d for d in deadlines if d is not None)

    # Inputs.

    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not self._config.validators.contains(sender) or sender == self._me:
            detail = f"unknown or own sender {sender} ({type(msg).__name__})"
            return [Refusal(Subject.MESSAGE, RefusalReason.UNKNOWN_SENDER, detail, None, sender)]
        match msg:
            case Proposal():
                self._on_proposal(sender, msg, now)
            case Vote():
                self._on_vote(sender, msg, now)
            case Timeout():
                self._on_timeout(sender, msg, now)
            case SyncInfo():
                self._on_sync_info(sender, msg, now)
            case RecoveryProbe():
                self._on_recovery_probe(sender, msg, now)
            case RecoveryReport():
                self._on_recovery_report(sender, msg, now)
            case Batch() | BatchAck() | BatchProofs() | BatchRequest() | BatchResponse():
                self._on_quorum_store(sender, msg, now)
            case BlockRequest() | BlockResponse() | SyncRequest() | SyncResponse():
                tree, committed = self._chain.tree, self._ports.committed
                fetched = self._fetcher.on_message(sender, msg, tree, committed, now, self._out)
                if fetched is not None:
                    self._insert_chain(sender, fetched[0], now)
                if fetched is not None and fetched[1] is not None:
                    self._commit_synced(fetched[0], fetched[1], sender, now)
                    self._fetcher.continue_sync(sender, self._chain.tree, now, self._out)
        return self._take_actions()

    def on_timer(self, now: float) -> list[Action]:
        if self._started_at is not None:
            self._started_at = None
            if self._chain.restart_qc is not None:
                # Fetch the journal's high QC's block if no journal had it, and apply what it
                # certifies (lock, commits) now that actions can be returned.
                self._on_qc(self._chain.restart_qc, now, None)
            if self.view == self.high_qc.view + 1:
                self._propose(now)
        if self._proposer.expire(self.view, now):
            self._propose(now, wait=False)
        self._store.on_timer(now, self._out)
        probe = self._recovery.probe(now) if self._recovery is not None else None
        if probe is not None:
            self._out.append(Broadcast(probe))
        if now >= self._pacemaker.deadline:
            self._pacemaker.on_local_timeout(now)
            self._local_timeout(self._pacemaker.view, now)
            self._fetcher.retry(now, self._chain.tree, self._out)
        return self._take_actions()

    def on_payload(self, now: float) -> list[Action]:
        if self._config.quorum_store:
            self._make_batches()
        elif self._proposer.deadline(self.view) is not None:
            self._propose(now)
        return self._take_actions()

    def _make_batches(self) -> None:
        self._store.make_batches(self.view, self.committed_height, self._ports.payload, self._out)

    # The quorum store (`bft.core.quorum_store`).

    def _on_quorum_store(
        self,
        sender: ValidatorIndex,
        msg: Batch | BatchAck | BatchProofs | BatchRequest | BatchResponse,
        now: float,
    ) -> None:
        store, out, height = self._store, self._out, self.committed_height
        match msg:
            case Batch():
                if store.on_batch(sender, msg, height, out):
                    self._retry_commit(now)
            case BatchAck():
                if store.on_ack(sender, msg, out):
                    self._on_new_proofs(now)
            case BatchProofs():
                if store.on_proofs(sender, msg, height, out):
                    self._on_new_proofs(now)
            case BatchRequest():
                store.on_batch_request(sender, msg, now, out)
            case BatchResponse():
                if store.on_batch_response(sender, msg, out):
                    self._retry_commit(now)

    def _on_new_proofs(self, now: float) -> None:
        """A proof to propose: an idle leader waits no more; a batch slot freed, so pack more."""
        if self._proposer.deadline(self.view) is not None:
            self._propose(now)
        self._make_batches()

    def _retry_commit(self, now: float) -> None:
        commit = self._chain.retry_commit(now, self._out)
        if commit is not None:
            self._on_committed(commit)
            self._propose(now)

    def _take_actions(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _refuse(
        self, sender: ValidatorIndex | None, view: View | None, what: Subject, refused: Refused
    ) -> None:
        self._out.append(Refusal.of(what, refused, view, sender))

    # Proposals.

    def _on_proposal(self, sender: ValidatorIndex, proposal: Proposal, now: float) -> None:
        block = proposal.block
        late = self._fetcher.is_certified_late(block.id)
        refused = check_proposal(self._config, self._certifier, self.view, sender, proposal, late)
        if refused is not None:
            self._refuse(sender, block.view, Subject.PROPOSAL, refused)
            return
        if block.parent_id not in self._chain.tree:
            # Far behind: block sync brings the ancestors (and the hash fetches below wait for it).
            self._fetcher.need_height(block.height, block.qc.view, sender, self._chain.tree, now, self._out)
        if proposal.tc is not None:
            self._on_tc(proposal.tc, now)
        self._on_qc(block.qc, now, sender)
        parent = self._chain.tree.get(block.parent_id)
        if late and parent is not None:
            # A late proposal for a block already certified: store it, too late to vote.
            if self._chain.check_extension(block, parent) is None:
                self._insert_chain(sender, (block,), now)
            return
        if block.view != self.view:
            detail = f"for view {block.view} while in view {self.view}"
            refused = Refused(RefusalReason.NOT_CURRENT_VIEW, detail)
            self._refuse(sender, block.view, Subject.PROPOSAL, refused)
            return
        if parent is not None and self._config.leader_reputation:
            # The leader by the parent's window (a proposal whose parent is fetched first comes
            # back here once it lands).
            refused = check_leader(block, self._chain.leader(block.view, parent))
            if refused is None:
                refused = check_failed_leaders(block, self._chain.failed_leaders(block.view, parent))
            if refused is not None:
                self._refuse(sender, block.view, Subject.PROPOSAL, refused)
                return
        # Checked and signed, for the view we are in: a second block for it is evidence.
        evidence = self._proposals.observe(proposal)
        self._out.extend(() if evidence is None else (evidence,))
        if parent is None:
            self._fetcher.fetch(block.parent_id, sender, now, self._out)
            refused = self._fetcher.wait_proposal(sender, proposal)
            if refused is not None:
                self._refuse(sender, block.view, Subject.PROPOSAL, refused)
            return
        self._on_valid_block(sender, block, proposal.tc, now)

    def _on_valid_block(
        self, sender: ValidatorIndex, block: Block, tc: TimeoutCert | None, now: float
    ) -> None:
        """A checked proposal (`block` and its `tc`) for the current view whose parent is in the
        tree: store and vote."""
        if block.id not in self._chain.tree:
            refused = self._chain.add_block(block)
            if refused is not None:
                self._refuse(sender, block.view, Subject.PROPOSAL, refused)
                return
        vote = self._safety.vote(block, self._chain.tree, tc)
        if isinstance(vote, Refused):
            self._refuse(sender, block.view, Subject.PROPOSAL, Refused(vote.reason, f"not voting: {vote}"))
            return
        next_leader = self._chain.leader(View(block.view + 1), block)
        if next_leader == self._me:
            self._on_vote(self._me, vote, now)
        else:
            self._out.append(Send(next_leader, vote))

    def _propose(self, now: float, wait: bool = True) -> None:
        """Propose in the current view if we lead it, once its justification and parent are here."""
        proposal = self._proposer.propose(self.view, now, self._chain, self._sync.last_tc, wait)
        if isinstance(proposal, Refused):
            self._refuse(self._me, self.view, Subject.OWN_PROPOSAL, proposal)
        elif proposal is not None:
            self._out.append(Broadcast(proposal))
            self._on_valid_block(self._me, proposal.block, proposal.tc, now)

    # Votes, QCs and commits.

    def _on_vote(self, sender: ValidatorIndex, vote: Vote, now: float) -> None:
        refused = check_vote(self._config, self._certifier, self.view, sender, vote, self._next_leader(vote))
        if refused is not None:
            self._refuse(sender, vote.view, Subject.VOTE, refused)
            self._send_sync_info_if_behind(sender, View(vote.view + 1), now)
            return
        result = self._votes.add(vote)
        if isinstance(result, Evidence):
            self._out.append(result)
            result = Refused(RefusalReason.VOTE_CONFLICT, double_vote_detail(vote))
        if isinstance(result, Refused):
            self._refuse(sender, vote.view, Subject.VOTE, result)
        elif result is not None:
            self._on_qc(result, now, None)

    def _next_leader(self, vote: Vote) -> ValidatorIndex | None:
        """Who collects `vote`: the leader of the next view, by the voted block's window under
        leader reputation (None if that block is not here yet: the vote is taken, bounded by the
        collector, and only a leader's proposal, checked against the schedule, can use it)."""
        if not self._config.leader_reputation:
            return leader_of(self._config, View(vote.view + 1))
        block = self._chain.tree.get(vote.block_id)
        return None if block is None else self._chain.leader(View(vote.view + 1), block)

    def leader_of_view(self, view: View) -> ValidatorIndex:
        """The leader of `view` for a proposal extending the high QC's block (the root's window if
        that block is not here): what an operator sees, and whom a Byzantine wrapper addresses."""
        parent = self._chain.tree.get(self._chain.high_qc.block_id) or self._chain.tree.root
        return self._chain.leader(view, parent)

    def next_leader_after(self, block_id: BlockId, view: View) -> ValidatorIndex:
        """Who collects votes for the block `block_id` of `view` (the high QC's window if it is not here)."""
        block = self._chain.tree.get(block_id)
        if block is None:
            return self.leader_of_view(View(view + 1))
        return self._chain.leader(View(view + 1), block)

    def _on_qc(self, qc: QuorumCert, now: float, source: ValidatorIndex | None) -> None:
        """A verified QC: update high QC, lock and commits (or fetch its block), then enter the
        next view."""
        if self._chain.is_missing(qc):
            self._fetcher.wait_qc(qc)
            self._fetcher.fetch(qc.block_id, holder_of(self._config, qc, source), now, self._out)
        commit = self._chain.apply_qc(qc, now, self._out)
        if commit is not None:
            self._on_committed(commit)
        self._enter(View(qc.view + 1), now, via="qc")

    def _on_committed(self, commit: Commit) -> None:
        self._fetcher.on_commit(commit.blocks[-1])
        self._out.append(commit)
        if self._config.quorum_store:
            self._make_batches()  # the commit freed batch slots

    def _enter(self, view: View, now: float, via: str) -> None:
        if not self._pacemaker.enter(view, now, progress=via == "qc"):
            return
        self._out.append(ViewChange(view, via))
        self._votes.prune_below(View(view - 1))
        self._sync.prune_below(View(view - 1))
        self._chain.on_view(view)
        self._proposals.prune_below(View(view - 1))
        self._fetcher.on_view(view)
        self._propose(now)

    # Timeouts and TCs.

    def _on_timeout(self, sender: ValidatorIndex, timeout: Timeout, now: float) -> None:
        refused = check_timeout(self._config, self._certifier, self.view, sender, timeout)
        if refused is not None:
            self._refuse(sender, timeout.view, Subject.TIMEOUT, refused)
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        self._on_qc(timeout.high_qc, now, sender)
        if timeout.view < self.view:
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        result = self._sync.add_timeout(timeout)
        if isinstance(result, TimeoutCert):
            self._on_tc(result, now)
        elif result is not None:
            self._enter(result, now, via="timeouts")
            self._local_timeout(result, now)

    def _local_timeout(self, view: View, now: float) -> None:
        tc = self._sync.local_timeout(view, self.high_qc, self._out)
        if tc is not None:
            self._on_tc(tc, now)

    def _on_tc(self, tc: TimeoutCert, now: float) -> None:
        """A verified TC: remember it for the next proposal, then enter the view after it."""
        self._sync.record_tc(tc)
        self._on_qc(tc.high_qc, now, None)
        self._enter(View(tc.view + 1), now, via="tc")

    # Recovering a lost safety record (`bft.core.recovery`).

    def _on_recovery_probe(self, sender: ValidatorIndex, probe: RecoveryProbe, now: float) -> None:
        if self.recovery is not None:
            return  # a recovering validator's own view proves nothing; it stays silent
        if now < self._reported_at.get(sender, -float("inf")) + self._config.base_timeout_s / 2:
            detail = "another recovery probe within half a base timeout"
            self._refuse(sender, None, Subject.RECOVERY, Refused(RefusalReason.RATE_LIMITED, detail))
            return
        self._reported_at[sender] = now
        self._out.append(Send(sender, RecoveryReport(probe.nonce, self.view, self.high_qc, self.last_tc)))

    def _on_recovery_report(self, sender: ValidatorIndex, report: RecoveryReport, now: float) -> None:
        recovery = self.recovery
        if recovery is None:
            detail = "a recovery report while not recovering"
            self._refuse(sender, report.view, Subject.RECOVERY, Refused(RefusalReason.NOT_REQUESTED, detail))
            return
        refused = self._certifier.check_qc(report.high_qc)
        if refused is None and report.high_tc is not None:
            refused = self._certifier.check_tc(report.high_tc)
        if refused is None:
            refused = recovery.on_report(sender, report)
        if refused is not None:
            self._refuse(sender, report.view, Subject.RECOVERY, refused)
            return
        done = recovery.done
        if done is not None:
            self._safety.finish_recovery(done.floor, done.high_qc)
        # Its certificates are as good as a SyncInfo's: catch up with them.
        self._on_qc(report.high_qc, now, sender)
        if report.high_tc is not None:
            self._on_tc(report.high_tc, now)

    # Catching up.

    def _send_sync_info_if_behind(self, peer: ValidatorIndex, peer_view: View, now: float) -> None:
        self._sync.send_sync_info(peer, peer_view, self.view, self.high_qc, now, self._out)

    def _on_sync_info(self, sender: ValidatorIndex, info: SyncInfo, now: float) -> None:
        refused = self._sync.check_sync_info(info)
        if refused is not None:
            self._refuse(sender, None, Subject.SYNC_INFO, refused)
            return
        self._on_qc(info.high_qc, now, sender)
        if info.high_tc is not None:
            self._on_tc(info.high_tc, now)

    def _commit_synced(
        self, run: tuple[Block, ...], top_qc: QuorumCert, sender: ValidatorIndex, now: float
    ) -> None:
        """Commit what a synced run of committed blocks commits: its highest three-chain inside
        (certified by the QC its next block carries), then whatever its top QC commits.

        Why the inner one: the commit rule needs three direct parents with consecutive views
        under a QC. A run whose top blocks are not such a chain (views skipped by timeouts, common
        in a history with a Byzantine leader or faults) committed nothing, stayed in the tree,
        and after two such runs the sync paused for a commit that could never come: a node
        wiped in a chaos run stayed 900 blocks behind for good."""
        inner = self._chain.highest_commit_within(run)
        if inner is not None and self._certifier.check_qc(inner) is None:
            self._on_qc(inner, now, sender)
        self._on_qc(top_qc, now, sender)

    def _insert_chain(self, sender: ValidatorIndex, chain: tuple[Block, ...], now: float) -> None:
        """Insert fetched blocks, oldest first (hash-linked to a verified QC), then resume what waited."""
        inserted, refused = self._chain.insert_chain(chain)
        if refused is not None:
            self._refuse(sender, chain[len(inserted)].view, Subject.FETCHED_BLOCK, refused)
        for block in inserted:
            landed = self._fetcher.land(block.id)
            if landed.orphans is not None:
                self._insert_chain(sender, landed.orphans, now)
            if landed.qc is not None:
                self._on_qc(landed.qc, now, None)
            for waiting_sender, proposal in landed.proposals:
                self._on_proposal(waiting_sender, proposal, now)
        self._propose(now)
