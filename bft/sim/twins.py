"""Twins scenarios (Bano et al., "Twins: BFT Systems Made Robust", OPODIS 2022).

Owns: `TwinsScenario` and `generate_twins_scenario`. A twin is a second instance of a validator
sharing its index and key (copy 1), each with its own disk; together the two copies behave like
an equivocating Byzantine validator built from honest code. For each of the first `rounds`
views, the seed picks a leader (any index) and a partition of all instances into at most three
groups; no group is required to hold a quorum, since exploring is the point. A quarter of the
views are unpartitioned; in a split view the two copies of each twin are in different groups
(this found about twice the bugs per schedule that uniform assignment did, on deliberately
weakened replicas). Later views use round-robin leaders and no partitions. The runner feeds
`leaders` into `ReplicaConfig.leaders` and `view_partitions(GST)` (one `ViewPartition` per view,
the same type the fault plan's partitions by view use) into the network; invariants treat twin
indices as Byzantine.
May not: run anything; choices come from the seed only (random sampling, not enumeration).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from bft.core.types import ValidatorIndex
from bft.sim.network import Instance, InstanceGroups, ViewPartition, format_groups

DEFAULT_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class TwinsScenario:
    twin_indices: tuple[int, ...]
    # leaders[v - 1] leads view v for v in 1..rounds.
    leaders: tuple[ValidatorIndex, ...]
    # partitions[v - 1] is the partition of view v.
    partitions: tuple[InstanceGroups, ...]

    def instances(self, n: int) -> list[Instance]:
        return [Instance(i) for i in range(n)] + [Instance(i, 1) for i in self.twin_indices]

    def view_partitions(self, heal_s: float) -> tuple[ViewPartition, ...]:
        """View v's split, for each of the first `rounds` views, healing at `heal_s` (GST)."""
        return tuple(ViewPartition(v, v + 1, p, heal_s) for v, p in enumerate(self.partitions, 1))

    def describe(self) -> str:
        lines = [f"twins of {', '.join(map(str, self.twin_indices))}"]
        for v, (leader, groups) in enumerate(zip(self.leaders, self.partitions, strict=True), 1):
            lines.append(f"view {v}: leader {leader}; {format_groups(groups)}")
        return "\n".join(lines)


def generate_twins_scenario(
    rng: random.Random, n: int, twin_indices: Sequence[int], rounds: int = DEFAULT_ROUNDS
) -> TwinsScenario:
    instances = [Instance(i) for i in range(n)] + [Instance(i, 1) for i in twin_indices]
    twins = set(twin_indices)
    leaders: list[ValidatorIndex] = []
    partitions: list[InstanceGroups] = []
    for _ in range(rounds):
        # Bias leaders towards the twins: their equivocation is what Twins explores.
        if twins and rng.random() < 0.6:
            leaders.append(ValidatorIndex(rng.choice(sorted(twins))))
        else:
            leaders.append(ValidatorIndex(rng.randrange(n)))
        r = rng.random()
        if r < 0.25:
            partitions.append((frozenset(instances),))
            continue
        k = 2 if r < 0.85 else 3
        groups: list[set[Instance]] = [set() for _ in range(k)]
        # The two copies of a twin always land in different groups of a split view.
        for t in sorted(twins):
            a, b = rng.sample(range(k), 2)
            groups[a].add(Instance(t))
            groups[b].add(Instance(t, 1))
        for i in range(n):
            if i not in twins:
                groups[rng.randrange(k)].add(Instance(i))
        partitions.append(tuple(frozenset(g) for g in groups if g))
    return TwinsScenario(tuple(twin_indices), tuple(leaders), tuple(partitions))
