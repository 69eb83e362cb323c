"""Seeded fault plans: what goes wrong in one schedule, decided up front from its seed.

Owns: `CrashKind`, `CrashEvent`, `FaultPlan` and `generate_fault_plan`. A plan fixes GST, the
pre-GST network misbehaviour (drops, duplicates, delay spread, partitions of validators), the
crash/restart events of honest validators before GST, and the network faults after GST below.
At no time are more validators faulty (Byzantine, Twins or crashed-or-armed-to-crash) than f,
except in a total crash: every honest validator crashes around one moment and restarts, all
before GST, recovering from disk alone.
May not: run anything; the harness carries the plan out.

After GST, a plan may crash one honest validator for a long time (up to 40 s: dozens to
hundreds of blocks) while the others go on, so that it must catch up by block sync. It may also
draw a second asynchronous period (`AsyncPeriod`), 2 to 8 s after GST so that the system has
made progress first (in most schedules: timeouts backed off before GST may still be long): a
delay spread of half a base timeout to four, drops, duplicates and possibly a partition of
validators, for 1 to 8 s, after which the network is synchronous again. And it may split the
validators by consensus view (`ViewPartition`): for a bounded range of views, messages of those
views do not cross groups, until the split heals, at most 8 s after GST (a split with no
quorum group would otherwise stop views from advancing for ever). Network faults are
not validator faults: the budget below counts crashes only, and it is the same with or without
them. Liveness is demanded over a window after the last fault of any kind: GST, the last
restart, the end of the last asynchronous period, the last heal (`FaultPlan.last_fault_s`).
Each of these draws comes from its own stream of the seed, so plans drawn before it existed
stay as they were.

Pauses (`Pause`, issue 14): an honest validator's process stops for a while, before or after
GST, as a SIGSTOP, a long garbage collection or a stalled disk stops it, and then goes on. It
is not a crash: it keeps its state, and what is sent to it waits in its socket buffer (held in
order, not lost), while its timers cannot fire. When it resumes its clock has jumped: its first
step is a timer step with every deadline far in the past, then it reads what was held. A pause
lasts 2 to 10 base timeouts. Like an asynchronous period it is a timing fault, not a validator
fault (the budget does not count it), and its end counts in `last_fault_s`; it never overlaps a
crash of the same validator (a process that is stopped neither steps nor dies half-way).
Half of the pauses are aimed (`Pause.aimed`): armed at `at_s`, the process stops right after
the step in which it next enters a view it leads (an idle leader then holds a paced proposal,
due together with its view timer when it resumes: issue 14's shape),
if that comes within `PAUSE_AIM_WINDOW_BASE_TIMEOUTS`; it resumes at `resume_s`, so the stop
lasts the pause's drawn length plus what was left of that window.

Wipes (issue 11): a quarter of the crashes (never a total crash) also lose the node's data
directory while it is down: it restarts with no safety record and no blocks, as a validator
restored onto an empty disk does, and must recover before it signs (`bft.core.recovery`) and
sync the chain from its peers. `double-sign` is what would catch it signing again in a view it
signed in before. No wipe starts while another wiped node may still be recovering (until its
restart plus `WIPE_RECOVERY_MARGIN_S`): two recovering at once exceed f.

Crash kinds (each occupies the interval [at_s, restart_s) of the fault budget):
- PLAIN: the node dies at `at_s` and restarts at `restart_s`.
- AFTER_STEP: from `at_s`, the next event the node processes runs to completion (so what it
  persisted is durable) and then the node dies with the returned actions unsent.
- MID_SAVE: from `at_s`, the disk's `after_ops`-th next operation raises SimCrash, so the node
  dies in the middle of a save. An armed crash that has not fired by `restart_s` is disarmed.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Collection
from dataclasses import dataclass, replace

from bft.core.types import max_faulty
from bft.sim.network import AsyncPeriod, Instance, NetworkParams, TimePartition, ViewPartition, format_groups

# The second asynchronous period: how often, when (after GST, once the system made progress), and
# for how long.
ASYNC_AGAIN_RATE = 0.3
ASYNC_AGAIN_START_AFTER_GST_S = (2.0, 8.0)
ASYNC_AGAIN_DURATION_S = (1.0, 8.0)
# Partitions by view: how often, which views (where schedules are around GST), how many views,
# and how long after GST one may still hold.
VIEW_PARTITION_RATE = 0.3
VIEW_PARTITION_FIRST_VIEWS = (1, 40)
MAX_VIEW_PARTITION_VIEWS = 6
MAX_VIEW_PARTITION_HEAL_AFTER_GST_S = 8.0
# Pauses: how often (unless the caller says otherwise), how many, how long in base timeouts, and
# how long after GST one may start.
PAUSE_RATE = 0.3
# The share of crashes (not total crashes) whose node restarts with its data directory wiped.
WIPE_RATE = 0.25
# A wiped node counts as faulty this long after its restart, for the next wipe: its recovery
# needs reports from n - quorum + f + 1 others, and a second recovering node answers none.
WIPE_RECOVERY_MARGIN_S = 20.0
PAUSE_COUNTS = (1, 1, 2, 3)
PAUSE_BASE_TIMEOUTS = (2.0, 10.0)
PAUSE_AIMED_RATE = 1 / 2
PAUSE_AIM_WINDOW_BASE_TIMEOUTS = 3.0
PAUSE_START_AFTER_GST_S = (0.0, 6.0)


class CrashKind(enum.StrEnum):
    PLAIN = "plain"
    AFTER_STEP = "after-step"
    MID_SAVE = "mid-save"


@dataclass(frozen=True, slots=True)
class CrashEvent:
    index: int
    kind: CrashKind
    at_s: float
    restart_s: float
    # MID_SAVE only: which disk operation from `at_s` on dies (a save is 4 operations).
    after_ops: int = 0
    # The node's data directory is lost while it is down: it restarts with an empty disk, no
    # safety record and no blocks, so it must recover (`bft.core.recovery`) and sync.
    wipe: bool = False


@dataclass(frozen=True, slots=True)
class Pause:
    """Validator `index` is stopped in [at_s, resume_s): no event is handled, what arrives is held.
    An `aimed` pause is armed at `at_s` and stops the process after its next entry into a view
    it leads, if that comes by `latest_stop_s`."""

    index: int
    at_s: float
    resume_s: float
    aimed: bool = False
    latest_stop_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.at_s < self.resume_s:
            raise ValueError("need 0 <= at_s < resume_s")

    def describe(self) -> str:
        if self.aimed:
            return (
                f"pause of {self.index} at its next entry into a view it leads in "
                f"{self.at_s:.3f}..{self.latest_stop_s:.3f}s, resume {self.resume_s:.3f}s"
            )
        return (
            f"pause of {self.index} at {self.at_s:.3f}s, resume {self.resume_s:.3f}s "
            f"(the clock jumps {self.resume_s - self.at_s:.3f}s)"
        )


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Everything that goes wrong in one schedule. Printable, and a pure function of its seed."""

    seed: int
    gst_s: float
    drop_rate: float
    dup_rate: float
    min_delay_s: float
    max_delay_s: float
    delta_s: float
    partitions: tuple[TimePartition, ...]
    crashes: tuple[CrashEvent, ...]
    async_periods: tuple[AsyncPeriod, ...] = ()
    view_partitions: tuple[ViewPartition, ...] = ()
    pauses: tuple[Pause, ...] = ()

    @property
    def last_fault_s(self) -> float:
        """When the last fault ends: GST, a later restart, the end of an asynchronous period
        after GST, the heal of a partition by view, or a resume from a pause."""
        return max(
            [
                self.gst_s,
                *(c.restart_s for c in self.crashes),
                *(a.end_s for a in self.async_periods),
                *(v.heal_s for v in self.view_partitions),
                *(p.resume_s for p in self.pauses),
            ]
        )

    def network_params(self) -> NetworkParams:
        return NetworkParams(
            gst_s=self.gst_s,
            drop_rate=self.drop_rate,
            dup_rate=self.dup_rate,
            min_delay_s=self.min_delay_s,
            max_delay_s=self.max_delay_s,
            delta_s=self.delta_s,
        )

    def describe(self) -> str:
        """A few human-readable lines for failure reports."""
        lines = [
            f"GST {self.gst_s:.3f}s; before GST: drop {self.drop_rate:.0%}, "
            f"duplicate {self.dup_rate:.0%}, delay {self.min_delay_s:.3f}..{self.max_delay_s:.3f}s;"
            f" after GST delay <= {self.delta_s:.3f}s"
        ]
        for p in self.partitions:
            lines.append(f"partition {p.start_s:.3f}..{p.end_s:.3f}s: {format_groups(p.groups)}")
        for a in self.async_periods:
            split = f"; partition {format_groups(a.groups)}" if a.groups else ""
            lines.append(
                f"asynchronous again {a.start_s:.3f}..{a.end_s:.3f}s: drop {a.drop_rate:.0%}, "
                f"duplicate {a.dup_rate:.0%}, delay <= {a.max_delay_s:.3f}s{split}"
            )
        for v in self.view_partitions:
            lines.append(f"partition by view, {v.describe()}")
        for c in self.crashes:
            extra = f" (disk op {c.after_ops})" if c.kind is CrashKind.MID_SAVE else ""
            wiped = ", data wiped" if c.wipe else ""
            at = f"at {c.at_s:.3f}s, restart {c.restart_s:.3f}s"
            lines.append(f"crash {c.kind.value}{extra} of {c.index} {at}{wiped}")
        lines += [p.describe() for p in self.pauses]
        return "\n".join(lines)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of half-open intervals [a, b) covering one instant."""
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = cur = 0
    for _, d in points:  # ends sort before starts at equal times: half-open
        cur += d
        best = max(best, cur)
    return best


def _split(rng: random.Random, n: int) -> tuple[frozenset[int], ...]:
    """Indices 0..n-1 in 2 or 3 non-empty groups (n >= 2)."""
    members = list(range(n))
    rng.shuffle(members)
    cuts = sorted(rng.sample(range(1, n), min(rng.randint(2, 3), n) - 1))
    return tuple(frozenset(members[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True))


def _random_groups(rng: random.Random, members: list[int]) -> tuple[frozenset[int], ...]:
    k = rng.randint(2, 3)
    groups: list[set[int]] = [set() for _ in range(k)]
    for m in members:
        groups[rng.randrange(k)].add(m)
    return tuple(frozenset(g) for g in groups if g)


def generate_fault_plan(
    seed: int,
    n: int,
    faulty: Collection[int],
    *,
    base_timeout_s: float,
    delta_s: float,
    max_gst_s: float,
    min_gst_s: float = 0.0,
    crashes: bool = True,
    total_crashes: bool = True,
    late_crashes: bool = True,
    late_async: bool = True,
    view_partitions: bool = True,
    pause_rate: float = PAUSE_RATE,
    time_scale: float = 1.0,
    wipe_rate: float = WIPE_RATE,
) -> FaultPlan:
    """A varied plan from `seed`: from calm to harsh, with crashes only of validators not in
    `faulty` and at most f - len(faulty) of them down (or armed) at any instant. `pause_rate` is
    the share of (non-calm) plans with pauses (0: none), `wipe_rate` the share of crashes that
    lose their node's data directory (0: none). `time_scale` shortens what happens
    after GST (when a late crash, asynchronous period, heal or pause comes and how long a late
    crash or asynchronous period lasts) for schedules whose views are that much shorter."""
    rng = random.Random(f"faults/{seed}")
    min_delay_s = delta_s / 20
    calm = rng.random() < 0.1
    gst_s = min_gst_s if calm else rng.uniform(min_gst_s, max(min_gst_s, max_gst_s))
    drop_rate = 0.0 if calm else rng.choice([0.0, 0.0, 0.02, 0.1, 0.3])
    dup_rate = 0.0 if calm else rng.choice([0.0, 0.02, 0.1])
    max_delay_s = rng.choice(
        [delta_s, delta_s, base_timeout_s * 0.5, base_timeout_s * 1.5, base_timeout_s * 4]
    )

    honest = [i for i in range(n) if i not in faulty]
    partitions: list[TimePartition] = []
    if not calm and gst_s > 0:
        for _ in range(rng.choice([0, 0, 1, 2, 3])):
            start = rng.uniform(0, gst_s)
            end = rng.uniform(start, gst_s)
            partitions.append(TimePartition(start, end, _random_groups(rng, list(range(n)))))

    budget = max_faulty(n) - len(faulty)
    events: list[CrashEvent] = []
    total_crash = rng.random() < 0.15 and total_crashes and crashes and not calm and gst_s > 1.0 and honest
    if total_crash:
        # Every honest process dies (a power cut), then all restart: not a Byzantine fault, but
        # recovery must come from disk alone. Nothing else crashes in such a plan.
        at_s = rng.uniform(0.5, gst_s * 0.8)
        for index in honest:
            events.append(_crash(rng, index, at_s, rng.uniform(at_s + 0.2, gst_s)))
    elif crashes and not calm and budget > 0 and gst_s > 0.5 and honest:
        for _ in range(rng.choice([0, 1, 2, 3, 4])):
            index = rng.choice(honest)
            at_s = rng.uniform(0, gst_s * 0.9)
            restart_s = rng.uniform(at_s + 0.01, gst_s)
            same = [(c.at_s, c.restart_s) for c in events if c.index == index]
            if _max_overlap([*same, (at_s, restart_s)]) > 1:
                continue
            spans = [(c.at_s, c.restart_s) for c in events]
            if _max_overlap([*spans, (at_s, restart_s)]) > budget:
                continue
            events.append(_crash(rng, index, at_s, restart_s))
    # Its own stream, so that plans drawn before this existed stay as they were.
    late = random.Random(f"faults-after-gst/{seed}")
    if late_crashes and crashes and not total_crash and budget > 0 and honest and late.random() < 0.35:
        at_s = gst_s + late.uniform(0.0, 3.0) * time_scale
        restart_s = at_s + late.uniform(8.0, 40.0) * time_scale
        spans = [(c.at_s, c.restart_s) for c in events]
        if _max_overlap([*spans, (at_s, restart_s)]) <= budget:
            events.append(CrashEvent(late.choice(honest), CrashKind.PLAIN, at_s, restart_s))
    events.sort(key=lambda c: (c.at_s, c.index))
    if not total_crash and wipe_rate > 0:
        # Its own stream too; a total crash is never wiped (with every record lost at once
        # nobody could answer a recovering node, and the chain itself would be gone).
        wipes = random.Random(f"faults-wipes/{seed}")
        events = _wipes(wipes, events, wipe_rate, WIPE_RECOVERY_MARGIN_S * time_scale)
    periods: list[AsyncPeriod] = []
    again = random.Random(f"faults-async-after-gst/{seed}")
    if late_async and not calm and again.random() < ASYNC_AGAIN_RATE:
        start_s = gst_s + again.uniform(*ASYNC_AGAIN_START_AFTER_GST_S) * time_scale
        periods.append(
            AsyncPeriod(
                start_s=start_s,
                end_s=start_s + again.uniform(*ASYNC_AGAIN_DURATION_S) * time_scale,
                drop_rate=again.choice([0.0, 0.02, 0.1, 0.3]),
                dup_rate=again.choice([0.0, 0.02, 0.1]),
                max_delay_s=again.choice([base_timeout_s * 0.5, base_timeout_s * 1.5, base_timeout_s * 4]),
                groups=_split(again, n) if n >= 2 and again.random() < 0.5 else (),
            )
        )
    splits: list[ViewPartition] = []
    by_view = random.Random(f"faults-by-view/{seed}")
    if view_partitions and not calm and n >= 2 and by_view.random() < VIEW_PARTITION_RATE:
        for _ in range(by_view.choice([1, 1, 2])):
            first_view = by_view.randint(*VIEW_PARTITION_FIRST_VIEWS)
            end_view = first_view + by_view.randint(1, MAX_VIEW_PARTITION_VIEWS)
            groups = tuple(frozenset(Instance(i) for i in g) for g in _split(by_view, n))
            heal_s = gst_s + by_view.uniform(0.0, MAX_VIEW_PARTITION_HEAL_AFTER_GST_S) * time_scale
            splits.append(ViewPartition(first_view, end_view, groups, heal_s))
    pauses = _pauses(
        random.Random(f"faults-pauses/{seed}"),
        honest if not calm and pause_rate > 0 else [],
        events,
        gst_s=gst_s,
        base_timeout_s=base_timeout_s,
        rate=pause_rate,
        time_scale=time_scale,
    )
    return FaultPlan(
        seed=seed,
        gst_s=gst_s,
        drop_rate=drop_rate,
        dup_rate=dup_rate,
        min_delay_s=min_delay_s,
        max_delay_s=max_delay_s,
        delta_s=delta_s,
        partitions=tuple(partitions),
        crashes=tuple(events),
        async_periods=tuple(periods),
        view_partitions=tuple(splits),
        pauses=pauses,
    )


def _pauses(
    rng: random.Random,
    honest: list[int],
    crashes: list[CrashEvent],
    *,
    gst_s: float,
    base_timeout_s: float,
    rate: float,
    time_scale: float,
) -> tuple[Pause, ...]:
    """Pauses of honest validators, before or after GST, none overlapping another pause or a
    crash of the same validator."""
    if not honest or rng.random() >= rate:
        return ()
    pauses: list[Pause] = []
    for _ in range(rng.choice(PAUSE_COUNTS)):
        index = rng.choice(honest)
        if gst_s > 0 and rng.random() < 0.5:
            at_s = rng.uniform(0.0, gst_s)
        else:
            at_s = gst_s + rng.uniform(*PAUSE_START_AFTER_GST_S) * time_scale
        length_s = base_timeout_s * rng.uniform(*PAUSE_BASE_TIMEOUTS)
        if rng.random() < PAUSE_AIMED_RATE:
            latest_stop_s = at_s + base_timeout_s * PAUSE_AIM_WINDOW_BASE_TIMEOUTS
            pause = Pause(index, at_s, latest_stop_s + length_s, aimed=True, latest_stop_s=latest_stop_s)
        else:
            pause = Pause(index, at_s, at_s + length_s)
        same = [(c.at_s, c.restart_s) for c in crashes if c.index == index]
        same += [(p.at_s, p.resume_s) for p in pauses if p.index == index]
        if _max_overlap([*same, (pause.at_s, pause.resume_s)]) > 1:
            continue
        pauses.append(pause)
    pauses.sort(key=lambda p: (p.at_s, p.index))
    return tuple(pauses)


def _wipes(rng: random.Random, events: list[CrashEvent], rate: float, margin_s: float) -> list[CrashEvent]:
    """Mark a `rate` share of `events` (sorted by time) as wiped, never one that starts while
    another wiped node may still be recovering (until its restart plus `margin_s`): two
    validators recovering at once in a 4-validator network wait for each other's reports for
    ever, which is beyond f faults, not a bug (`bft.core.recovery`)."""
    out: list[CrashEvent] = []
    busy_until = -1.0
    for event in events:
        if rng.random() < rate and event.at_s >= busy_until:
            event = replace(event, wipe=True)
            busy_until = event.restart_s + margin_s
        out.append(event)
    return out


def _crash(rng: random.Random, index: int, at_s: float, restart_s: float) -> CrashEvent:
    """A crash of a random kind; a mid-save crash dies at one of the next six disk operations."""
    kind = rng.choice(list(CrashKind))
    after_ops = rng.randint(1, 6) if kind is CrashKind.MID_SAVE else 0
    return CrashEvent(index, kind, at_s, restart_s, after_ops)
