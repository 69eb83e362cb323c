"""The replica facade: chained HotStuff with a timeout-certificate pacemaker, as a pure state machine.

Owns: dispatching each verified-or-refused input to the protocol's parts (block tree, safety rules,
vote and timeout collection, pacemaker, commit rule), proposing when leader, fetching missing
ancestors, and returning every effect as an Action.
May not: perform I/O, read clocks or randomness; time comes in as `now`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection
from typing import Protocol

from bft.core import wire
from bft.core.actions import Action, Broadcast, Commit, Refusal, Send, ViewChange
from bft.core.app_state import BlockHashChain, ExecutedState, claim_height
from bft.core.blocktree import BlockTree, genesis
from bft.core.certs import Certifier
from bft.core.commit_rule import committed_by
from bft.core.config import ReplicaConfig
from bft.core.journal import BlockJournal
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
    Timeout,
    TimeoutCert,
    Vote,
)
from bft.core.pacemaker import Pacemaker
from bft.core.safety import SafetyRules
from bft.core.safety_store import SafetyStore
from bft.core.types import BlockId, ValidatorIndex, View
from bft.core.votes import TimeoutCollector, VoteCollector
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

# An honest leader proposes one block per view; a few more cover a Byzantine leader's
# equivocations without letting it grow the tree without bound.
MAX_BLOCKS_PER_VIEW = 4


class PayloadSource(Protocol):
    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        """Transactions for this replica's proposal in `view`, none of them in `exclude`."""
        ...


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        key: PrivateKey,
        store: SafetyStore,
        payload: PayloadSource,
        root: tuple[Block, QuorumCert] | None = None,
        now: float = 0.0,
        sig_cache: SignatureCache | None = None,
        committed_tx: Callable[[bytes], bool] | None = None,
        committed_block: Callable[[BlockId], Block | None] | None = None,
        journal: BlockJournal | None = None,
        app_state: ExecutedState | None = None,
    ) -> None:
        """Start (or restart) a replica. The safety state is loaded from `store`. `root` is the last
        committed block with the QC certifying it (None: genesis). `committed_tx` answers whether a
        transaction is already committed, `committed_block` looks up a committed block by id to
        serve peers that catch up; by default both remember what was committed since start, in
        memory (fine for simulations; a node passes lookups backed by its block store).
        `journal` keeps uncommitted blocks durable: blocks are journaled before they are voted
        for, and a restart reloads them (see `bft.core.journal` for why).
        `app_state` executes every commit as it happens and answers app hashes, which proposals
        commit to and votes check (see `bft.core.app_state`); by default a hash chain over
        committed block ids (`BlockHashChain`)."""
        self._config = config
        self._key = key
        self._payload = payload
        self._me = config.me
        genesis_block, genesis_qc = genesis(config.chain_id)
        root_block, root_qc = root if root is not None else (genesis_block, genesis_qc)
        self._certifier = Certifier(config.chain_id, config.validators, genesis_qc, sig_cache)
        self._tree = BlockTree(root_block, root_qc)
        self._safety = SafetyRules(key, config.me, store, self._certifier, genesis_qc)
        self._journal = journal
        self._high_qc = max((root_qc, *self._reload_journal()), key=lambda qc: qc.view)
        self._last_tc = journal.high_tc() if journal is not None else None
        state = self._safety.state
        tc_view = self._last_tc.view + 1 if self._last_tc is not None else 0
        start = max(self._high_qc.view + 1, tc_view, state.last_voted_view, state.highest_timeout_view)
        self._pacemaker = Pacemaker(config, View(start), now)
        self._votes = VoteCollector(config.validators)
        self._timeouts = TimeoutCollector(config.validators)
        self._proposed_view = View(0)
        # A proposal waiting for a fuller batch: (view, when it goes out regardless).
        self._deferred: tuple[View, float] | None = None
        self._blocks_in_view: dict[View, int] = {}
        # Waiting for a missing block: proposals and QCs keyed by the block they need, chains of
        # fetched blocks keyed by their oldest block's missing parent, outstanding fetches.
        self._waiting_proposals: dict[BlockId, list[tuple[ValidatorIndex, Proposal]]] = {}
        self._waiting_qcs: dict[BlockId, QuorumCert] = {}
        self._orphans: dict[BlockId, tuple[Block, ...]] = {}
        self._fetching: dict[BlockId, tuple[ValidatorIndex, float]] = {}
        self._synced_peer: dict[ValidatorIndex, tuple[View, float]] = {}
        # With injected lookups these stay empty: the node's block store remembers instead.
        self._committed_blocks: dict[BlockId, Block] = {}
        self._committed_txs: set[bytes] = set()
        self._remember_commits = committed_tx is None or committed_block is None
        self._committed_tx = committed_tx if committed_tx is not None else self._committed_txs.__contains__
        self._committed_block = committed_block if committed_block is not None else self._committed_blocks.get
        if self._remember_commits:
            self._committed_blocks[root_block.id] = root_block
        self._app_state: ExecutedState = app_state if app_state is not None else BlockHashChain(root_block)
        self._out: list[Action] = []
        # Transactions of blocks committed while handling the current input: the driver learns
        # of them (and `committed_tx` answers for them) only once the Commit action is carried out.
        self._just_committed: set[bytes] = set()
        # The first on_timer call (due at once) lets the leader of the start view propose.
        self._started_at: float | None = now
        self._restart_qc = self._high_qc if self._high_qc.view > root_qc.view else None

    def _reload_journal(self) -> list[QuorumCert]:
        """Put journaled blocks that extend the root back in the tree; return the QCs known from
        them (each block's own QC) and the lock, so the high QC survives a restart."""
        if self._journal is None:
            return []
        qcs = [self._safety.state.locked_qc]
        for block in sorted(self._journal.blocks(), key=lambda b: b.height):
            parent = self._tree.get(block.parent_id)
            if block.id in self._tree or parent is None:
                continue
            if block.height == parent.height + 1 and block.view > parent.view:
                self._tree.add(block)
                qcs.append(block.qc)
        return qcs

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

    def next_deadline(self) -> float | None:
        if self._started_at is not None:
            return self._started_at
        if self._deferred is not None and self._deferred[0] == self.view:
            return min(self._deferred[1], self._pacemaker.deadline)
        return self._pacemaker.deadline

    # Inputs.

    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if not self._config.validators.contains(sender) or sender == self._me:
            return [Refusal(sender, None, type(msg).__name__, f"unknown or own sender {sender}")]
        if isinstance(msg, Proposal):
            self._on_proposal(sender, msg, now)
        elif isinstance(msg, Vote):
            self._on_vote(sender, msg, now)
        elif isinstance(msg, Timeout):
            self._on_timeout(sender, msg, now)
        elif isinstance(msg, SyncInfo):
            self._on_sync_info(sender, msg, now)
        elif isinstance(msg, BlockRequest):
            self._on_block_request(sender, msg)
        else:
            self._on_block_response(sender, msg, now)
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
        if self._deferred is not None and self._deferred[0] == self.view and now >= self._deferred[1]:
            self._propose(now, wait=False)
        if now >= self._pacemaker.deadline:
            self._pacemaker.on_local_timeout(now)
            self._local_timeout(self._pacemaker.view, now)
            self._retry_fetches(now)
        return self._take_actions()

    def on_payload(self, now: float) -> list[Action]:
        if self._deferred is not None and self._deferred[0] == self.view:
            self._propose(now)
        return self._take_actions()

    def _take_actions(self) -> list[Action]:
        """End of an input: hand the actions over. The driver carries out the Commit actions before
        the next input, so from then on `committed_tx` covers them."""
        out, self._out = self._out, []
        self._just_committed = set()
        return out

    def _refuse(self, sender: ValidatorIndex | None, view: View | None, what: str, reason: str) -> None:
        self._out.append(Refusal(sender, view, what, reason))

    # Proposals.

    def _on_proposal(self, sender: ValidatorIndex, proposal: Proposal, now: float) -> None:
        block = proposal.block
        reason = self._check_proposal(sender, proposal)
        if reason is not None:
            self._refuse(sender, block.view, "proposal", reason)
            return
        if proposal.tc is not None:
            self._on_tc(proposal.tc, now)
        self._on_qc(block.qc, now, sender)
        if block.id in self._waiting_qcs and block.parent_id in self._tree:
            # A late proposal for a block already certified: store it, too late to vote.
            if self._check_extension(block) is None:
                self._insert_chain(sender, (block,), now)
            return
        if block.view != self.view:
            self._refuse(sender, block.view, "proposal", f"for view {block.view} while in view {self.view}")
            return
        if block.parent_id not in self._tree:
            self._wait_for(block.parent_id, sender, now)
            if self._waiting_count() >= self._config.max_pending_blocks:
                self._refuse(sender, block.view, "proposal", "too many proposals wait for ancestors")
            else:
                self._waiting_proposals.setdefault(block.parent_id, []).append((sender, proposal))
            return
        self._on_valid_block(sender, block, now)

    def _check_proposal(self, sender: ValidatorIndex, proposal: Proposal) -> str | None:
        """Stateless and signature checks of a proposal; None if it may proceed."""
        block, tc, config = proposal.block, proposal.tc, self._config
        if block.proposer != sender:
            return f"author {block.proposer} is not the sender {sender}"
        if block.view < self.view and block.id not in self._waiting_qcs:
            return f"stale: view {block.view} is below the current view {self.view}"
        leader = leader_of(config, block.view)
        if block.proposer != leader:
            return f"wrong leader for view {block.view}: {block.proposer}, expected {leader}"
        if block.parent_id != block.qc.block_id:
            return "parent is not the block its QC certifies"
        if block.qc.view >= block.view:
            return f"QC view {block.qc.view} is not below the block's view {block.view}"
        if len(block.txs) > config.max_block_txs:
            return f"{len(block.txs)} transactions exceed the limit of {config.max_block_txs}"
        if sum(len(tx) for tx in block.txs) > config.max_block_bytes:
            return f"transactions exceed the limit of {config.max_block_bytes} bytes"
        if tc is not None and tc.view + 1 != block.view:
            return f"carries a TC for view {tc.view}, not the previous view"
        # A QC justifies the view after it, a TC the view after its own. Which QC a block extends
        # after a TC is the lock's business: the vote rule, not this check, keeps forks out.
        if block.view != block.qc.view + 1 and tc is None:
            return "skips views without a TC for the previous view"
        reason = self._certifier.check_proposal_signature(block, proposal.signature)
        if reason is None:
            reason = self._certifier.check_qc(block.qc)
        if reason is None and tc is not None:
            reason = self._certifier.check_tc(tc)
        return reason

    def _on_valid_block(self, sender: ValidatorIndex, block: Block, now: float) -> None:
        """A checked proposal for the current view whose parent is in the tree: store and vote."""
        if block.id not in self._tree:
            reason = self._check_extension(block)
            if reason is not None:
                self._refuse(sender, block.view, "proposal", reason)
                return
            self._tree.add(block)
            self._blocks_in_view[block.view] = self._blocks_in_view.get(block.view, 0) + 1
            if self._journal is not None:
                self._journal.add((block,))
        vote = self._safety.vote(block, self._tree)
        if isinstance(vote, str):
            self._refuse(sender, block.view, "proposal", f"not voting: {vote}")
            return
        next_leader = leader_of(self._config, View(block.view + 1))
        if next_leader == self._me:
            self._on_vote(self._me, vote, now)
        else:
            self._out.append(Send(next_leader, vote))

    def _check_extension(self, block: Block) -> str | None:
        """Checks that need the parent: height, per-view cap, no transaction committed twice."""
        parent = self._tree.get(block.parent_id)
        if parent is None or block.height != parent.height + 1:
            return "height does not follow its parent"
        if self._blocks_in_view.get(block.view, 0) >= MAX_BLOCKS_PER_VIEW:
            return f"more than {MAX_BLOCKS_PER_VIEW} blocks for view {block.view}"
        reason = self._check_app_state(block, parent)
        if reason is not None:
            return reason
        if len(set(block.txs)) != len(block.txs):
            return "a transaction appears twice in the block"
        pending = self._pending_txs(parent)
        for tx in block.txs:
            if tx in pending or self._is_committed(tx):
                return "a transaction is already in the chain"
        return None

    def _check_app_state(self, block: Block, parent: Block) -> str | None:
        """The block claims the app hash of the height its chain fixes (`claim_height`), and the
        hash is the one we got executing that height (or its parent's claim, if the same height)."""
        height, app_hash = self._app_claim(parent)
        if block.app_height != height:
            return f"app height {block.app_height}, the chain fixes {height}"
        if app_hash is None:
            return f"app state at height {height} not executed here"
        if block.app_hash != app_hash:
            claimed, ours = block.app_hash.hex()[:16], app_hash.hex()[:16]
            return f"app hash at height {height} is {claimed}, ours is {ours}"
        return None

    def _app_claim(self, parent: Block) -> tuple[int, bytes | None]:
        """The (height, app hash) a child of `parent` must claim; the hash is None if we have not
        executed that height (never the case after handling the QC for `parent`)."""
        height = claim_height(parent, self._known_block(parent.parent_id) if parent.height > 0 else None)
        if height == parent.app_height:
            return height, parent.app_hash
        return height, self._app_state.app_hash_at(height)

    def _pending_txs(self, tip: Block) -> set[bytes]:
        return {tx for b in self._tree.ancestors(tip) for tx in b.txs}

    def _note_just_committed(self, blocks: tuple[Block, ...]) -> None:
        for b in blocks:
            self._just_committed.update(b.txs)

    def _is_committed(self, tx: bytes) -> bool:
        return tx in self._just_committed or self._committed_tx(tx)

    def _propose(self, now: float, wait: bool = True) -> None:
        """Propose in the current view if we lead it and may. With `wait`, a batch that is not
        ready yet (see `_batch_ready`) is deferred up to `max_batch_delay_s`."""
        view = self.view
        if leader_of(self._config, view) != self._me or self._proposed_view >= view:
            return
        state = self._safety.state
        if view <= state.last_voted_view or view <= state.highest_timeout_view:
            return  # a restarted leader that already acted in this view stays out of it
        parent = self._tree.get(self._high_qc.block_id)
        if parent is None:
            return  # proposes once the fetch of its high QC's block lands
        tc = None
        if view != self._high_qc.view + 1:
            tc = self._last_tc
            if tc is None or tc.view + 1 != view:
                return
        pending = self._pending_txs(parent)
        txs = self._fit_limits(self._payload.payload_for(view, pending | self._just_committed))
        if wait and self._config.max_batch_delay_s > 0 and not self._batch_ready(txs, pending):
            if self._deferred is None or self._deferred[0] != view:
                self._deferred = (view, now + self._config.max_batch_delay_s)
            return
        self._deferred = None
        app_height, app_hash = self._app_claim(parent)
        if app_hash is None:
            reason = f"app state at height {app_height} not executed here"
            self._refuse(self._me, view, "own proposal", reason)
            return
        block = Block(view, parent.height + 1, parent.id, self._me, self._high_qc, txs, app_height, app_hash)
        proposal = Proposal(block, tc, self._certifier.sign_proposal(self._key, block))
        self._proposed_view = view
        self._out.append(Broadcast(proposal))
        self._on_valid_block(self._me, block, now)

    def _batch_ready(self, txs: tuple[bytes, ...], pending: set[bytes]) -> bool:
        """Propose at once: the batch is full, or uncommitted ancestors hold transactions that
        need descendants to commit."""
        if pending or len(txs) >= self._config.max_block_txs:
            return True
        return 2 * sum(len(tx) for tx in txs) >= self._config.max_block_bytes

    def _fit_limits(self, txs: tuple[bytes, ...]) -> tuple[bytes, ...]:
        fitted: list[bytes] = []
        size = 0
        for tx in txs[: self._config.max_block_txs]:
            if size + len(tx) > self._config.max_block_bytes:
                break
            fitted.append(tx)
            size += len(tx)
        return tuple(fitted)

    # Votes and QCs.

    def _on_vote(self, sender: ValidatorIndex, vote: Vote, now: float) -> None:
        if vote.author != sender:
            self._refuse(sender, vote.view, "vote", f"author {vote.author} is not the sender {sender}")
            return
        reason = self._check_window(vote.view)
        if reason is None and leader_of(self._config, View(vote.view + 1)) != self._me:
            reason = f"not the leader of view {vote.view + 1}"
        if reason is None:
            reason = self._certifier.check_vote(vote)
        if reason is not None:
            self._refuse(sender, vote.view, "vote", reason)
            self._send_sync_info_if_behind(sender, View(vote.view + 1), now)
            return
        result = self._votes.add(vote)
        if isinstance(result, str):
            self._refuse(sender, vote.view, "vote", result)
        elif result is not None:
            self._on_qc(result, now, None)

    def _check_window(self, view: View) -> str | None:
        if view + 1 < self.view:
            return f"stale: view {view} is below the current view {self.view}"
        if view > self.view + self._config.max_views_ahead:
            return f"view {view} is more than {self._config.max_views_ahead} views ahead"
        return None

    def _on_qc(self, qc: QuorumCert, now: float, source: ValidatorIndex | None) -> None:
        """A verified QC: update high QC, lock and commits, then enter the next view."""
        if qc.view > self._high_qc.view:
            self._high_qc = qc
        certified = self._tree.get(qc.block_id)
        if certified is None:
            if qc.view > self._tree.root.view and self._committed_block(qc.block_id) is None:
                if len(self._waiting_qcs) < self._config.max_pending_blocks:
                    self._waiting_qcs.setdefault(qc.block_id, qc)
                self._wait_for(qc.block_id, self._holder_of(qc, source), now)
        else:
            self._tree.record_qc(qc)
            self._safety.observe_certified(certified)
            block = committed_by(self._tree, certified)
            if block is not None and block.height > self._tree.root.height:
                self._commit(block, qc, certified)
        self._enter(View(qc.view + 1), now, via="qc")

    def _holder_of(self, qc: QuorumCert, source: ValidatorIndex | None) -> ValidatorIndex:
        """A peer that has the block `qc` certifies: who sent the QC, else its proposer or a voter."""
        if source is not None and source != self._me:
            return source
        leader = leader_of(self._config, qc.view)
        if leader != self._me:
            return leader
        return next((s for s, _ in qc.signatures if s != self._me), leader)

    def _commit(self, block: Block, commit_qc: QuorumCert, certified: Block) -> None:
        """Commit `block` and its uncommitted ancestors; `certified` (b'', certified by
        `commit_qc`) and its parent close the three-chain and go out as the commit's proof. (No
        proof if they do not chain to `block`: only a broken commit rule does that, and whoever
        checks proofs, e.g. a client, then refuses the commit.)"""
        middle = self._tree.parent(certified)
        proof = (middle, certified) if middle is not None and middle.parent_id == block.id else ()
        blocks, qcs = self._tree.commit(block)
        commit = Commit(blocks, qcs, commit_qc, proof)
        # Stored and executed now, not when the driver gets the action: a vote later in this same
        # input checks a claim about the height just committed. And before the journal lets go of
        # these blocks, so that a crash in between finds them in one place or the other.
        self._app_state.on_commit(commit)
        self._note_just_committed(blocks)
        if self._journal is not None:
            self._journal.prune_to(block.height)
        if self._remember_commits:
            for b in blocks:
                self._committed_blocks[b.id] = b
                self._committed_txs.update(b.txs)
        self._out.append(commit)
        root_height = self._tree.root.height
        self._orphans = {k: c for k, c in self._orphans.items() if c[-1].height > root_height}

    def _enter(self, view: View, now: float, via: str) -> None:
        if not self._pacemaker.enter(view, now, progress=via == "qc"):
            return
        self._out.append(ViewChange(view, via))
        self._votes.prune_below(View(view - 1))
        self._timeouts.prune_below(View(view - 1))
        self._blocks_in_view = {v: c for v, c in self._blocks_in_view.items() if v >= view - 1}
        self._waiting_proposals = {
            k: kept
            for k, ps in self._waiting_proposals.items()
            if (kept := [(s, p) for s, p in ps if p.view >= view])
        }
        self._propose(now)

    # Timeouts and TCs.

    def _on_timeout(self, sender: ValidatorIndex, timeout: Timeout, now: float) -> None:
        if timeout.author != sender:
            self._refuse(
                sender,
                timeout.view,
                "timeout",
                f"author {timeout.author} is not the sender {sender}",
            )
            return
        reason = self._check_window(timeout.view)
        if reason is None:
            reason = self._certifier.check_timeout(timeout)
        if reason is None:
            reason = self._certifier.check_qc(timeout.high_qc)
        if reason is not None:
            self._refuse(sender, timeout.view, "timeout", reason)
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        self._on_qc(timeout.high_qc, now, sender)
        if timeout.view < self.view:
            self._send_sync_info_if_behind(sender, timeout.view, now)
            return
        count, tc = self._timeouts.add(timeout)
        if tc is not None:
            self._on_tc(tc, now)
        elif count > self._config.validators.f and timeout.view > self._safety.state.highest_timeout_view:
            # f+1 timeouts: at least one honest replica gave up on this view, so join it.
            self._enter(timeout.view, now, via="timeouts")
            self._local_timeout(timeout.view, now)

    def _local_timeout(self, view: View, now: float) -> None:
        timeout = self._safety.timeout(view, self._high_qc)
        if isinstance(timeout, str):
            self._refuse(self._me, view, "own timeout", timeout)
            return
        self._out.append(Broadcast(timeout))
        _, tc = self._timeouts.add(timeout)
        if tc is not None:
            self._on_tc(tc, now)

    def _on_tc(self, tc: TimeoutCert, now: float) -> None:
        """A verified TC: remember it for the next proposal, then enter the view after it."""
        if self._last_tc is None or tc.view > self._last_tc.view:
            self._last_tc = tc
            if self._journal is not None:
                self._journal.save_tc(tc)
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
        reason = self._certifier.check_qc(info.high_qc)
        if reason is None and info.high_tc is not None:
            reason = self._certifier.check_tc(info.high_tc)
        if reason is not None:
            self._refuse(sender, None, "sync info", reason)
            return
        self._on_qc(info.high_qc, now, sender)
        if info.high_tc is not None:
            self._on_tc(info.high_tc, now)

    def _wait_for(self, block_id: BlockId, peer: ValidatorIndex, now: float) -> None:
        """Fetch `block_id` (and ancestors) from `peer` unless already asked recently."""
        asked = self._fetching.get(block_id)
        if asked is not None and now - asked[1] < self._config.base_timeout_s:
            return
        if asked is None and len(self._fetching) >= self._config.max_pending_blocks:
            self._refuse(peer, None, "fetch", "too many outstanding fetches")
            return
        self._fetching[block_id] = (peer, now)
        self._out.append(Send(peer, BlockRequest(block_id, self._config.max_fetch_blocks)))

    def _retry_fetches(self, now: float) -> None:
        """Ask another peer for every fetch that got no answer within a base timeout."""
        n = self._config.validators.n
        for block_id, (peer, asked_at) in list(self._fetching.items()):
            if now - asked_at >= self._config.base_timeout_s:
                other = ValidatorIndex((peer + 1) % n)
                if other == self._me:
                    other = ValidatorIndex((other + 1) % n)
                del self._fetching[block_id]
                self._wait_for(block_id, other, now)

    def _waiting_count(self) -> int:
        return sum(len(ps) for ps in self._waiting_proposals.values())

    def _on_block_request(self, sender: ValidatorIndex, request: BlockRequest) -> None:
        limit = min(request.max_blocks, self._config.max_fetch_blocks, wire.MAX_BLOCKS_PER_RESPONSE)
        blocks: list[Block] = []
        block = self._known_block(request.block_id)
        while block is not None and len(blocks) < limit:
            blocks.append(block)
            block = self._known_block(block.parent_id) if block.height > 0 else None
        if not blocks:
            self._refuse(sender, None, "block request", "unknown block")
            return
        self._out.append(Send(sender, BlockResponse(tuple(blocks))))

    def _known_block(self, block_id: BlockId) -> Block | None:
        return self._tree.get(block_id) or self._committed_block(block_id)

    def _on_block_response(self, sender: ValidatorIndex, response: BlockResponse, now: float) -> None:
        blocks = response.blocks
        if not blocks or blocks[0].id not in self._fetching:
            self._refuse(sender, None, "block response", "not requested")
            return
        for child, parent in itertools.pairwise(blocks):
            if child.parent_id != parent.id:
                self._refuse(sender, None, "block response", "blocks do not form a chain")
                return
        del self._fetching[blocks[0].id]
        root_height = self._tree.root.height
        chain = tuple(b for b in reversed(blocks) if b.height > root_height and b.id not in self._tree)
        if not chain:
            return
        if chain[0].height == root_height + 1 and chain[0].parent_id != self._tree.root.id:
            self._refuse(sender, None, "block response", "chain forks below the committed root")
            return
        if chain[0].parent_id in self._tree:
            self._insert_chain(sender, chain, now)
        elif len(self._orphans) < self._config.max_pending_blocks:
            self._orphans[chain[0].parent_id] = chain
            self._wait_for(chain[0].parent_id, sender, now)
        else:
            self._refuse(sender, None, "block response", "too many orphan chains")

    def _insert_chain(self, sender: ValidatorIndex, chain: tuple[Block, ...], now: float) -> None:
        """Insert fetched blocks, oldest first (hash-linked to a verified QC), then resume what waited."""
        inserted: list[Block] = []
        for block in chain:
            parent = self._tree.get(block.parent_id)
            if parent is None or block.height != parent.height + 1 or block.view <= parent.view:
                self._refuse(sender, block.view, "fetched block", "does not follow its parent")
                break
            self._tree.add(block)
            inserted.append(block)
        if self._journal is not None and inserted:
            self._journal.add(inserted)
        for block in inserted:
            self._fetching.pop(block.id, None)
            orphans = self._orphans.pop(block.id, None)
            if orphans is not None:
                self._insert_chain(sender, orphans, now)
            qc = self._waiting_qcs.pop(block.id, None)
            if qc is not None:
                self._on_qc(qc, now, None)
            for waiting_sender, proposal in self._waiting_proposals.pop(block.id, []):
                self._on_proposal(waiting_sender, proposal, now)
        self._propose(now)
