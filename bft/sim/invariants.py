"""Safety and liveness invariants, checked incrementally as the simulation runs.

Owns: `Violation` and `InvariantChecker`. The harness feeds the checker what honest instances
do (votes and timeouts they send, blocks they commit, safety states they save and load) and what
any instance proposes; the checker records each broken invariant as a `Violation` value:

- agreement: no two honest replicas commit different blocks at one height; each replica's
  commits are consecutive heights, each extending its own previous commit (across restarts).
- conflicting-qc: no valid QC seen anywhere, at a view at or above the view of a block that
  closed a commit's chain, certifies a block that does not extend that block. This is the key
  lemma of the safety proofs of HotStuff and Jolteon alike; it fails before conflicting commits
  can, so it catches weakened rules sooner.
- leader-schedule (with leader reputation): every block an honest replica votes for or proposes
  is by the leader of its view, and records the failed leaders, that its parent's window names
  (`bft.core.reputation`, computed here from the blocks seen): every honest node runs one
  schedule. (Validity checks the same of committed blocks.)
- validity: every committed block was proposed by the leader of its view (`leader_of`, or by
  reputation its parent's window), and its
  own QC and the QC its commit carries for it verify against the validator set; every committed
  transaction was seen in some proposal on the network, and no transaction is committed at two
  heights (but one a client sent to two nodes, under the quorum store: two batches may carry
  it, and app-state checks that it executed once alike everywhere).
- app-state: the honest nodes' applications (in campaigns the node's key-value ledger) agree
  on the app hash after every height they applied; and every committed block claims the app
  hash of the height its chain fixes (`bft.core.app_state.claim_height`), and that hash is the
  one those applications computed (checked as soon as one has applied that height).
- double-sign: no honest validator sends two different votes, or two different timeouts, for one
  view (compared as encoded bytes, across restarts).
- persist-before-send: a vote or timeout leaves an honest node only if the node's *durable*
  safety state already covers it.
- safety-regression: successive saves of one node never lower the last voted view, the locked
  view or the highest timeout view; what a restarted node loads equals its last completed save.
- certified-commit: every commit an honest instance makes carries a QC for each block, and its
  proof (b', b'', or b' alone under the two-chain rule) closes a chain of the genesis' commit
  length (`bft.core.commit_rule`) of direct parents in consecutive views above the last block,
  with a valid commit QC for its top.
- frame-limit: no honest instance produces a message over the wire's size limit (one that the
  transport could not carry; a response built without a byte budget does).
- bounded-state: after every step, an honest replica's own invariants hold (the lock is not
  above the high QC, every buffer within its bounds: `Replica.check_invariants`).
- timer-progress: after an honest replica's `on_timer(now)`, its next deadline is later than
  `now` (a deadline left in the past makes a driver spin on it and starve the network).
- unjustified-join: an honest replica joins a view by the f+1 rule only after an honest replica
  sent a timeout for it (f+1 timeouts include an honest one): a Byzantine replica alone cannot
  drag honest replicas into views that no honest replica gave up on.
- sync-target: an honest replica syncs towards no height above the highest block that a valid
  QC seen on the network certifies (a proposal's height is its proposer's word; a target taken
  from it unchecked has a node sync towards blocks that do not exist).
- serving-budget: in every simulated second, an honest instance sends one peer no more sync
  answers carrying blocks, block answers and answer bytes (encoded) than that peer's serving
  budget lets through in a second (`bft.core.serving.ServingLimits`: a bucket's capacity plus a
  second's refill). A restart starts a node's budgets afresh, and its count with them.
- liveness: within the window after the last fault (`FaultPlan.last_fault_s`: GST, a later
  restart, the end of an asynchronous period after GST or the heal of a partition by view),
  every honest instance commits `min_new_commits` blocks above the highest honest height then.
- program-error: a program raised (with its traceback summary); event-budget: runaway schedule.
Honest instances are those the harness declares checked (not Byzantine, not Twins' indices).
May not: drive the simulation or look at anything it is not handed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from itertools import pairwise

from bft.core.actions import Commit
from bft.core.app_state import claim_height
from bft.core.batches import Batch, BatchAck
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN
from bft.core.config import ReplicaConfig
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SafetyState,
    SyncInfo,
    SyncResponse,
    Timeout,
    Vote,
)
from bft.core.reputation import Record, failed_leaders_between, reputation_leader, window_blocks
from bft.core.serving import ServingLimits
from bft.core.types import BlockId, View
from bft.core.wire import encode
from bft.sim.network import Instance

AGREEMENT = "agreement"
CONFLICTING_QC = "conflicting-qc"
VALIDITY = "validity"
APP_STATE = "app-state"
DOUBLE_SIGN = "double-sign"
# An honest vote for a block referencing a batch that no honest validator acknowledged (or
# sent as its own): a vote for data nobody honest holds (`bft.core.quorum_store`).
AVAILABILITY = "availability"
PERSIST_BEFORE_SEND = "persist-before-send"
SAFETY_REGRESSION = "safety-regression"
CERTIFIED_COMMIT = "certified-commit"
FRAME_LIMIT = "frame-limit"
BOUNDED_STATE = "bounded-state"
TIMER_PROGRESS = "timer-progress"
UNJUSTIFIED_JOIN = "unjustified-join"
SYNC_TARGET = "sync-target"
SERVING_BUDGET = "serving-budget"
LIVENESS = "liveness"
PROGRAM_ERROR = "program-error"
EVENT_BUDGET = "event-budget"
LEADER_SCHEDULE = "leader-schedule"

SAFETY_KINDS = frozenset(
    {
        AGREEMENT,
        CONFLICTING_QC,
        VALIDITY,
        DOUBLE_SIGN,
        AVAILABILITY,
        PERSIST_BEFORE_SEND,
        SAFETY_REGRESSION,
        CERTIFIED_COMMIT,
    }
)


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    message: str
    time_s: float
    instance: str | None = None

    def __str__(self) -> str:
        who = f" at node {self.instance}" if self.instance is not None else ""
        return f"{self.kind}{who}, t={self.time_s:.3f}s: {self.message}"


class InvariantChecker:
    """Incremental checks over the honest instances in `honest`."""

    def __init__(
        self,
        honest: Collection[Instance],
        min_new_commits: int = 3,
        certifier: Certifier | None = None,
        schedule: ReplicaConfig | None = None,
        serving: ServingLimits | None = None,
        commit_chain: int = DEFAULT_COMMIT_CHAIN,
        claim_lag: int = 0,
    ) -> None:
        """Without a `certifier` no certificate is verified (conflicting-qc, and the QC checks of
        validity and certified-commit, are off); without `schedule` (a configuration whose chain
        id, validators, leader prefix and leader reputation fix who leads) no proposer is checked;
        without `serving` no answer is counted against a budget. `commit_chain` is the genesis'
        commit rule, which proofs and app claims are checked against."""
        self.honest = frozenset(honest)
        self._commit_chain = commit_chain
        # The genesis' execution lag of app-hash claims (`bft.core.app_state.execution_lag`).
        self._lag = claim_lag
        self._serving = serving
        # serving-budget: per (honest instance, peer), the second counted and what was sent in
        # it: sync answers with blocks, block answers, bytes; and the peers already flagged.
        self._answers: dict[tuple[Instance, int], tuple[int, int, int, int]] = {}
        self._over_budget: set[tuple[Instance, int]] = set()
        self._schedule = schedule
        # Blocks whose proposer and own QC passed validity already (a block id fixes both).
        self._valid_blocks: set[BlockId] = set()
        # Blocks an honest replica voted for or proposed that are on the schedule (leader-schedule).
        self._on_schedule: set[BlockId] = set()
        # For conflicting-qc: every block and valid QC seen, and the committed chain by height.
        self._certifier = certifier
        self._blocks: dict[BlockId, Block] = {}
        self._qc_views: dict[tuple[View, BlockId], None] = {}
        self._committed_chain: list[Block] = []
        self.min_new_commits = min_new_commits
        self.violations: list[Violation] = []
        self._committed: dict[int, tuple[BlockId, Instance]] = {}
        self._by_height: dict[int, Block] = {}
        self._tip: dict[Instance, tuple[int, BlockId]] = {}
        self._proposed_txs: set[bytes] = set()
        # Batches some honest validator holds: it sent them as its own, or acknowledged them.
        self._held_batches: set[bytes] = set()
        self._tx_height: dict[bytes, int] = {}
        # Transactions a client sent to a second node (quorum store only): each may commit in two
        # batches, at two heights, executing once (app-state compares what that left).
        self._retried: set[bytes] = set()
        self._signed: dict[tuple[int, str, int], bytes] = {}
        self._last_save: dict[Instance, SafetyState] = {}
        self._baseline: dict[Instance, int] | None = None
        self._certified_height = 0  # for sync-target: recomputed when a target goes above it
        # For app-state: the first honest app hash reported per height, and committed claims
        # about heights no honest application has applied yet.
        self._app_hashes: dict[int, tuple[bytes, Instance]] = {}
        self._unchecked_claims: dict[int, list[tuple[Instance, Block]]] = {}

    def _violate(self, kind: str, time_s: float, inst: Instance | None, msg: str) -> None:
        self.violations.append(Violation(kind, msg, time_s, None if inst is None else str(inst)))

    # -- observations ------------------------------------------------------------------------

    def observe_proposal(self, proposal: Proposal) -> None:
        """A proposal was seen on the network, from anyone."""
        self._proposed_txs.update(proposal.block.txs)

    def observe_retry(self, tx: bytes) -> None:
        """A client sent `tx` again, to another node (`bft.sim.node.SimClients.retry`)."""
        self._retried.add(tx)

    def on_send(
        self,
        time_s: float,
        src: Instance,
        msg: Message,
        durable: SafetyState | None,
        data: bytes | None = None,
    ) -> None:
        """`src` sends `msg` (encoded as `data`); `durable` is its safety state as a crash right
        now would leave it (needed for honest votes and timeouts only)."""
        if isinstance(msg, Proposal):
            self.observe_proposal(msg)
        elif isinstance(msg, Batch):
            self._proposed_txs.update(msg.txs)  # a batch's transactions are proposed by digest
        self._observe_certificates(time_s, msg)
        if src in self.honest:
            self._observe_availability(time_s, src, msg)
            self._check_schedule(time_s, src, msg)
        if src not in self.honest or not isinstance(msg, Vote | Timeout):
            return
        kind = "vote" if isinstance(msg, Vote) else "timeout"
        data = encode(msg) if data is None else data
        key = (src.index, kind, msg.view)
        prev = self._signed.setdefault(key, data)
        if prev != data:
            self._violate(
                DOUBLE_SIGN,
                time_s,
                src,
                f"two different {kind}s for view {msg.view}: {prev.hex()[:32]}... and {data.hex()[:32]}...",
            )
        if isinstance(msg, Vote):
            covered = durable is not None and durable.last_voted_view >= msg.view
            have = None if durable is None else durable.last_voted_view
            field = "last_voted_view"
        else:
            covered = durable is not None and durable.highest_timeout_view >= msg.view
            have = None if durable is None else durable.highest_timeout_view
            field = "highest_timeout_view"
        if not covered:
            self._violate(
                PERSIST_BEFORE_SEND,
                time_s,
                src,
                f"{kind} for view {msg.view} sent while the durable {field} is {have}",
            )

    def _off_schedule(self, block: Block) -> str | None:
        """Why `block` is not its view's leader's by the schedule (None if it is, or if the
        blocks under it needed to tell were not seen)."""
        config = self._schedule
        if config is None:
            return None
        if not config.leader_reputation:
            leader = leader_of(config, block.view)
            if block.proposer != leader:
                return f"proposed by {block.proposer}, but the leader of view {block.view} is {leader}"
            return None
        window = self._window(block.parent_id)
        if window is None:
            return None
        parent_view, records = window
        leader = reputation_leader(config, block.view, records)
        if block.proposer != leader:
            by_window = f"the leader of view {block.view} by its parent's window is {leader}"
            return f"proposed by {block.proposer}, but {by_window}"
        failed = failed_leaders_between(config, parent_view, block.view, records)
        if block.failed_leaders != failed:
            says = f"its parent's window says {list(failed)}"
            return f"records failed leaders {list(block.failed_leaders)}, {says}"
        return None

    def _window(self, parent_id: BlockId) -> tuple[View, list[Record]] | None:
        """The parent's view and its reputation window (newest first), from the blocks seen."""
        assert self._schedule is not None
        size = window_blocks(self._schedule.validators.n)
        records: list[Record] = []
        parent = self._blocks.get(parent_id) or self._genesis_if(parent_id)
        if parent is None:
            return None
        current: Block | None = parent
        while current is not None and current.height > 0 and len(records) < size:
            records.append(Record.of(current))
            current = self._blocks.get(current.parent_id) or self._genesis_if(current.parent_id)
            if current is None:
                return None
        return parent.view, records

    def _genesis_if(self, block_id: BlockId) -> Block | None:
        assert self._schedule is not None
        root = genesis(self._schedule.chain_id)[0]
        return root if root.id == block_id else None

    def _check_schedule(self, time_s: float, src: Instance, msg: Message) -> None:
        if self._schedule is None or not self._schedule.leader_reputation:
            return
        if isinstance(msg, Vote):
            block = self._blocks.get(msg.block_id)
        elif isinstance(msg, Proposal):
            block = msg.block
        else:
            return
        if block is None or block.id in self._on_schedule:
            return
        wrong = self._off_schedule(block)
        if wrong is None:
            self._on_schedule.add(block.id)
            return
        what = "voted for" if isinstance(msg, Vote) else "proposed"
        self._violate(
            LEADER_SCHEDULE, time_s, src, f"{what} block {block.id.hex()[:16]} (view {block.view}): {wrong}"
        )

    def _observe_availability(self, time_s: float, src: Instance, msg: Message) -> None:
        if isinstance(msg, Batch) and msg.author == src.index:
            self._held_batches.add(msg.digest)
        elif isinstance(msg, BatchAck):
            self._held_batches.add(msg.info.digest)
        elif isinstance(msg, Vote):
            block = self._blocks.get(msg.block_id)
            for proof in () if block is None else block.batches:
                if proof.info.digest not in self._held_batches:
                    detail = (
                        f"voted for {msg.block_id.hex()[:16]} (view {msg.view}), whose batch "
                        f"{proof.info.sequence} of validator {proof.info.author} no honest "
                        f"validator holds ({len(proof.signatures)} signers)"
                    )
                    self._violate(AVAILABILITY, time_s, src, detail)

    def on_answer(self, time_s: float, src: Instance, to: int, msg: Message, size_bytes: int) -> None:
        """`src` sends `msg`, `size_bytes` encoded, to validator `to`: counted against `to`'s
        serving budget if it is an answer to a request (empty sync answers are free)."""
        limits = self._serving
        if limits is None or src not in self.honest or not isinstance(msg, BlockResponse | SyncResponse):
            return
        if isinstance(msg, SyncResponse) and not msg.blocks:
            return
        key = (src, to)
        second = int(time_s)
        was, syncs, blocks, sent = self._answers.get(key, (second, 0, 0, 0))
        if was != second:
            syncs, blocks, sent = 0, 0, 0
        if isinstance(msg, SyncResponse):
            syncs += 1
        else:
            blocks += 1
        sent += size_bytes
        self._answers[key] = (second, syncs, blocks, sent)
        over = [
            f"{what} {count} > {most:g}"
            for what, count, most in (
                ("sync answers", syncs, limits.sync_capacity + limits.sync_per_s),
                ("block answers", blocks, limits.block_requests_capacity + limits.block_requests_per_s),
                ("answer bytes", sent, limits.bytes_capacity + limits.bytes_per_s),
            )
            if count > most
        ]
        if over and key not in self._over_budget:
            self._over_budget.add(key)  # once per pair: a broken budget would flag every answer
            detail = f"sent validator {to} in second {second}: {', '.join(over)}"
            self._violate(SERVING_BUDGET, time_s, src, detail)

    def on_commit(self, time_s: float, inst: Instance, commit: Commit) -> None:
        """An honest instance committed `commit.blocks` (oldest first)."""
        if inst not in self.honest:
            return
        self._check_certified(time_s, inst, commit)
        if commit.blocks:
            self._on_direct_commit(time_s, commit.blocks[-1])
        for block, qc in zip(commit.blocks, commit.qcs, strict=False):
            self._check_valid_block(time_s, inst, block, qc)
        for block in commit.blocks:
            tip = self._tip.get(inst)
            if tip is None:
                if block.height != 1:
                    self._violate(AGREEMENT, time_s, inst, f"first commit is at height {block.height}, not 1")
            elif block.height != tip[0] + 1 or block.parent_id != tip[1]:
                self._violate(
                    AGREEMENT,
                    time_s,
                    inst,
                    f"commit of height {block.height} (parent {block.parent_id.hex()[:16]}) does "
                    f"not extend its previous commit at height {tip[0]} ({tip[1].hex()[:16]})",
                )
            self._tip[inst] = (block.height, block.id)
            other = self._committed.setdefault(block.height, (block.id, inst))
            if other[0] != block.id:
                self._violate(
                    AGREEMENT,
                    time_s,
                    inst,
                    f"committed {block.id.hex()[:16]} at height {block.height} where node "
                    f"{other[1]} committed {other[0].hex()[:16]}",
                )
            self._by_height.setdefault(block.height, block)
            self._check_app_claim(time_s, inst, block)
            for tx in block.txs:
                if tx not in self._proposed_txs:
                    self._violate(VALIDITY, time_s, inst, f"committed tx {tx!r} never seen in a proposal")
                h = self._tx_height.setdefault(tx, block.height)
                if h != block.height and tx not in self._retried:
                    self._violate(
                        VALIDITY,
                        time_s,
                        inst,
                        f"tx {tx!r} committed at heights {h} and {block.height}",
                    )

    def _check_valid_block(self, time_s: float, inst: Instance, block: Block, qc: QuorumCert) -> None:
        """Validity of a committed block: it is its view's leader's, and certified for real (its
        own QC, for its parent, and `qc`, the commit's QC for it)."""
        reasons: list[str] = []
        if block.id not in self._valid_blocks:
            wrong = self._off_schedule(block)
            if wrong is not None:
                reasons.append(wrong)
            refused = None if self._certifier is None else self._certifier.check_qc(block.qc)
            if refused is not None:
                reasons.append(f"its QC (view {block.qc.view}) does not verify: {refused.detail}")
            if not reasons:
                self._valid_blocks.add(block.id)
        refused = None if self._certifier is None else self._certifier.check_qc(qc)
        if refused is not None:
            reasons.append(f"the commit's QC for it does not verify: {refused.detail}")
        for reason in reasons:
            what = f"committed block {block.id.hex()[:16]} at height {block.height} (view {block.view})"
            self._violate(VALIDITY, time_s, inst, f"{what}: {reason}")

    def _check_certified(self, time_s: float, inst: Instance, commit: Commit) -> None:
        """The commit's own evidence proves it: QCs for its blocks, a consecutive commit chain."""
        reason = None
        if not commit.blocks or len(commit.qcs) != len(commit.blocks):
            reason = f"{len(commit.blocks)} blocks with {len(commit.qcs)} QCs"
        elif any(
            qc.block_id != b.id or qc.view != b.view for b, qc in zip(commit.blocks, commit.qcs, strict=True)
        ):
            reason = "a QC does not certify its block"
        elif len(commit.proof) != self._commit_chain - 1:
            reason = f"a proof of {len(commit.proof)} blocks under the {self._commit_chain}-chain rule"
        else:
            run, qc = (commit.blocks[-1], *commit.proof), commit.commit_qc
            views = ", ".join(str(b.view) for b in run)
            if any(child.parent_id != parent.id for parent, child in pairwise(run)):
                reason = "the proof's blocks are not direct descendants of the last block"
            elif any(parent.view + 1 != child.view for parent, child in pairwise(run)):
                reason = f"views {views} are not consecutive"
            elif qc.block_id != run[-1].id or qc.view != run[-1].view:
                reason = "the commit QC does not certify the top of the proof"
            elif self._certifier is not None:
                refused = self._certifier.check_qc(qc)
                reason = None if refused is None else refused.detail
        if reason is not None:
            height = commit.blocks[-1].height if commit.blocks else None
            self._violate(CERTIFIED_COMMIT, time_s, inst, f"commit up to height {height}: {reason}")

    def on_oversize(self, time_s: float, inst: Instance, msg: Message, size_bytes: int, limit: int) -> None:
        """An honest instance produced a message the transport could not carry."""
        if inst in self.honest:
            what = type(msg).__name__
            self._violate(
                FRAME_LIMIT, time_s, inst, f"a {what} of {size_bytes} bytes, over the limit of {limit}"
            )

    def on_timer_stall(self, time_s: float, inst: Instance, deadline: float) -> None:
        """Any instance running the honest replica (Twins' included) must make timer progress."""
        self._violate(
            TIMER_PROGRESS,
            time_s,
            inst,
            f"next deadline {deadline:.6f} is not after on_timer({time_s:.6f})",
        )

    def on_state_error(self, time_s: float, inst: Instance, summary: str) -> None:
        """An honest replica's own invariant check failed after a step."""
        if inst in self.honest:
            self._violate(BOUNDED_STATE, time_s, inst, summary)

    def on_view_change(self, time_s: float, inst: Instance, view: int, via: str) -> None:
        """An honest instance entered `view` by a QC, a TC or f+1 timeouts (`via`)."""
        if inst not in self.honest or via != "timeouts":
            return
        # Every honest vote and timeout sent so far is in `_signed`, keyed by its validator.
        if not any((i.index, "timeout", view) in self._signed for i in self.honest):
            self._violate(
                UNJUSTIFIED_JOIN, time_s, inst, f"joined view {view} by timeouts, none of them honest"
            )

    def on_sync_target(self, time_s: float, inst: Instance, target: int) -> None:
        """After a step of an honest replica: the height its block sync aims for."""
        if inst not in self.honest or target <= self._certified_height:
            return
        blocks = (self._blocks.get(block_id) for _, block_id in self._qc_views)
        self._certified_height = max((b.height for b in blocks if b is not None), default=0)
        if target > self._certified_height:
            highest = self._certified_height
            detail = f"syncs towards height {target}; the highest certified block is at {highest}"
            self._violate(SYNC_TARGET, time_s, inst, detail)

    def on_app_hash(self, time_s: float, inst: Instance, height: int, app_hash: bytes) -> None:
        """`inst`'s application applied `height` (0: its initial state) durably, to `app_hash`."""
        if inst not in self.honest:
            return
        first = self._app_hashes.setdefault(height, (app_hash, inst))
        if first[0] != app_hash:
            self._violate(
                APP_STATE,
                time_s,
                inst,
                f"its application's app hash after height {height} is {app_hash.hex()[:16]}; "
                f"node {first[1]}'s is {first[0].hex()[:16]}",
            )
        for claimer, block in self._unchecked_claims.pop(height, []):
            self._check_claimed_hash(time_s, claimer, block)

    def _check_app_claim(self, time_s: float, inst: Instance, block: Block) -> None:
        parent = self._by_height.get(block.height - 1)
        middle = self._by_height.get(block.height - 2)
        height = 0 if parent is None else claim_height(parent, middle, self._commit_chain, self._lag)
        if block.app_height != height:
            self._violate(
                APP_STATE,
                time_s,
                inst,
                f"block {block.height} claims the app hash at height {block.app_height}; "
                f"the chain fixes height {height}",
            )
        elif height in self._app_hashes:
            self._check_claimed_hash(time_s, inst, block)
        else:
            self._unchecked_claims.setdefault(height, []).append((inst, block))

    def _check_claimed_hash(self, time_s: float, inst: Instance, block: Block) -> None:
        expected, source = self._app_hashes[block.app_height]
        if block.app_hash != expected:
            self._violate(
                APP_STATE,
                time_s,
                inst,
                f"block {block.height} claims app hash {block.app_hash.hex()[:16]} at height "
                f"{block.app_height}, where node {source}'s application has {expected.hex()[:16]}",
            )

    def _observe_certificates(self, time_s: float, msg: Message) -> None:
        if self._certifier is None:
            return
        qcs: list[QuorumCert] = []
        if isinstance(msg, Proposal):
            self._blocks.setdefault(msg.block.id, msg.block)
            qcs.append(msg.block.qc)
            if msg.tc is not None:
                qcs.append(msg.tc.high_qc)
        elif isinstance(msg, BlockResponse | SyncResponse):
            for block in msg.blocks:
                self._blocks.setdefault(block.id, block)
            if isinstance(msg, SyncResponse) and msg.qc is not None:
                qcs.append(msg.qc)
        elif isinstance(msg, Timeout | SyncInfo):
            qcs.append(msg.high_qc)
        for qc in qcs:
            key = (qc.view, qc.block_id)
            if key in self._qc_views or self._certifier.check_qc(qc) is not None:
                continue
            self._qc_views[key] = None
            committed = [b for b in self._committed_chain if b.view <= qc.view]
            if committed:
                self._check_extends(time_s, qc.view, qc.block_id, committed[-1])

    def _on_direct_commit(self, time_s: float, block: Block) -> None:
        """The last block of a commit closed a commit chain itself. The lemma speaks of QCs at its
        view or later; its ancestors were committed through it, so older dead forks are fine."""
        if any(b.id == block.id for b in self._committed_chain[-4:]):
            return
        self._committed_chain.append(block)
        self._committed_chain.sort(key=lambda b: b.view)
        self._blocks.setdefault(block.id, block)
        for view, block_id in self._qc_views:
            if view >= block.view:
                self._check_extends(time_s, view, block_id, block)

    def _check_extends(self, time_s: float, view: View, block_id: BlockId, committed: Block) -> None:
        """Flag a QC whose block provably does not extend `committed` (unknown ancestry: no verdict)."""
        block = self._blocks.get(block_id)
        while block is not None and block.height > committed.height:
            block = self._blocks.get(block.parent_id)
        if block is not None and block.height == committed.height and block.id != committed.id:
            self._violate(
                CONFLICTING_QC,
                time_s,
                None,
                f"a QC of view {view} certifies {block_id.hex()[:16]}, which does not extend "
                f"{committed.id.hex()[:16]} committed at height {committed.height} (view {committed.view})",
            )

    def on_save(self, time_s: float, inst: Instance, state: SafetyState) -> None:
        """A save of `inst`'s safety state completed (returned)."""
        if inst not in self.honest:
            return
        prev = self._last_save.get(inst)
        if prev is not None:
            for name, old, new in (
                ("last_voted_view", prev.last_voted_view, state.last_voted_view),
                ("locked view", prev.locked_view, state.locked_view),
                ("highest_timeout_view", prev.highest_timeout_view, state.highest_timeout_view),
            ):
                if new < old:
                    self._violate(SAFETY_REGRESSION, time_s, inst, f"saved {name} {new} after {old}")
        self._last_save[inst] = state

    def on_first_record(self, inst: Instance, state: SafetyState) -> None:
        """`inst`'s disk was created holding `state`, its first safety record (`bft testnet`
        writes one): what its first start must load."""
        self._last_save[inst] = state

    def on_state_sync(self, time_s: float, inst: Instance, height: int, block_id: BlockId) -> None:
        """`inst` started from a snapshot: its chain now ends at `height` with `block_id`, which
        must be the block committed there (agreement), and its next commits extend it."""
        other = self._committed.get(height)
        if other is not None and other[0] != block_id and inst in self.honest:
            self._violate(
                AGREEMENT,
                time_s,
                inst,
                f"state sync to {block_id.hex()[:16]} at height {height} where node {other[1]} "
                f"committed {other[0].hex()[:16]}",
            )
        self._tip[inst] = (height, block_id)

    def on_wipe(self, inst: Instance) -> None:
        """`inst` lost its data directory while down: it must load no safety record, and its
        commits start again from height 1 (re-committing what it had is agreement, checked
        against the other nodes' blocks as ever). What it signed before still counts for
        double-sign: forgetting is no excuse."""
        self._last_save.pop(inst, None)
        self._tip.pop(inst, None)

    def on_load(self, time_s: float, inst: Instance, loaded: SafetyState | None) -> None:
        """A (re)started `inst` loaded its safety state."""
        if inst not in self.honest:
            return
        # A new incarnation starts with full serving budgets: count its answers afresh.
        self._answers = {k: v for k, v in self._answers.items() if k[0] != inst}
        expected = self._last_save.get(inst)
        if loaded != expected:
            self._violate(
                SAFETY_REGRESSION,
                time_s,
                inst,
                f"loaded {_describe(loaded)} but its last completed save was {_describe(expected)}",
            )

    def on_program_error(self, time_s: float, inst: Instance, summary: str) -> None:
        self._violate(PROGRAM_ERROR, time_s, inst, summary)

    def on_event_budget(self, time_s: float, events: int) -> None:
        self._violate(EVENT_BUDGET, time_s, None, f"gave up after {events} events")

    # -- liveness ----------------------------------------------------------------------------

    def height(self, inst: Instance) -> int:
        tip = self._tip.get(inst)
        return 0 if tip is None else tip[0]

    def start_liveness(self, heights: Mapping[Instance, int] | None = None) -> None:
        """Take the baseline (after the last fault) for the liveness window."""
        self._baseline = {i: (heights[i] if heights is not None else self.height(i)) for i in self.honest}

    @property
    def has_baseline(self) -> bool:
        return self._baseline is not None

    def lagging(self, exclude: Iterable[Instance] = ()) -> list[Instance]:
        """Honest instances that have not yet made `min_new_commits` since the baseline."""
        if self._baseline is None:
            return sorted(self.honest)
        skip = set(exclude)
        return sorted(
            i
            for i, base in self._baseline.items()
            if i not in skip and self.height(i) < base + self.min_new_commits
        )

    def finish_liveness(self, time_s: float, window_s: float, exclude: Iterable[Instance] = ()) -> None:
        """The window closed: every lagging instance is a liveness violation."""
        for inst in self.lagging(exclude):
            base = 0 if self._baseline is None else self._baseline[inst]
            self._violate(
                LIVENESS,
                time_s,
                inst,
                f"committed {self.height(inst) - base} new blocks (height {self.height(inst)}) "
                f"above the baseline {base} in the {window_s:.1f}s after the last fault; needed "
                f"{self.min_new_commits}",
            )


def _describe(state: SafetyState | None) -> str:
    if state is None:
        return "nothing"
    return (
        f"(voted {state.last_voted_view}, locked {state.locked_view}, timeout {state.highest_timeout_view})"
    )
