"""Seeded campaigns of the real core with each Byzantine behaviour, at n=4 (f=1) and n=7 (f=2).

Every schedule checks agreement, conflicting QCs, validity, double signing, persist-before-send,
safety-state monotonicity and liveness after the last fault. A failure prints its seed and replay
command.
Together with test_sim_honest.py these suites run over 2,000 schedules.
"""

from __future__ import annotations

import pytest

from bft.adversary import BEHAVIOURS
from bft.campaign import FACTORIES
from bft.core.commit_rule import TWO_CHAIN
from bft.sim import SimSpec, run_campaign

# CI's short version: since the simulator runs the node's block store, executor and ledger, a
# schedule costs about twice what it did, so CI runs about half the seeds it ran before; the
# README's campaigns (`bft sim ... --seeds 100` and more per behaviour) are the long version.
N4_SEEDS = 80
N7_SEEDS = 16
# Behaviours beside which the honest replicas make progress at full speed, so each schedule costs
# as much as an honest one (three times an equivocating leader's), and the slowest others: half
# the seeds in CI.
N4_SEEDS_HALVED = frozenset(
    {
        "near-future",
        "cross-chain",
        "double-vote",
        "far-future",
        "replay",
        "out-of-turn",
        "equivocate-same",
        "garbage",
        "detached-parent",
    }
)

# Behaviours whose schedules cost several honest ones (request-flood has honest replicas read and
# encode block ranges from SQLite at the rate its budget allows): a few seeds in CI. And the
# quorum store's, which act only under it (`test_n4_one_byzantine_quorum_store`): without it they
# run as honest replicas, which a few seeds confirm.
N4_SEEDS_FEW = {
    "request-flood": 12,
    "batch-flood": 4,
    "unavailable-batch": 4,
    "stale-proofs": 4,
    "false-blame": 12,
}


def _campaign(spec: SimSpec, seeds: range) -> None:
    result = run_campaign(spec, seeds, FACTORIES)
    print(f"\nn={spec.nodes} {','.join(spec.behaviour_names())}: {result.summary()}")
    assert result.ok, result.report()
    assert result.schedules == len(seeds)
    # Liveness holds in every schedule, so each adds at least min_new_commits blocks.
    assert result.total_commits >= spec.min_new_commits * len(seeds)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_n4_one_byzantine(behaviour: str) -> None:
    seeds = N4_SEEDS // 2 if behaviour in N4_SEEDS_HALVED else N4_SEEDS
    seeds = N4_SEEDS_FEW.get(behaviour, seeds)
    _campaign(SimSpec(nodes=4, byzantine={0: behaviour}), range(seeds))


@pytest.mark.parametrize(
    "behaviours",
    [
        ("equivocate", "double-vote"),
        ("forged-qc", "garbage"),
        ("invalid-block", "omit"),
        ("replay", "far-future"),
        ("silent", "silent"),
        ("equivocate", "equivocate"),
        ("equivocate-same", "fork-parent"),
        ("near-future", "cross-chain"),
    ],
    ids=lambda b: "+".join(b),
)
def test_n7_two_byzantine(behaviours: tuple[str, str]) -> None:
    spec = SimSpec(nodes=7, byzantine=dict(enumerate(behaviours)))
    _campaign(spec, range(N7_SEEDS))


# The Byzantine leaders that probe the two-chain rule's vote and timeout rules hardest (forks off
# older certified blocks after a TC, equivocation, withheld QCs), under that rule.
TWO_CHAIN_BEHAVIOURS = (
    "fork-parent",
    "equivocate",
    "equivocate-same",
    "detached-parent",
    "forged-qc",
    "silent",
)


@pytest.mark.parametrize("behaviour", TWO_CHAIN_BEHAVIOURS)
def test_n4_one_byzantine_two_chain(behaviour: str) -> None:
    _campaign(SimSpec(nodes=4, byzantine={0: behaviour}, commit_chain=TWO_CHAIN), range(N4_SEEDS // 4))


# Behaviours against the quorum store: proofs for data nobody has, batch floods, valid proofs of
# batches committed already, and two that exercise proposals and fetches under it.
# batch-flood's schedules are slow (thousands of refused messages each): fewer of them.
@pytest.mark.parametrize(
    ("behaviour", "seeds"),
    [("unavailable-batch", 16), ("batch-flood", 5), ("stale-proofs", 12), ("equivocate", 12), ("replay", 12)],
    ids=lambda v: str(v),
)
def test_n4_one_byzantine_quorum_store(behaviour: str, seeds: int) -> None:
    _campaign(SimSpec(nodes=4, byzantine={0: behaviour}, quorum_store=True), range(seeds))


def test_n7_byzantine_with_twins() -> None:
    _campaign(SimSpec(nodes=7, byzantine={0: "equivocate"}, twins=True), range(N7_SEEDS))


# Leader reputation (`bft.core.reputation`): honest schedules with their crashes and pauses, and
# the leaders that fail their turns (silent, invalid blocks), blame others for failures
# (false-blame), fork or propose out of turn, and Twins, each against the schedule invariant.
@pytest.mark.parametrize(
    ("behaviour", "seeds"),
    [
        (None, 20),
        ("silent", 6),
        ("false-blame", 6),
        ("invalid-block", 6),
        ("equivocate", 6),
        ("fork-parent", 6),
        ("out-of-turn", 6),
        ("twins", 6),
    ],
    ids=lambda v: str(v),
)
def test_n4_leader_reputation(behaviour: str | None, seeds: int) -> None:
    if behaviour == "twins":
        spec = SimSpec(nodes=4, twins=True, leader_reputation=True)
    else:
        spec = SimSpec(nodes=4, byzantine={} if behaviour is None else {0: behaviour}, leader_reputation=True)
    _campaign(spec, range(seeds))


@pytest.mark.parametrize(
    ("nodes", "behaviour", "quorum_store", "seeds"),
    [(4, None, False, 10), (4, None, True, 10), (7, "equivocate", False, 8)],
    ids=["honest", "quorum-store", "n7-equivocate"],
)
def test_state_sync_chain_with_a_retention(
    nodes: int, behaviour: str | None, quorum_store: bool, seeds: int
) -> None:
    """Claims naming the state with the transaction set, every node pruning to its latest 24
    blocks after each step, and a restarting node joining by state sync from its live peers
    (the Byzantine one lying), through crashes, wipes and partitions (the README's campaigns
    run more seeds)."""
    byzantine = {} if behaviour is None else {0: behaviour}
    spec = SimSpec(
        nodes=nodes, byzantine=byzantine, quorum_store=quorum_store, state_sync=True, retain_blocks=24
    )
    _campaign(spec, range(seeds))


def test_n7_leader_reputation_two_byzantine() -> None:
    spec = SimSpec(nodes=7, byzantine={0: "silent", 1: "false-blame"}, leader_reputation=True)
    _campaign(spec, range(N7_SEEDS // 4))
