"""What a simulation campaign runs and what it reports.

Owns: `SimSpec` (the knobs), `ScheduleResult` and `CampaignResult` (the outcomes and their
human-readable failure reports, each naming the seed and the command that replays it).
May not: run anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN, check_commit_chain
from bft.core.config import DEFAULT_BASE_TIMEOUT_S
from bft.core.reputation import window_blocks
from bft.core.types import max_faulty
from bft.sim.faults import PAUSE_RATE, WIPE_RATE, FaultPlan
from bft.sim.invariants import Violation
from bft.sim.settings import SimSettings
from bft.sim.twins import DEFAULT_ROUNDS, TwinsScenario

HONEST = "honest"
TWINS = "twins"

# Short-timeout mode: views are some 20 to 100 times shorter than with the default timeouts and
# delay bound, so the time before GST, a schedule's least duration and the faults after GST
# shrink by this factor (a schedule still runs thousands of views, at a cost close to a default
# one's); and more plans pause a node, since a clock that jumps is what the mode is for.
SHORT_TIME_SCALE = 0.1
SHORT_PAUSE_RATE = 0.6


# Under leader reputation a retention keeps the window and this many blocks above it.
SIM_RETAIN_ABOVE_WINDOW: Final = 8


@dataclass(frozen=True)
class SimSpec:
    """A campaign's configuration. `byzantine` maps a validator index to a behaviour name; with
    `shuffle_byzantine` each seed moves the behaviours to seeded indices (same count, same
    names). `twins` adds f - len(byzantine) twin pairs."""

    nodes: int = 4
    byzantine: Mapping[int, str] = field(default_factory=dict)
    twins: bool = False
    chain_id: str = "sim"
    base_timeout_s: float = DEFAULT_BASE_TIMEOUT_S
    # Below the core's cap (DEFAULT_MAX_TIMEOUT_S): backed-off views after GST stay short, so a
    # schedule's liveness window holds several of them and campaigns run fast.
    max_timeout_s: float = 4.0
    # Delay bound after GST; must be well below the base timeout.
    delta_s: float = 0.1
    max_gst_s: float = 20.0
    # Liveness: every honest instance commits `min_new_commits` blocks within `window_s` after the
    # last fault (`FaultPlan.last_fault_s`).
    window_s: float = 60.0
    min_new_commits: int = 3
    # A schedule runs at least this long, so Byzantine behaviours get many views to act in.
    min_duration_s: float = 15.0
    twins_rounds: int = DEFAULT_ROUNDS
    shuffle_byzantine: bool = True
    crashes: bool = True
    # Some plans crash every honest node at once (recovery from disk alone).
    total_crashes: bool = True
    # Some plans crash one honest node for long after GST (it must catch up by block sync).
    late_crashes: bool = True
    # Some plans make the network asynchronous again for a while after GST.
    late_async: bool = True
    # Some plans split the validators for a range of views (healing by a bounded time).
    view_partitions: bool = True
    max_events: int = 500_000
    stop_on_violation: bool = True
    # Each seed draws the consensus settings and payload shape (`bft.sim.settings`); off, every
    # schedule proposes at once with small payloads (for the harness's own tests).
    production: bool = True
    # Some plans pause an honest node's process for a while (`bft.sim.faults.Pause`).
    pauses: bool = True
    # The configuration of issue 14: each seed draws a base timeout of 20 to 50 ms, a batch delay
    # of 0 to 5 ms and a delay bound after GST of a few ms (`bft.sim.settings`), in place of
    # `base_timeout_s` and `delta_s`; times before and after GST shrink (`SHORT_TIME_SCALE`).
    short_timeouts: bool = False
    # The share of (non-total) crashes whose node loses its data directory while down and must
    # recover before it signs (`bft.core.recovery`, `bft.sim.faults`).
    wipe_rate: float = WIPE_RATE
    # The genesis' commit rule (`bft.core.commit_rule`): 3 (chained HotStuff) or 2 (Jolteon).
    commit_chain: int = DEFAULT_COMMIT_CHAIN
    # The genesis' data dissemination (`bft.core.quorum_store`): batches and proofs of
    # availability in proposals instead of transactions.
    quorum_store: bool = False
    # The genesis' leader reputation (`bft.core.reputation`): leaders from the chain's history.
    leader_reputation: bool = False
    # The genesis' "state_sync": claims name the app state with the transaction set
    # (`bft.node.tx_set`), and the ledger runs its app hash version 2.
    state_sync: bool = False
    # Every node's [storage] retain_blocks (0 keeps every block): it prunes after each step.
    retain_blocks: int = 0

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("nodes must be at least 1")
        check_commit_chain(self.commit_chain)
        f = max_faulty(self.nodes)
        for index in self.byzantine:
            if not 0 <= index < self.nodes:
                raise ValueError(f"Byzantine index {index} is not among {self.nodes} nodes")
        if len(self.byzantine) > f:
            raise ValueError(f"{len(self.byzantine)} Byzantine nodes exceed f = {f}")
        if self.twins and len(self.byzantine) >= f:
            raise ValueError(f"twins need a fault budget: f = {f}, {len(self.byzantine)} used")
        if self.retain_blocks < 0:
            raise ValueError("retain_blocks must be 0 (keep every block) or positive")
        window = window_blocks(self.nodes)
        if self.leader_reputation and 0 < self.retain_blocks < window + SIM_RETAIN_ABOVE_WINDOW:
            # As the node refuses it (`bft.node.runtime.check_retention`): the schedule reads
            # the window, and a joining node needs it below its anchor.
            raise ValueError(
                f"under leader reputation retain_blocks must be at least {window + SIM_RETAIN_ABOVE_WINDOW} "
                f"(the window of {window} blocks and a few above)"
            )
        if not 0 <= self.wipe_rate <= 1:
            raise ValueError(f"wipe_rate must be in [0, 1], not {self.wipe_rate}")
        if not 0 < self.delta_s < self.base_timeout_s:
            raise ValueError("need 0 < delta_s < base_timeout_s")

    @property
    def time_scale(self) -> float:
        """What the spec's times before GST and the plan's faults after it are multiplied by."""
        return SHORT_TIME_SCALE if self.short_timeouts else 1.0

    @property
    def pause_rate(self) -> float:
        """The share of (non-calm) plans that pause a node."""
        if not self.pauses:
            return 0.0
        return SHORT_PAUSE_RATE if self.short_timeouts else PAUSE_RATE

    @property
    def twin_count(self) -> int:
        return max_faulty(self.nodes) - len(self.byzantine) if self.twins else 0

    def behaviour_names(self) -> list[str]:
        names = [self.byzantine[i] for i in sorted(self.byzantine)]
        return [*names, TWINS] if self.twins else names

    def replay_command(self, seed: int) -> str:
        cmd = f"bft sim --nodes {self.nodes}"
        names = self.behaviour_names()
        if names:
            cmd += f" --byzantine {','.join(names)}"
        if not self.crashes:
            cmd += " --no-crashes"
        if self.short_timeouts:
            cmd += " --short-timeouts"
        if self.commit_chain != DEFAULT_COMMIT_CHAIN:
            cmd += f" --commit-chain {self.commit_chain}"
        if self.quorum_store:
            cmd += " --quorum-store"
        if self.leader_reputation:
            cmd += " --leader-reputation"
        if self.state_sync:
            cmd += " --state-sync"
        if self.retain_blocks:
            cmd += f" --retain-blocks {self.retain_blocks}"
        return f"{cmd} --seed {seed}"


@dataclass(frozen=True)
class ScheduleResult:
    seed: int
    spec: SimSpec
    violations: tuple[Violation, ...]
    # The lowest committed height among honest instances at the end, and each one's height.
    commits: int
    heights: Mapping[str, int]
    sim_time_s: float
    events: int
    plan: FaultPlan
    byzantine: Mapping[int, str]
    twins: TwinsScenario | None
    refusals: int
    messages: int
    settings: SimSettings
    # Evidence of equivocation honest instances reported, by the validator it names.
    evidence: Mapping[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def replay_command(self) -> str:
        return self.spec.replay_command(self.seed)

    def failure_report(self) -> str:
        """The seed, the violations, the plan and the replay command."""
        lines = [f"seed {self.seed}: {len(self.violations)} violation(s)"]
        lines += [f"  {v}" for v in self.violations[:10]]
        if self.byzantine:
            who = ", ".join(f"{i}={b}" for i, b in sorted(self.byzantine.items()))
            lines.append(f"  Byzantine: {who}")
        lines.append(f"  {self.settings.describe()}")
        lines += [f"  {line}" for line in self.plan.describe().splitlines()]
        if self.twins is not None:
            lines += [f"  {line}" for line in self.twins.describe().splitlines()]
        lines.append(f"  replay: {self.replay_command}")
        return "\n".join(lines)


@dataclass
class CampaignResult:
    spec: SimSpec
    schedules: int = 0
    total_commits: int = 0
    events: int = 0
    failures: list[tuple[int, Violation]] = field(default_factory=list)
    failed: list[ScheduleResult] = field(default_factory=list)
    sim_time_s: float = 0.0
    wall_time_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def schedules_per_s(self) -> float:
        return self.schedules / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def summary(self) -> str:
        status = "ok" if self.ok else f"{len(self.failed)} failing schedule(s)"
        return (
            f"{self.schedules} schedules, {self.total_commits} commits, "
            f"{self.sim_time_s:.0f}s simulated in {self.wall_time_s:.1f}s "
            f"({self.schedules_per_s:.1f} schedules/s): {status}"
        )

    def report(self) -> str:
        return "\n".join([self.summary(), *(r.failure_report() for r in self.failed)])
