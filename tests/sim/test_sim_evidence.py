"""Equivocation is kept as evidence: simulated Byzantine validators that sign two votes (or two
proposals) for one view are named by the evidence honest replicas report; honest runs report
none. Evidence is traced, never a violation: it changes nothing in the protocol."""

from __future__ import annotations

import pytest

from bft.campaign import FACTORIES
from bft.sim import SimSpec, run_schedule
from bft.sim.world import TraceEntry

SEEDS = range(5)


@pytest.mark.parametrize("behaviour", ["equivocate", "double-vote"])
def test_byzantine_equivocation_is_evidence_naming_the_byzantine_validator(behaviour: str) -> None:
    named: set[int] = set()
    for seed in SEEDS:
        trace: list[TraceEntry] = []
        result = run_schedule(SimSpec(nodes=4, byzantine={0: behaviour}), seed, FACTORIES, trace=trace)
        assert result.ok, result.failure_report()
        byzantine = set(result.byzantine)
        assert set(result.evidence) <= byzantine, f"seed {seed}: evidence names honest validators"
        traced = [what for _, _, what in trace if what.startswith("evidence:")]
        assert len(traced) >= sum(result.evidence.values())
        named |= set(result.evidence)
    assert named, f"no evidence against a {behaviour} validator in seeds {SEEDS}"


def test_honest_runs_produce_no_evidence() -> None:
    for seed in SEEDS:
        result = run_schedule(SimSpec(nodes=4), seed, FACTORIES)
        assert result.ok, result.failure_report()
        assert result.evidence == {}, f"seed {seed}: {result.evidence}"
