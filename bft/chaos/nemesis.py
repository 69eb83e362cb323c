"""The plan of a chaos run: a scenario's timeline and its seeded random nemesis, expanded into one
concrete, time-ordered list of steps.

Owns: `plan(scenario, seed, duration_s)`, `Step`, `Plan` (its recovery points, its readable form
and its fault counts), and the random nemesis's choices (which fault, on what, how strong, how
long). May not: touch the cluster (the runner applies the steps), read the clock, or draw from any
randomness but `random.Random(seed)`: the same (scenario, seed, duration) is always the same plan,
so a failing run replays from the line that names them.

The random nemesis, as Jepsen's: one fault at a time. After `start`, it draws an exponential gap
(mean `interval`), a fault kind by the `faults` weights, a length (uniform in `length`) and the
fault's targets and parameters; the fault starts, and its lift (heal, restart, resume, clear)
comes `length` later, before the next one starts. Process faults (kill, wipe, pause, skew) target
a random honest node, never a Byzantine one; partitions split all nodes into two random sides;
link faults hit all links, one random node's links, or a random set of links. A fault that
would overlap a fault of the timeline (from its start to the moment the cluster is clean again)
is moved after it; no fault is active in the last `stop` of the run, so liveness can be judged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from bft.chaos.scenario import (
    CLEAN_LINK_FAULTS,
    DISTRIBUTIONS,
    FAULT_KINDS,
    LINK_FAULT_FIELDS,
    LINK_KIND_FIELDS,
    Action,
    ClearLinks,
    Heal,
    Kill,
    Link,
    LinkValue,
    Partition,
    Pause,
    Restart,
    Resume,
    Scenario,
    SetLinks,
    Skew,
    Wipe,
    node_links,
)

__all__ = [
    "Action",
    "ClearLinks",
    "Heal",
    "Kill",
    "Partition",
    "Pause",
    "Plan",
    "Restart",
    "Resume",
    "SetLinks",
    "Skew",
    "Step",
    "Wipe",
    "describe_action",
    "plan",
]

# The nemesis's parameter ranges. Fixed, so that a seed means the same thing in every scenario.
DELAY_MS = (20.0, 300.0)  # uniform; jitter a uniform fraction (up to half) of it
LINK_RATE = (0.01, 0.3)  # drop, duplicate, reorder: uniform
BANDWIDTH_LOG10 = (4.0, 6.0)  # 10 kB/s .. 1 MB/s, log-uniform
SKEW_RATES = (0.5, 0.75, 1.5, 2.0)


@dataclass(frozen=True, slots=True)
class Step:
    """Do `action` at `at_s` seconds after the run starts. `origin` says where it came from
    ("timeline entry 3", "nemesis fault 2"); `kind` is the scenario action name of it."""

    at_s: float
    action: Action
    origin: str = ""

    @property
    def kind(self) -> str:
        return action_kind(self.action)


def action_kind(action: Action) -> str:
    """The scenario's name for an action: partition, heal, kill, restart, wipe, pause, resume,
    skew, clear, or the link fault a `SetLinks` sets (delay, drop, duplicate, reorder,
    bandwidth, cut; joined with "+" if it sets several)."""
    if isinstance(action, SetLinks):
        kinds = [k for k, names in LINK_KIND_FIELDS.items() if set(names) & set(action.changes)]
        return "+".join(kinds)
    if isinstance(action, ClearLinks):
        return "clear"
    return type(action).__name__.lower()


_STARTS_A_FAULT = (Partition, Kill, Wipe, Pause, SetLinks, Skew)


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps of one run, sorted by `at_s` (stable: at one instant, the lift of an earlier
    fault comes before a new fault, and an entry's own steps keep their order)."""

    scenario: Scenario
    seed: int
    duration_s: float
    steps: tuple[Step, ...]

    @property
    def nodes(self) -> int:
        return self.scenario.cluster.nodes

    @property
    def liveness_bound_s(self) -> float:
        """How long after a recovery point commits must resume. The scenario's value, or "auto":
        2 x max_timeout_s, stretched by the slowest clock the plan ever runs (a node whose clock
        runs at 0.5 waits twice as long to time out)."""
        explicit = self.scenario.cluster.liveness_bound_s
        if explicit is not None:
            return explicit
        rates = [*self.scenario.cluster.clock_rate.values()]
        rates += [s.action.rate for s in self.steps if isinstance(s.action, Skew)]
        return 2 * self.scenario.consensus.max_timeout_s / min([1.0, *rates])

    def recovery_points(self) -> tuple[tuple[float, str], ...]:
        """(at_s, what): each instant at which the cluster returns to having no active fault
        (no partition, every link clean, no node down or paused), or at which a node was
        restarted (restart, skew) while nothing else was active. Judged after all the steps of
        one instant, so a lift immediately followed by a new fault is not a recovery."""
        points: list[tuple[float, str]] = []
        state = _FaultState()
        for at_s, group in _by_instant(self.steps):
            was_clean = state.clean()
            for step in group:
                state.apply(step.action)
            restarted = any(isinstance(s.action, Restart | Skew) for s in group)
            if state.clean() and (not was_clean or restarted):
                points.append((at_s, "; ".join(describe_action(s.action, self.nodes) for s in group)))
        return tuple(points)

    def fault_counts(self) -> dict[str, int]:
        """How many faults of each kind start in the plan (lifts are not counted)."""
        counts: dict[str, int] = {}
        for step in self.steps:
            if isinstance(step.action, _STARTS_A_FAULT):
                counts[step.kind] = counts.get(step.kind, 0) + 1
        return dict(sorted(counts.items()))

    def describe(self) -> str:
        """The plan, one step per line: "  12.000s  partition {0,1} | {2,3}"."""
        if not self.steps:
            return "  (no faults)"
        width = max(len(f"{s.at_s:.3f}") for s in self.steps)
        return "\n".join(
            f"  {s.at_s:{width}.3f}s  {describe_action(s.action, self.nodes)}" for s in self.steps
        )


def plan(scenario: Scenario, seed: int | None = None, duration_s: float | None = None) -> Plan:
    """Expand `scenario` into its steps for a run of `duration_s` (default: the scenario's) with
    the nemesis seeded by `seed` (default: the scenario's). Deterministic. ScenarioError if the
    timeline does not fit the duration."""
    seed = scenario.seed if seed is None else seed
    duration_s = scenario.duration_s if duration_s is None else float(duration_s)
    scenario.check_duration(duration_s)
    keyed: list[tuple[float, float, int, Step]] = []

    def add(at_s: float, origin_s: float, action: Action, origin: str) -> None:
        keyed.append((at_s, origin_s, len(keyed), Step(at_s, action, origin)))

    for entry in scenario.timeline:
        origin = f"timeline entry {entry.number}"
        add(entry.at_s, entry.at_s, entry.action, origin)
        if entry.lift is not None:
            add(entry.at_s + (entry.for_s or 0.0), entry.at_s, entry.lift, origin)
    timeline_steps = tuple(step for *_, step in sorted(keyed, key=lambda k: k[:3]))
    if scenario.nemesis is not None:
        for number, (start_s, end_s, action, lift) in enumerate(
            _nemesis_faults(scenario, random.Random(seed), duration_s, timeline_steps), start=1
        ):
            add(start_s, start_s, action, f"nemesis fault {number}")
            add(end_s, start_s, lift, f"nemesis fault {number}")
    steps = tuple(step for *_, step in sorted(keyed, key=lambda k: k[:3]))
    return Plan(scenario=scenario, seed=seed, duration_s=duration_s, steps=steps)


# The random nemesis


_Fault = tuple[float, float, Action, Action]  # start_s, end_s, the fault, its lift


def _nemesis_faults(
    scenario: Scenario, rng: random.Random, duration_s: float, timeline: tuple[Step, ...]
) -> Iterable[_Fault]:
    spec = scenario.nemesis
    assert spec is not None
    kinds = [k for k in FAULT_KINDS if k in spec.faults]
    weights = [spec.faults[k] for k in kinds]
    busy = _busy_spans(timeline)
    last_s = duration_s - spec.stop_s
    previous_end: float | None = None
    while True:
        # Every draw happens in this order whatever the outcome, so a plan is a pure function of
        # (scenario, seed, duration): a longer run has the shorter run's faults as its prefix.
        gap = rng.expovariate(1 / spec.interval_s) if spec.interval_s > 0 else 0.0
        kind = rng.choices(kinds, weights)[0]
        length = _ms(rng.uniform(*spec.length_s))
        action, lift = _DRAW[kind](rng, scenario)
        start = _ms(spec.start_s if previous_end is None else previous_end + gap)
        while (span := _overlap(busy, start, start + length)) is not None:
            start = _ms(span[1] + max(gap, 0.001))
        end = _ms(start + length)
        if end > last_s:
            return
        if isinstance(action, Skew) and isinstance(lift, Skew):
            lift = Skew(lift.node, _rate_at(scenario, timeline, lift.node, start))
        yield start, end, action, lift
        previous_end = end


def _ms(seconds: float) -> float:
    # Millisecond times: a plan reads exactly as it is, and describe() loses nothing.
    return round(seconds, 3)


def _overlap(spans: list[tuple[float, float]], start: float, end: float) -> tuple[float, float] | None:
    for span in spans:
        if start <= span[1] and span[0] <= end:
            return span
    return None


def _busy_spans(timeline: tuple[Step, ...]) -> list[tuple[float, float]]:
    """The timeline's faulty stretches: from a step that leaves the cluster faulty to the
    instant it is clean again (to the end of time if never); any other step is a busy instant."""
    spans: list[tuple[float, float]] = []
    state = _FaultState()
    opened: float | None = None
    for at_s, group in _by_instant(timeline):
        for step in group:
            state.apply(step.action)
        if opened is None and not state.clean():
            opened = at_s
        elif opened is not None and state.clean():
            spans.append((opened, at_s))
            opened = None
        elif opened is None:
            spans.append((at_s, at_s))
    if opened is not None:
        spans.append((opened, float("inf")))
    return spans


def _rate_at(scenario: Scenario, timeline: tuple[Step, ...], node: int, at_s: float) -> float:
    """`node`'s clock rate at `at_s`: its [cluster] rate, or the last timeline skew before."""
    rate = scenario.cluster.rate_of(node)
    for step in timeline:
        if step.at_s <= at_s and isinstance(step.action, Skew) and step.action.node == node:
            rate = step.action.rate
    return rate


def _draw_partition(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
    n = scenario.cluster.nodes
    side = set(rng.sample(range(n), rng.randint(1, n // 2)))
    groups = (tuple(sorted(side)), tuple(i for i in range(n) if i not in side))
    return Partition(tuple(sorted(groups))), Heal()


def _honest_node(rng: random.Random, scenario: Scenario) -> int:
    return rng.choice(scenario.cluster.honest)


def _draw_kill(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
    node = _honest_node(rng, scenario)
    return Kill((node,)), Restart((node,))


def _draw_wipe(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
    node = _honest_node(rng, scenario)
    return Wipe((node,)), Restart((node,))


def _draw_pause(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
    node = _honest_node(rng, scenario)
    return Pause((node,)), Resume((node,))


def _draw_skew(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
    node = _honest_node(rng, scenario)
    rate = rng.choice(SKEW_RATES)
    return Skew(node, rate), Skew(node, scenario.cluster.rate_of(node))  # lift's rate: see caller


def _random_links(rng: random.Random, n: int) -> tuple[Link, ...]:
    """All links, one random node's links, or a random non-empty set of links (each 1 in 2)."""
    every = [(a, b) for a in range(n) for b in range(n) if a != b]
    choice = rng.randrange(3)
    if choice == 0:
        return tuple(every)
    if choice == 1:
        return node_links(rng.randrange(n), n)
    chosen = [link for link in every if rng.random() < 0.5]
    return tuple(chosen) if chosen else (rng.choice(every),)


def _link_drawer(kind: str) -> Callable[[random.Random, Scenario], tuple[Action, Action]]:
    def draw(rng: random.Random, scenario: Scenario) -> tuple[Action, Action]:
        n = scenario.cluster.nodes
        changes: dict[str, LinkValue]
        if kind == "cut":
            # A single link, or a node made deaf (hears no one) or mute (no one hears it).
            node, mode = rng.randrange(n), rng.randrange(3)
            others = [i for i in range(n) if i != node]
            if mode == 0:
                links: tuple[Link, ...] = ((node, rng.choice(others)),)
            elif mode == 1:
                links = tuple((a, node) for a in others)
            else:
                links = tuple((node, b) for b in others)
            changes = {"cut": True}
        else:
            links = _random_links(rng, n)
            if kind == "delay":
                delay_ms = rng.uniform(*DELAY_MS)
                jitter_ms = delay_ms * rng.uniform(0.0, 0.5)
                changes = {
                    "delay_s": _ms(delay_ms / 1000),
                    "jitter_s": _ms(jitter_ms / 1000),
                    "distribution": rng.choice(DISTRIBUTIONS),
                }
            elif kind == "bandwidth":
                changes = {"bandwidth_bytes_per_s": int(10 ** rng.uniform(*BANDWIDTH_LOG10))}
            else:
                changes = {LINK_KIND_FIELDS[kind][0]: round(rng.uniform(*LINK_RATE), 3)}
        return SetLinks(tuple(sorted(links)), changes), ClearLinks(
            tuple(sorted(links)), LINK_KIND_FIELDS[kind]
        )

    return draw


_DRAW: dict[str, Callable[[random.Random, Scenario], tuple[Action, Action]]] = {
    "partition": _draw_partition,
    "kill": _draw_kill,
    "wipe": _draw_wipe,
    "pause": _draw_pause,
    "skew": _draw_skew,
    **{kind: _link_drawer(kind) for kind in LINK_KIND_FIELDS},
}
assert set(_DRAW) == set(FAULT_KINDS)


# What is active: the rules behind recovery points (and the nemesis's view of the timeline).


@dataclass(slots=True)
class _FaultState:
    partitioned: bool = False
    links: dict[Link, set[str]] = field(default_factory=dict)  # faulty fields per link
    down: set[int] = field(default_factory=set)
    paused: set[int] = field(default_factory=set)

    def clean(self) -> bool:
        return not (self.partitioned or self.down or self.paused or any(self.links.values()))

    def apply(self, action: Action) -> None:
        match action:
            case Partition(groups):
                self.partitioned = len(groups) > 1
            case Heal():
                self.partitioned = False
                self.links.clear()
            case Kill(nodes) | Wipe(nodes):
                self.down |= set(nodes)
                self.paused -= set(nodes)
            case Restart(nodes):
                self.down -= set(nodes)
                self.paused -= set(nodes)
            case Skew(node, _):
                self.down.discard(node)
                self.paused.discard(node)
            case Pause(nodes):
                self.paused |= set(nodes) - self.down
            case Resume(nodes):
                self.paused -= set(nodes)
            case SetLinks(links, changes):
                for link in links:
                    active = self.links.setdefault(link, set())
                    for name, value in changes.items():
                        # `distribution` only shapes a delay; it is no fault of its own.
                        if value == CLEAN_LINK_FAULTS[name] or name == "distribution":
                            active.discard(name)
                        else:
                            active.add(name)
            case ClearLinks(links, names):
                for link in links:
                    self.links.get(link, set()).difference_update(names)


def _by_instant(steps: Iterable[Step]) -> Iterable[tuple[float, list[Step]]]:
    group: list[Step] = []
    for step in steps:
        if group and step.at_s != group[0].at_s:
            yield group[0].at_s, group
            group = []
        group.append(step)
    if group:
        yield group[0].at_s, group


# Readable form


def describe_action(action: Action, nodes: int) -> str:
    """One line for an action, e.g. "partition {0,1} | {2,3}", "delay 100ms ±20ms (normal) on
    all links", "cut 0->1", "skew node 1 clock x2"."""
    match action:
        case Partition(groups):
            return "partition " + " | ".join("{" + ",".join(map(str, g)) + "}" for g in groups)
        case Heal():
            return "heal"
        case Kill(ns) | Restart(ns) | Wipe(ns) | Pause(ns) | Resume(ns):
            return f"{type(action).__name__.lower()} {','.join(map(str, ns))}"
        case Skew(node, rate):
            return f"skew node {node} clock x{rate:g}"
        case SetLinks(links, changes):
            kind = action_kind(action)
            where = _describe_links(links, nodes)
            if kind == "cut":
                return f"cut {where}"
            if kind == "delay":
                jitter = float(changes.get("jitter_s", 0.0))
                spread = f" ±{jitter * 1000:g}ms" if jitter else ""
                distribution = f" ({changes['distribution']})" if jitter and "distribution" in changes else ""
                return (
                    f"delay {float(changes.get('delay_s', 0.0)) * 1000:g}ms{spread}{distribution} on {where}"
                )
            if kind == "bandwidth":
                return f"bandwidth {changes['bandwidth_bytes_per_s']} B/s on {where}"
            if kind in ("drop", "duplicate", "reorder"):
                return f"{kind} {float(changes[LINK_KIND_FIELDS[kind][0]]) * 100:g}% on {where}"
            settings = " ".join(f"{k}={v}" for k, v in sorted(changes.items()))
            return f"set {settings} on {where}"
        case ClearLinks(links, names):
            where = _describe_links(links, nodes)
            if set(names) == set(LINK_FAULT_FIELDS):
                return f"clear all faults on {where}"
            kinds = [k for k, fs in LINK_KIND_FIELDS.items() if set(fs) <= set(names)]
            return f"clear {'+'.join(kinds) or ','.join(names)} on {where}"
    raise AssertionError(f"not an action: {action!r}")  # pragma: no cover


def _describe_links(links: tuple[Link, ...], nodes: int) -> str:
    chosen = set(links)
    if chosen == {(a, b) for a in range(nodes) for b in range(nodes) if a != b}:
        return "all links"
    for k in range(nodes):
        if chosen == set(node_links(k, nodes)):
            return f"links of node {k}"
        if nodes > 2 and chosen == {(a, k) for a in range(nodes) if a != k}:
            return f"links into node {k}"
        if nodes > 2 and chosen == {(k, b) for b in range(nodes) if b != k}:
            return f"links from node {k}"
    return ", ".join(f"{a}->{b}" for a, b in sorted(chosen))
