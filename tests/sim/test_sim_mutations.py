"""The simulator has teeth: each test weakens one safety rule and expects a campaign to report a
violation. A weakening that goes unnoticed means the fault plans or adversaries are too tame.

Each test runs seeds in order and stops at the first violation, bounded by a seed budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

import bft.core.proposal_rules as proposal_rules
import bft.core.replica as replica_module
import bft.core.safety as safety_module
import crypto.certs as certs_module
from bft.campaign import FACTORIES
from bft.core.blocktree import BlockTree
from bft.core.messages import Block, SafetyState
from bft.core.safety import SafetyRules
from bft.sim import SimSpec, run_schedule
from bft.sim.invariants import (
    AGREEMENT,
    APP_STATE,
    CERTIFIED_COMMIT,
    CONFLICTING_QC,
    PERSIST_BEFORE_SEND,
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


def test_commit_over_non_consecutive_views_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def any_three_chain(tree: BlockTree, certified: Block) -> Block | None:
        middle = tree.parent(certified)
        return None if middle is None else tree.parent(middle)

    monkeypatch.setattr(replica_module, "committed_by", any_three_chain)
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
    def never_committed(self: replica_module.Replica, tx: bytes) -> bool:
        return False

    monkeypatch.setattr(replica_module.Replica, "_is_committed", never_committed)
    _first_violation(SimSpec(nodes=4, byzantine={0: "invalid-block"}), range(100), {VALIDITY})


def test_voting_without_checking_the_app_state_claim_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def unchecked(block: Block, claim: object) -> str | None:
        return None

    monkeypatch.setattr(proposal_rules, "check_app_claim", unchecked)
    # invalid-block sometimes proposes a false app hash or height and votes for it.
    _first_violation(SimSpec(nodes=4, byzantine={0: "invalid-block"}), range(100), {APP_STATE})
