"""The simulator has teeth: each test weakens one safety rule and expects a campaign to report a
violation. A weakening that goes unnoticed means the fault plans or adversaries are too tame.

Each test runs seeds in order and stops at the first violation, bounded by a seed budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest

import bft.core.certs as core_certs_module
import bft.core.chain_state as chain_state_module
import bft.core.fetcher as fetcher_module
import bft.core.proposal_rules as proposal_rules
import bft.core.replica as replica_module
import bft.core.safety as safety_module
import bft.node.statesync as statesync_module
import crypto.certs as certs_module
import crypto.signing as signing_module
from bft.campaign import FACTORIES
from bft.core import wire
from bft.core.actions import Action, Commit
from bft.core.batches import BatchProof
from bft.core.blocktree import BlockTree
from bft.core.commit_rule import TWO_CHAIN
from bft.core.messages import Block, SafetyState, TimeoutCert, Vote
from bft.core.proposer import Proposer
from bft.core.quorum_store import QuorumStore
from bft.core.refusals import RefusalReason, Refused
from bft.core.replica import Replica
from bft.core.reputation import Record
from bft.core.safety import SafetyRules
from bft.core.serving import ServingBudget
from bft.core.types import View, max_faulty
from bft.core.votes import TimeoutCollector
from bft.node.executor import Executor
from bft.node.storage import BlockStore
from bft.node.tx_filter import CommittedTxFilter
from bft.node.tx_set import state_claim
from bft.sim import SimSpec, run_schedule
from bft.sim.invariants import (
    AGREEMENT,
    APP_STATE,
    AVAILABILITY,
    BOUNDED_STATE,
    CERTIFIED_COMMIT,
    CONFLICTING_QC,
    DOUBLE_SIGN,
    FRAME_LIMIT,
    LEADER_SCHEDULE,
    LIVENESS,
    PERSIST_BEFORE_SEND,
    PROGRAM_ERROR,
    SAFETY_REGRESSION,
    SERVING_BUDGET,
    SYNC_TARGET,
    TIMER_PROGRESS,
    UNJUSTIFIED_JOIN,
    VALIDITY,
)


def _first_violation(spec: SimSpec, seeds: range, kinds: set[str]) -> tuple[int, str]:
    for seed in seeds:
        result = run_schedule(spec, seed, FACTORIES)
        found = {v.kind for v in result.violations} & kinds
        if found:
            report = result.failure_report()
            assert f"--seed {seed}" in report  # every failure names its replay command
            print(f"\ncaught at seed {seed}:\n{report}")
            return seed, report
    pytest.fail(f"no {sorted(kinds)} violation in seeds {seeds.start}..{seeds.stop - 1}")


def test_skipping_the_lock_check_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_lock(block: Block, tree: BlockTree, locked: object) -> bool:
        return True

    monkeypatch.setattr(safety_module, "respects_lock", no_lock)
    spec = SimSpec(nodes=4, byzantine={0: "equivocate"}, min_duration_s=30.0)
    _first_violation(spec, range(300), {CONFLICTING_QC, AGREEMENT})


def test_a_parent_other_than_the_qcs_block_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A block that carries a QC newer than the lock but hangs off an older parent slips past the
    # lock: detached-parent withholds the QC that commits b, then, after a TC, has honest
    # replicas (locked on b) vote for a sibling of b; releasing the QC commits b.
    monkeypatch.setattr(proposal_rules, "check_parent_link", lambda block: None)
    spec = SimSpec(nodes=4, byzantine={0: "detached-parent"})
    _first_violation(spec, range(50), {CONFLICTING_QC, AGREEMENT})


def test_commit_over_non_consecutive_views_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def any_three_chain(tree: BlockTree, certified: Block, length: int) -> Block | None:
        middle = tree.parent(certified)
        return None if middle is None else tree.parent(middle)

    monkeypatch.setattr(chain_state_module, "committed_by", any_three_chain)
    spec = SimSpec(nodes=4, byzantine={0: "equivocate"}, min_duration_s=30.0)
    # The commit's own proof shows views that skip (certified-commit), before any fork gets far.
    _first_violation(spec, range(800), {CONFLICTING_QC, AGREEMENT, CERTIFIED_COMMIT})


def test_counting_duplicate_signers_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def counts_duplicates(signers: Sequence[int], n_validators: int, quorum: int) -> str | None:
        if any(not 0 <= s < n_validators for s in signers):
            return "unknown signer"
        return None if len(signers) >= quorum else "too few"

    monkeypatch.setattr(certs_module, "check_signers", counts_duplicates)
    spec = SimSpec(nodes=4, byzantine={0: "forged-qc"})
    # The forger's fabricated three-chain gets committed: blocks nobody proposed (validity), on a
    # fork of the real chain (conflicting QCs, agreement).
    _first_violation(spec, range(100), {CONFLICTING_QC, AGREEMENT, VALIDITY})


def test_voting_before_persisting_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def persist_later(self: SafetyRules, new: SafetyState) -> None:
        # Saves the previous state and keeps the new one only in memory until the next call.
        pending: SafetyState | None = getattr(self, "_pending", None)
        if pending is not None:
            self._store.save(pending)
        vars(self)["_pending"] = new  # an attribute the real SafetyRules does not have
        self._state = new

    monkeypatch.setattr(SafetyRules, "_persist", persist_later)
    _first_violation(SimSpec(nodes=4), range(20), {PERSIST_BEFORE_SEND})


def test_not_checking_the_committed_chain_for_transactions_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A replica that checks a proposal's transactions only against its uncommitted ancestors
    # votes for a block that repeats a committed transaction (invalid-block proposes such blocks).
    def never_committed(self: chain_state_module.ChainState, tx: bytes) -> bool:
        return False

    monkeypatch.setattr(chain_state_module.ChainState, "_is_committed", never_committed)
    _first_violation(SimSpec(nodes=4, byzantine={0: "invalid-block"}), range(100), {VALIDITY})


def test_a_committed_tx_filter_with_false_negatives_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The block store's in-memory filter answers "never committed" for every hash: its "no" is
    # final, so a block repeating a committed transaction gets votes.
    monkeypatch.setattr(CommittedTxFilter, "might_contain", lambda self, digest: False)
    _first_violation(SimSpec(nodes=4, byzantine={0: "invalid-block"}), range(100), {VALIDITY})


@pytest.mark.parametrize("quorum_store", [False, True], ids=["inline", "quorum-store"])
def test_voting_without_checking_the_app_state_claim_is_caught(
    monkeypatch: pytest.MonkeyPatch, quorum_store: bool
) -> None:
    def unchecked(block: Block, claim: object) -> str | None:
        return None

    monkeypatch.setattr(proposal_rules, "check_app_claim", unchecked)
    # invalid-block sometimes proposes a false app hash or height and votes for it; under the
    # quorum store the claims lag execution (`bft.core.app_state.execution_lag`), checked alike.
    spec = SimSpec(nodes=4, byzantine={0: "invalid-block"}, quorum_store=quorum_store)
    _first_violation(spec, range(100), {APP_STATE})


def test_a_response_built_without_a_byte_budget_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bug that took every node down: a block response over the frame limit. Seeds draw large
    # transactions and long post-GST crashes, so a lagging node asks for many large blocks.
    monkeypatch.setattr(wire, "response_budget_bytes", lambda validators, max_size_bytes=0: 10**12)
    _first_violation(SimSpec(nodes=7), range(100), {FRAME_LIMIT})


def test_voting_twice_in_a_view_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forgets that it voted in the block's view (but not other views): a second proposal for
    # that view, from a leader that sends both of its blocks to every replica, gets a second
    # vote. (`equivocate` splits its blocks between halves, or sends the second after the view
    # timed out, so a replica rarely holds both while it can still vote: with the node's ledger
    # and client arrivals in the simulator it caught this in none of 400 seeds.)
    original = SafetyRules.vote

    def vote_again(
        self: SafetyRules, block: Block, tree: BlockTree, tc: TimeoutCert | None = None
    ) -> Vote | Refused:
        state = self.state
        if state.last_voted_view == block.view:
            earlier = View(block.view - 1)
            vars(self)["_state"] = dataclasses.replace(state, last_voted_view=earlier, last_vote=None)
        return original(self, block, tree, tc)

    monkeypatch.setattr(SafetyRules, "vote", vote_again)
    spec = SimSpec(nodes=4, byzantine={0: "equivocate-same"})
    _first_violation(spec, range(100), {DOUBLE_SIGN, SAFETY_REGRESSION})


def test_a_two_chain_commit_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def two_chain(tree: BlockTree, certified: Block, length: int) -> Block | None:
        middle = tree.parent(certified)
        return middle if middle is not None and middle.view + 1 == certified.view else None

    monkeypatch.setattr(chain_state_module, "committed_by", two_chain)
    _first_violation(SimSpec(nodes=4), range(20), {CERTIFIED_COMMIT, AGREEMENT, CONFLICTING_QC})


def test_an_application_that_commits_before_the_block_store_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Group commit done wrong: the first block's application commit inside the block store's
    # batch, so it is durable before the chain it executed. A crash aimed at the block store's
    # commit leaves the application ahead of the chain, and the restart refuses to start.
    def app_first(self: Executor, commit: Commit) -> None:
        first, rest = commit.blocks[0], commit.blocks[1:]
        with self._store.batch("commit"):
            self._store.append(commit.blocks, commit.qcs, commit.commit_qc, commit.proof)
            self._store.prune_to(commit.blocks[-1].height)
            self._executed.append(self._apply(first, self._stage(first)))
        self._executed.extend(self._execute(block) for block in rest)

    monkeypatch.setattr(Executor, "on_commit", app_first)
    _first_violation(SimSpec(nodes=4), range(60), {PROGRAM_ERROR, APP_STATE, AGREEMENT})


# The two-chain rule's own teeth (the genesis' commit_chain = 2).


def test_a_two_chain_vote_that_ignores_the_tcs_high_qc_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any block after a TC for the previous view gets a vote, whatever QC it carries: fork-parent's
    # forks off older certified blocks then gather QCs that do not extend committed blocks.
    def any_after_tc(block: Block, tc: TimeoutCert | None) -> Refused | None:
        if block.qc.view + 1 == block.view or (tc is not None and tc.view + 1 == block.view):
            return None
        return Refused(RefusalReason.BELOW_TC_HIGH_QC, "skips views without a TC")

    monkeypatch.setattr(safety_module, "follows_its_certificate", any_after_tc)
    spec = SimSpec(nodes=4, byzantine={0: "fork-parent"}, commit_chain=TWO_CHAIN)
    _first_violation(spec, range(100), {CONFLICTING_QC, AGREEMENT})


def test_a_two_chain_commit_over_non_consecutive_views_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def any_parent(tree: BlockTree, certified: Block, length: int) -> Block | None:
        return tree.parent(certified)

    monkeypatch.setattr(chain_state_module, "committed_by", any_parent)
    spec = SimSpec(nodes=4, byzantine={0: "equivocate"}, commit_chain=TWO_CHAIN)
    _first_violation(spec, range(200), {CONFLICTING_QC, AGREEMENT, CERTIFIED_COMMIT})


def test_a_one_chain_commit_under_the_two_chain_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_state_module, "committed_by", lambda tree, certified, length: certified)
    spec = SimSpec(nodes=4, twins=True, commit_chain=TWO_CHAIN)
    _first_violation(spec, range(200), {CONFLICTING_QC, AGREEMENT})


def test_no_future_view_window_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Votes and timeouts for any view are kept: a far-future sender grows them without bound.
    def stale_only(config: object, current: View, view: View) -> Refused | None:
        return Refused(RefusalReason.STALE_VIEW, f"view {view}") if view + 1 < current else None

    monkeypatch.setattr(proposal_rules, "check_window", stale_only)
    spec = SimSpec(nodes=4, byzantine={0: "far-future"})
    _first_violation(spec, range(50), {BOUNDED_STATE})


def test_joining_a_view_on_one_timeout_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # f+1 timeouts make a replica join their view because one of them is honest. Joining on one
    # lets near-future alone drag honest replicas into views no honest replica gave up on (they
    # still commit: liveness alone does not see it).
    monkeypatch.setattr(TimeoutCollector, "joins", lambda self, count: count >= 1)
    spec = SimSpec(nodes=4, byzantine={0: "near-future"})
    _first_violation(spec, range(20), {UNJUSTIFIED_JOIN})


def test_signatures_without_the_chain_id_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Validators run the same keys on a sibling chain: with the chain id left out of the signed
    # bytes, cross-chain carries the sibling chain's QCs over and honest replicas take them. They
    # follow a chain that is not ours: QCs that conflict with our commits, or no commits at all.
    original = signing_module.signing_bytes

    def without_chain_id(tag: signing_module.Tag, chain_id: str, payload: bytes) -> bytes:
        return original(tag, "", payload)

    monkeypatch.setattr(signing_module, "signing_bytes", without_chain_id)
    spec = SimSpec(nodes=4, byzantine={0: "cross-chain"})
    _first_violation(spec, range(20), {CONFLICTING_QC, AGREEMENT, LIVENESS})


def test_a_sync_target_taken_on_the_proposers_word_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # invalid-block now and then claims a height no chain can have reached by its QC's view; a
    # replica that lacks the parent and trusts the claim syncs towards blocks that do not exist.
    monkeypatch.setattr(fetcher_module, "sync_cap", lambda root, certified_view: 10**18)
    spec = SimSpec(nodes=4, byzantine={0: "invalid-block"})
    _first_violation(spec, range(60), {SYNC_TARGET})


def test_a_deadline_left_in_the_past_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The deferred proposal stays armed when it is due but cannot go out yet (its parent or TC
    # is missing): next_deadline() stays in the past and a driver spins on it (a node stuck at
    # height 0 with short timeouts, issue 14). Only an idle leader defers since the batch clock
    # went (issue 12), so the Twins campaign, its clients never idle, no longer meets it in 100
    # seeds; with short timeouts (drawn batch delays, pauses) Twins does.
    def keep_armed(self: Proposer, view: View, now: float) -> bool:
        deadline = self.deadline(view)
        return deadline is not None and now >= deadline

    monkeypatch.setattr(Proposer, "expire", keep_armed)
    _first_violation(SimSpec(nodes=4, twins=True, short_timeouts=True), range(100), {TIMER_PROGRESS})


def test_a_due_proposal_left_armed_when_the_view_also_timed_out_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 14's shape: on_timer handles the view's timeout alone when it fired (`if timed out:
    # ... elif proposal due: ...`), so a deferred proposal due in the same step is neither sent
    # nor disarmed and next_deadline() stays in the past. Both are due at once only when the
    # clock jumps past them: a node paused while it defers a proposal (an aimed pause), in the
    # short-timeout mode; without pauses no seed in 0..99 shows it.
    original = Replica.on_timer

    def timeout_alone(self: Replica, now: float) -> list[Action]:
        if now < self._pacemaker.deadline:
            return original(self, now)
        proposer = self._proposer
        vars(proposer)["expire"] = lambda view, now: False  # nothing is due but the timeout
        try:
            return original(self, now)
        finally:
            del vars(proposer)["expire"]

    monkeypatch.setattr(Replica, "on_timer", timeout_alone)
    _, report = _first_violation(SimSpec(nodes=4, short_timeouts=True), range(30), {TIMER_PROGRESS})
    assert "--short-timeouts" in report


def test_answering_requests_without_a_serving_budget_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The flood that took an honest node to 3.2 GB: every block and sync request answered, as
    # fast as request-flood sends them. The honest nodes then send it more answers a second
    # than its budget lets through.
    monkeypatch.setattr(ServingBudget, "admit_sync_request", lambda self, peer, start, now: None)
    monkeypatch.setattr(ServingBudget, "admit_block_request", lambda self, peer, now: None)
    spec = SimSpec(nodes=4, byzantine={0: "request-flood"})
    _first_violation(spec, range(20), {SERVING_BUDGET})


def test_a_wiped_validator_that_starts_over_instead_of_recovering_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A validator whose data directory was wiped treats the missing safety record as a new
    # chain's: it signs again from view 1, as a node without `bft.core.recovery` would, and
    # sooner or later signs a second, different timeout or vote for a view it signed in before.
    original = SafetyRules.__init__

    def start_over(self: SafetyRules, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        vars(self)["_recovering"] = False

    monkeypatch.setattr(SafetyRules, "__init__", start_over)
    spec = SimSpec(nodes=4, wipe_rate=1.0)
    _first_violation(spec, range(300), {DOUBLE_SIGN})


# The quorum store's teeth (the genesis' quorum_store = true).


def test_a_proof_of_availability_with_too_few_signers_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # f signers suffice: unavailable-batch's proofs, signed by itself alone for batches it sent
    # to no one, get honest votes for data no honest validator holds.
    monkeypatch.setattr(core_certs_module, "availability_threshold", lambda n: max_faulty(n))
    spec = SimSpec(nodes=4, byzantine={0: "unavailable-batch"}, quorum_store=True)
    _first_violation(spec, range(50), {AVAILABILITY})


def test_a_block_that_references_a_batch_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the duplicate check along the chain, a leader proposes queued proofs its
    # uncommitted ancestors already reference, and their transactions commit twice.
    def anything(
        self: QuorumStore, height: int, committed_height: int, exclude: object
    ) -> tuple[BatchProof, ...]:
        return original(self, height, committed_height, ())

    original = QuorumStore.proofs_for
    monkeypatch.setattr(QuorumStore, "proofs_for", anything)
    monkeypatch.setattr(QuorumStore, "check_block", lambda self, block, pending, height: None)
    spec = SimSpec(nodes=4, quorum_store=True)
    _first_violation(spec, range(50), {VALIDITY})


def test_a_restart_that_does_not_re_index_the_waiting_rows_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The block store writes its transaction index in bulk; the rows still waiting die with the
    # process, and a restart rebuilds them from the stored blocks. Without that, the restarted
    # node forgets where those transactions committed, and a client's retry (sent to a second
    # node, so carried by a second batch) that commits after the restart executes again there
    # alone: its app hash parts from everyone else's.
    original = BlockStore._reindex

    def forgetful(self: BlockStore) -> None:
        original(self)
        vars(self)["_unindexed"] = {}

    monkeypatch.setattr(BlockStore, "_reindex", forgetful)
    spec = SimSpec(nodes=4, quorum_store=True)
    _first_violation(spec, range(100), {APP_STATE})


def test_a_queued_proof_of_a_committed_batch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the check against what committed, stale-proofs' valid proofs of its own committed
    # batches are queued by every replica and proposed by every leader, and every voter refuses
    # those blocks as duplicates: nothing commits again (the bug the ledger cluster test found
    # under batch-flood, when a restarted victim sent such a proof).
    check_queued, proofs_for = QuorumStore._check_queued, QuorumStore.proofs_for

    def forgetting_commits(method: Callable[..., object]) -> Callable[..., object]:
        def mutant(self: QuorumStore, *args: object) -> object:
            committed, self._committed = self._committed, {}
            try:
                return method(self, *args)
            finally:
                self._committed = committed

        return mutant

    monkeypatch.setattr(QuorumStore, "_check_queued", forgetting_commits(check_queued))
    monkeypatch.setattr(QuorumStore, "proofs_for", forgetting_commits(proofs_for))
    spec = SimSpec(nodes=4, byzantine={0: "stale-proofs"}, quorum_store=True)
    _first_violation(spec, range(30), {LIVENESS})


# Leader reputation's teeth (the genesis' leader_reputation = true).


def test_one_node_computing_the_reputation_schedule_differently_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Validator 0 reads a window one block shorter than everyone's: it proposes in views that are
    # not its own by the chain's schedule, and votes for blocks the schedule does not allow.
    original = chain_state_module.ChainState.window

    def short_window(self: chain_state_module.ChainState, block: Block) -> list[Record]:
        window = original(self, block)
        return window[:-1] if self._config.me == 0 and len(window) > 1 else window

    monkeypatch.setattr(chain_state_module.ChainState, "window", short_window)
    spec = SimSpec(nodes=4, leader_reputation=True)
    _first_violation(spec, range(30), {LEADER_SCHEDULE})


def test_voters_that_do_not_check_the_failed_leaders_record_are_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the check, false-blame's blocks, which blame honest validators for turns they did
    # not fail, get honest votes: the chain would bench them and give their turns away.
    monkeypatch.setattr(replica_module, "check_failed_leaders", lambda block, expected: None)
    spec = SimSpec(nodes=4, byzantine={0: "false-blame"}, leader_reputation=True)
    _first_violation(spec, range(30), {LEADER_SCHEDULE, VALIDITY})


# Pruning ([storage] retain_blocks) and the state claims of a state-sync chain.


def test_pruning_past_the_retention_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The retention not kept: a node prunes up to its executed height whatever it promised. A
    # peer that crashed for a while comes back behind every other node's base, and no block sync
    # can bridge the gap. (With the retention kept, 32 blocks, these schedules are clean.)
    keep = BlockStore.keep_latest

    def everything(self: BlockStore, retain_blocks: int, executed_height: int, step: int = 64) -> bool:
        return keep(self, min(retain_blocks, 1), executed_height, step)

    monkeypatch.setattr(BlockStore, "keep_latest", everything)
    _first_violation(SimSpec(nodes=4, state_sync=False, retain_blocks=32), range(20), {LIVENESS})


def test_a_state_claim_of_the_wrong_transaction_set_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # The executor's claim for height h names the transaction set after h - 1: every node agrees
    # with every other, but not with the state a snapshot of h holds (the ledger's app hash and
    # the set of transactions committed up to h), which a joining node checks the claim against.
    def one_behind(self: Executor, height: int, app_hash: bytes) -> bytes:
        digest = self._store.tx_set_digest_at(max(0, height - 1))
        assert digest is not None
        return state_claim(height, app_hash, digest)

    monkeypatch.setattr(Executor, "_claim", one_behind)
    _first_violation(SimSpec(nodes=4, state_sync=True), range(20), {APP_STATE})


def test_a_state_sync_that_trusts_the_offer_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A joining node that skips the check of a snapshot's app hash and transaction set against
    # the chain's claim: a Byzantine peer that passes its older snapshot off as its newest (every
    # part consistent with the others) has its state restored under the wrong height.
    monkeypatch.setattr(statesync_module, "check_offer", lambda offer, claim: None)
    # (n = 7: one Byzantine validator leaves room for honest ones to crash and resync.)
    spec = SimSpec(nodes=7, byzantine={0: "equivocate"}, state_sync=True, retain_blocks=24)
    _first_violation(spec, range(60), {APP_STATE, PROGRAM_ERROR, AGREEMENT})
