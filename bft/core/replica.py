"""The replica: chained HotStuff with a timeout-certificate pacemaker, as a pure state machine.

Owns: dispatching each input to the protocol's parts and the state that ties them together
(high QC, last TC, blocks per view): the block tree, the safety rules (the only signer), vote and
timeout collection, the pacemaker, the commit rule, the proposer, the proposal rules and the
block fetcher. Every effect leaves as an Action; commits leave through the executed-state port;
every refusal is a typed `Refusal` (a `RefusalReason` and a detail), and equivocation seen in
votes or proposals leaves as `Evidence`.
May not: perform I/O, read clocks or randomness (time comes in as `now`), or be built except by
`bft.core.builder.build_replica`.
"""

from __future__ import annotations

from bft.core.actions import Action, Broadcast, Commit, Evidence, Refusal, Send, ViewChange
from bft.core.blocktree import BlockTree, genesis
from bft.core.certs import Certifier
from bft.core.commit_rule import committed_by
from bft.core.config import ReplicaConfig
from bft.core.equivocation import ProposalLog
from bft.core.errors import InvariantViolation
from bft.core.fetcher import BlockFetcher, answer_block_request, answer_sync_request, holder_of
from bft.core.journal import reload_journal
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
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
from bft.core.proposal_rules import AppClaim, app_claim, check_extension, check_proposal, check_window
from bft.core.proposer import Proposer
from bft.core.refusals import RefusalReason, Refused, Subject
from bft.core.safety import SafetyRules
from bft.core.types import BlockId, ValidatorIndex, View
from bft.core.votes import TimeoutCollector, VoteCollector, double_vote_detail


class Replica:
    def __init__(
        self, config: ReplicaConfig, ports: Ports, certifier: Certifier, safety: SafetyRules, now: float
    ) -> None:
        """Start (or restart) from durable state: the committed chain's tip is the root, the
        journal's blocks and highest TC are reloaded, the safety state was loaded by `safety`."""
        self._config = config
        self._me = config.me
        self._ports = ports
        self._certifier = certifier
        self._safety = safety
        root = ports.committed.tip() or genesis(config.chain_id)
        self._tree = BlockTree(*root)
        reloaded = reload_journal(self._tree, ports.journal)
        self._high_qc = max((root[1], safety.state.locked_qc, *reloaded), key=lambda qc: qc.view)
        self._last_tc = ports.journal.high_tc()
        state = safety.state
        tc_view = self._last_tc.view + 1 if self._last_tc is not None else 0
        start = max(self._high_qc.view + 1, tc_view, state.last_voted_view, state.highest_timeout_view)
        self._pacemaker = Pacemaker(config, View(start), now)
        self._votes = VoteCollector(config.validators)
        self._timeouts = TimeoutCollector(config.validators)
        self._proposer = Proposer(config, ports.payload, safety)
        self._fetcher = BlockFetcher(config, certifier)
        self._blocks_in_view: dict[View, int] = {}
        self._proposals = ProposalLog()
        self._synced_peer: dict[ValidatorIndex, tuple[View, float]] = {}
        self._out: list[Action] = []
        # The first on_timer call (due at once) lets the leader of the start view propose.
        self._started_at: float | None = now
        self._restart_qc = self._high_qc if self._high_qc.view > root[1].view else None

    # Read-only views for drivers, tests and the simulator.

    @property
    def view(self) -> View:
        return self._pacemaker.view

    @property
    def committed_height(self) -> int:
        return self._tree.root.height

    @property
    def last_committed(self) -> Block:
        return self._tree.root

    @property
    def high_qc(self) -> QuorumCert:
        return self._high_qc

    @property
    def safety_state(self) -> SafetyState:
        return self._safety.state

    def statistics(self) -> dict[str, int]:
        """Sizes of everything the replica holds, for metrics and the bounded-state invariant."""
        return {"tree_blocks": len(self._tree), "view": self.view, **self._fetcher.statistics()}

    def check_invariants(self) -> None:
        """Raise InvariantViolation if the replica's own state is inconsistent (after any input)."""
        if self._safety.state.locked_view > self._high_qc.view:
            raise InvariantViolation("the lock is above the high QC")
        # Votes and timeouts are kept for the window of views check_window admits.
        window = self._config.max_views_ahead + 2
        if self._votes.views_held() > window or self._timeouts.views_held() > window:
            raise InvariantViolation(f"votes or timeouts held for more than {window} views")
        self._fetcher.check_bounds()

    def next_deadline(self) -> float | None:
        if self._started_at is not None:
            return self._started_at
        deferred = self._proposer.deadline(self.view)
        return self._pacemaker.deadline if deferred is None else min(deferred, self._pacemaker.deadline)

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
            case BlockRequest():
                answer = answer_block_request(msg, self._tree, self._ports.committed, self._config)
                if isinstance(answer, Refused):
                    self._refuse(sender, None, Subject.BLOCK_REQUEST, answer)
                else:
                    self._out.append(Send(sender, answer))
            case BlockResponse():
                chain = self._fetcher.on_block_response(sender, msg, self._tree, now, self._out)
                if chain is not None:
                    self._insert_chain(sender, chain, now)
            case SyncRequest():
                self._out.append(Send(sender, answer_sync_request(msg, self._ports.committed, self._config)))
            case SyncResponse():
                self._on_sync_response(sender, msg, now)
        return self._take_actions()

    def on_timer(self, now: float) -> list[Action]:
        if self._started_at is not None:
            self._started_at = None
            if self._restart_qc is not None:
                # A restart resumes from the journal's high QC: fetch its block if no journal had
                # it, and apply what it certifies (lock, commits) now that actions can be returned.
                self._on_qc(self._restart_qc, now, None)
            if self.view == self._high_qc.view + 1:
                self._propose(now)
        if self._proposer.expire(self.view, now):
            self._propose(now, wait=False)
        if now >= self._pacemaker.deadline:
            self._pacemaker.on_local_timeout(now)
            self._local_timeout(self._pacemaker.view, now)
            self._fetcher.retry(now, self._tree, self._out)
        return self._take_actions()

    def on_payload(self, now: float) -> list[Action]:
        if self._proposer.deadline(self.view) is not None:
            self._propose(now)
        return self._take_actions()

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
        if block.parent_id not in self._tree:
            # Far behind: block sync brings the ancestors (and the hash fetches below wait for it).
            self._fetcher.need_height(block.height, block.qc.view, sender, self._tree, now, self._out)
        if proposal.tc is not None:
            self._on_tc(proposal.tc, now)
        self._on_qc(block.qc, now, sender)
        parent = self._tree.get(block.parent_id)
        if late and parent is not None:
            # A late proposal for a block already certified: store it, too late to vote.
            if self._check_extension(block, parent) is None:
                self._insert_chain(sender, (block,), now)
            return
        if block.view != self.view:
            detail = f"for view {block.view} while in view {self.view}"
            self._refuse(
                sender, block.view, Subject.PROPOSAL, Refused(RefusalReason.NOT_CURRENT_VIEW, detail)
            )
            return
        # Checked and signed, for the view we are in: a second block for it is evidence.
        self._add_evidence(self._proposals.observe(proposal))
        if parent is None:
            self._fetcher.fetch(block.parent_id, sender, now, self._out)
            refused = self._fetcher.wait_proposal(sender, proposal)
            if refused is not None:
                self._refuse(sender, block.view, Subject.PROPOSAL, refused)
            return
        self._on_valid_block(sender, block, parent, now)

    def _on_valid_block(self, sender: ValidatorIndex, block: Block, parent: Block, now: float) -> None:
        """A checked proposal for the current view whose parent is in the tree: store and vote."""
        if block.id not in self._tree:
            refused = self._check_extension(block, parent)
            if refused is not None:
                self._refuse(sender, block.view, Subject.PROPOSAL, refused)
                return
            self._tree.add(block)
            self._blocks_in_view[block.view] = self._blocks_in_view.get(block.view, 0) + 1
            self._ports.journal.add((block,))
        vote = self._safety.vote(block, self._tree)
        if isinstance(vote, Refused):
            self._refuse(sender, block.view, Subject.PROPOSAL, Refused(vote.reason, f"not voting: {vote}"))
            return
        next_leader = leader_of(self._config, View(block.view + 1))
        if next_leader == self._me:
            self._on_vote(self._me, vote, now)
        else:
            self._out.append(Send(next_leader, vote))

    def _check_extension(self, block: Block, parent: Block) -> Refused | None:
        count = self._blocks_in_view.get(block.view, 0)
        pending = self._pending_txs(parent)
        return check_extension(block, parent, count, self._claim(parent), pending, self._is_committed)

    def _claim(self, parent: Block) -> AppClaim:
        grandparent = self._known_block(parent.parent_id) if parent.height > 0 else None
        return app_claim(parent, grandparent, self._ports.executed)

    def _pending_txs(self, tip: Block) -> set[bytes]:
        return {tx for b in self._tree.ancestors(tip) for tx in b.txs}

    def _is_committed(self, tx: bytes) -> bool:
        # The executed-state port made every commit durable before returning, so the committed
        # chain already answers for blocks committed earlier in this same input.
        return self._ports.committed.has_tx(tx)

    def _known_block(self, block_id: BlockId) -> Block | None:
        return self._tree.get(block_id) or self._ports.committed.block_by_id(block_id)

    def _propose(self, now: float, wait: bool = True) -> None:
        """Propose in the current view if we lead it, once its justification and parent are here."""
        view = self.view
        if leader_of(self._config, view) != self._me or self._proposer.has_proposed(view):
            return
        parent = self._tree.get(self._high_qc.block_id)
        tc = self._last_tc if view != self._high_qc.view + 1 else None
        if parent is None or (view != self._high_qc.view + 1 and (tc is None or tc.view + 1 != view)):
            return  # proposes once the high QC's block lands, or a TC for the previous view
        pending = self._pending_txs(parent)
        proposal = self._proposer.propose(
            view, now, parent, self._high_qc, tc, pending, self._claim(parent), wait
        )
        if isinstance(proposal, Refused):
            self._refuse(self._me, view, Subject.OWN_PROPOSAL, proposal)
        elif proposal is not None:
            self._out.append(Broadcast(proposal))
            self._on_valid_block(self._me, proposal.block, parent, now)

    # Votes, QCs and commits.

    def _on_vote(self, sender: ValidatorIndex, vote: Vote, now: float) -> None:
        refused = _check_author(vote.author, sender) or check_window(self._config, self.view, vote.view)
        if refused is None and leader_of(self._config, View(vote.view + 1)) != self._me:
            refused = Refused(RefusalReason.NOT_NEXT_LEADER, f"not the leader of view {vote.view + 1}")
        refused = refused or self._certifier.check_vote(vote)
        if refused is not None:
            self._refuse(sender, vote.view, Subject.VOTE, refused)
            self._send_sync_info_if_behind(sender, View(vote.view + 1), now)
            return
        result = self._votes.add(vote)
        if isinstance(result, Evidence):
            detail = double_vote_detail(vote)
            self._refuse(sender, vote.view, Subject.VOTE, Refused(RefusalReason.VOTE_CONFLICT, detail))
            self._add_evidence(result)
        elif isinstance(result, Refused):
            self._refuse(sender, vote.view, Subject.VOTE, result)
        elif result is not None:
            self._on_qc(result, now, None)

    def _add_evidence(self, evidence: Evidence | None) -> None:
        if evidence is not None:
            self._out.append(evidence)

    def _on_qc(self, qc: QuorumCert, now: float, source: ValidatorIndex | None) -> None:
        """A verified QC: update high QC, lock and commits, then enter the next view."""
        if qc.view > self._high_qc.view:
            self._high_qc = qc
        certified = self._tree.get(qc.block_id)
        if certified is None:
            if qc.view > self._tree.root.view and self._ports.committed.block_by_id(qc.block_id) is None:
                self._fetcher.wait_qc(qc)
                self._fetcher.fetch(qc.block_id, holder_of(self._config, qc, source), now, self._out)
        else:
            self._tree.record_qc(qc)
            self._safety.observe_certified(certified)
            block = committed_by(self._tree, certified)
            if block is not None and block.height > self._tree.root.height:
                self._commit(block, qc, certified)
        self._enter(View(qc.view + 1), now, via="qc")

    def _commit(self, block: Block, commit_qc: QuorumCert, certified: Block) -> None:
        """Commit `block` and its uncommitted ancestors; `certified` (b'', certified by
        `commit_qc`) and its parent b' close the three-chain and go with the commit as its proof.
        Executed now, through the port, not when the driver gets the action: a vote later in this
        input checks a claim about the height just committed. And before the journal lets go of
        these blocks, so that a crash in between finds them in one place or the other."""
        middle = self._tree.parent(certified)
        # (No proof if they do not chain to `block`: only a broken commit rule does that, and
        # whoever checks proofs, the simulator's checkers or a client, then refuses the commit.)
        proof = (middle, certified) if middle is not None and middle.parent_id == block.id else ()
        blocks, qcs = self._tree.commit(block)
        commit = Commit(blocks, qcs, commit_qc, proof)
        self._ports.executed.on_commit(commit)
        self._ports.journal.prune_to(block.height)
        self._fetcher.on_commit(block)
        self._out.append(commit)

    def _enter(self, view: View, now: float, via: str) -> None:
        if not self._pacemaker.enter(view, now, progress=via == "qc"):
            return
        self._out.append(ViewChange(view, via))
        self._votes.prune_below(View(view - 1))
        self._timeouts.prune_below(View(view - 1))
        self._blocks_in_view = {v: c for v, c in self._blocks_in_view.items() if v >= view - 1}
        self._proposals.prune_below(View(view - 1))
        self._fetcher.on_view(view)
        self._propose(now)

    # Timeouts and TCs.

    def _on_timeout(self, sender: ValidatorIndex, timeout: Timeout, now: float) -> None:
        refused = _check_author(timeout.author, sender) or check_window(self._config, self.view, timeout.view)
        refused = (
            refused or self._certifier.check_timeout(timeout) or self._certifier.check_qc(timeout.high_qc)
        )
        if refused is not None:
            self._refuse(sender, timeout.view, Subject.TIMEOUT, refused)
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        self._on_qc(timeout.high_qc, now, sender)
        if timeout.view < self.view:
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        count, tc = self._timeouts.add(timeout)
        if tc is not None:
            self._on_tc(tc, now)
        elif self._timeouts.joins(count) and timeout.view > self._safety.state.highest_timeout_view:
            # f+1 timeouts: at least one honest replica gave up on this view, so join it.
            self._enter(timeout.view, now, via="timeouts")
            self._local_timeout(timeout.view, now)

    def _local_timeout(self, view: View, now: float) -> None:
        timeout = self._safety.timeout(view, self._high_qc)
        if isinstance(timeout, Refused):
            self._refuse(self._me, view, Subject.OWN_TIMEOUT, timeout)
            return
        self._out.append(Broadcast(timeout))
        _, tc = self._timeouts.add(timeout)
        if tc is not None:
            self._on_tc(tc, now)

    def _on_tc(self, tc: TimeoutCert, now: float) -> None:
        """A verified TC: remember it for the next proposal, then enter the view after it."""
        if self._last_tc is None or tc.view > self._last_tc.view:
            self._last_tc = tc
            self._ports.journal.save_tc(tc)
        self._on_qc(tc.high_qc, now, None)
        self._enter(View(tc.view + 1), now, via="tc")

    # Catching up.

    def _send_sync_info_if_behind(self, peer: ValidatorIndex, peer_view: View, now: float) -> None:
        """A peer's message shows it is in an older view: send it our certificates, at most once
        per view of ours and base timeout (its copy may have been lost)."""
        if peer_view >= self.view:
            return
        last = self._synced_peer.get(peer)
        if last is not None and last[0] == self.view and now - last[1] < self._config.base_timeout_s:
            return
        self._synced_peer[peer] = (self.view, now)
        self._out.append(Send(peer, SyncInfo(self._high_qc, self._last_tc)))

    def _on_sync_info(self, sender: ValidatorIndex, info: SyncInfo, now: float) -> None:
        refused = self._certifier.check_qc(info.high_qc)
        if refused is None and info.high_tc is not None:
            refused = self._certifier.check_tc(info.high_tc)
        if refused is not None:
            self._refuse(sender, None, Subject.SYNC_INFO, refused)
            return
        self._on_qc(info.high_qc, now, sender)
        if info.high_tc is not None:
            self._on_tc(info.high_tc, now)

    def _on_sync_response(self, sender: ValidatorIndex, response: SyncResponse, now: float) -> None:
        run = self._fetcher.on_sync_response(sender, response, self._tree, self._out)
        if run is None:
            return
        chain, qc = run
        self._insert_chain(sender, chain, now)
        self._on_qc(qc, now, sender)  # the commit rule commits the run's three-chains
        self._fetcher.continue_sync(sender, self._tree, now, self._out)

    def _insert_chain(self, sender: ValidatorIndex, chain: tuple[Block, ...], now: float) -> None:
        """Insert fetched blocks, oldest first (hash-linked to a verified QC), then resume what waited."""
        inserted: list[Block] = []
        for block in chain:
            parent = self._tree.get(block.parent_id)
            if parent is None or block.height != parent.height + 1 or block.view <= parent.view:
                refused = Refused(RefusalReason.BAD_CHAIN, "does not follow its parent")
                self._refuse(sender, block.view, Subject.FETCHED_BLOCK, refused)
                break
            self._tree.add(block)
            inserted.append(block)
        if inserted:
            self._ports.journal.add(inserted)
        for block in inserted:
            landed = self._fetcher.land(block.id)
            if landed.orphans is not None:
                self._insert_chain(sender, landed.orphans, now)
            if landed.qc is not None:
                self._on_qc(landed.qc, now, None)
            for waiting_sender, proposal in landed.proposals:
                self._on_proposal(waiting_sender, proposal, now)
        self._propose(now)


def _check_author(author: ValidatorIndex, sender: ValidatorIndex) -> Refused | None:
    if author == sender:
        return None
    return Refused(RefusalReason.NOT_THE_SENDER, f"author {author} is not the sender {sender}")
