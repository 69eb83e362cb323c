"""Scenario files parse into what they say, bad ones are refused naming the entry and key, and the
plan (timeline plus seeded random nemesis) is deterministic and keeps the nemesis's promises."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bft.adversary import BEHAVIOURS
from bft.chaos.nemesis import (
    ClearLinks,
    Heal,
    Kill,
    Partition,
    Pause,
    Plan,
    Restart,
    Resume,
    SetLinks,
    Skew,
    Step,
    Wipe,
    plan,
)
from bft.chaos.scenario import (
    FAULT_KINDS,
    LINK_FAULT_FIELDS,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
    resolve_links,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "configs" / "scenarios"
EXAMPLES = sorted(SCENARIOS.glob("*.toml"))

HEAD = 'duration = "60s"\n'
CONSENSUS = "[consensus]\nbase_timeout_s = 0.5\nmax_timeout_s = 2.0\n"


def scenario(body: str, head: str = HEAD) -> Scenario:
    return parse_scenario(head + body, "test.toml")


def steps_of(entry: str, head: str = HEAD) -> list[tuple[float, object]]:
    p = plan(scenario("[[timeline]]\n" + entry + "\n", head))
    return [(s.at_s, s.action) for s in p.steps]


ALL = tuple((a, b) for a in range(4) for b in range(4) if a != b)
OF_2 = ((0, 2), (1, 2), (2, 0), (2, 1), (2, 3), (3, 2))


# The committed examples


def test_the_examples_are_there() -> None:
    names = {p.stem for p in EXAMPLES}
    assert {
        "partition-heal",
        "minority",
        "paused-leader",
        "wiped-node",
        "byzantine-storm",
        "random-nemesis",
        "ci-short",
    } <= names
    assert (SCENARIOS / "README.md").is_file()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_parses_and_plans(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem
    assert s.description
    p = plan(s)
    assert p.steps
    assert all(0 <= step.at_s <= s.duration_s for step in p.steps)
    assert [step.at_s for step in p.steps] == sorted(step.at_s for step in p.steps)
    assert p.recovery_points(), "every example ends its faults, so liveness can be judged"
    # The last fault is lifted before the end, with time left to see commits resume.
    assert p.recovery_points()[-1][0] + p.liveness_bound_s < s.duration_s
    assert p.describe().count("\n") == len(p.steps) - 1


def test_ci_short_fits_in_ninety_seconds_and_has_what_it_promises() -> None:
    s = load_scenario(SCENARIOS / "ci-short.toml")
    assert s.duration_s <= 90
    assert s.cluster.byzantine and s.load.enabled
    assert {"partition", "kill", "pause"} <= set(plan(s).fault_counts())
    assert any(isinstance(step.action, Heal) for step in plan(s).steps)


def test_random_nemesis_example_runs_half_an_hour_and_draws_every_kind() -> None:
    s = load_scenario(SCENARIOS / "random-nemesis.toml")
    assert s.duration_s == 1800 and s.nemesis is not None
    assert set(s.nemesis.faults) == set(FAULT_KINDS)
    assert len(s.cluster.byzantine) == 1 and s.load.enabled


# Durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("20s", 20.0), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0), ("1.5s", 1.5), (7, 7.0)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["", "5", "5 s", "s", "-5s", "5x", "1.s", True, [1], -1, float("nan")])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ScenarioError, match=r"^x"):
        parse_duration(text, "x")


# The file's tables


def test_a_full_scenario_parses() -> None:
    s = scenario(
        'name = "n"\ndescription = "d"\nseed = 9\n'
        '[cluster]\nnodes = 4\nbyzantine = { 3 = "equivocate" }\nclock_rate = { 1 = 1.5, 2 = 1.0 }\n'
        'liveness_bound = "7s"\n' + CONSENSUS + "[load]\nclients = 8\nrate = 100\n"
        "mix = { put = 5, cas = 3, del = 1, get = 3 }\nkeys = 32\n"
    )
    assert (s.name, s.description, s.seed, s.duration_s) == ("n", "d", 9, 60.0)
    assert dict(s.cluster.byzantine) == {3: "equivocate"}
    assert dict(s.cluster.clock_rate) == {1: 1.5}  # 1.0 is the default, not kept
    assert s.cluster.honest == (0, 1, 2) and s.cluster.f == 1
    assert s.cluster.liveness_bound_s == 7.0
    assert (s.consensus.base_timeout_s, s.consensus.max_timeout_s) == (0.5, 2.0)
    assert s.consensus_overrides == ("base_timeout_s", "max_timeout_s")
    assert s.consensus.max_block_txs == 1000  # untouched keys keep the nodes' defaults
    assert (s.load.clients, s.load.rate, s.load.keys, s.load.enabled) == (8, 100.0, 32, True)
    assert dict(s.load.mix) == {"put": 5.0, "cas": 3.0, "del": 1.0, "get": 3.0}
    assert s.timeline == () and s.nemesis is None


def test_defaults() -> None:
    s = parse_scenario(HEAD, "dir/some-name.toml", default_name="some-name")
    assert (s.name, s.seed, s.cluster.nodes, s.load.enabled) == ("some-name", 0, 4, False)
    assert plan(s).steps == () and plan(s).describe() == "  (no faults)"
    assert plan(s).liveness_bound_s == 2 * s.consensus.max_timeout_s


def test_auto_liveness_bound_stretches_with_the_slowest_clock() -> None:
    s = scenario("[cluster]\nclock_rate = { 0 = 2.0 }\n" + CONSENSUS)
    assert plan(s).liveness_bound_s == 4.0  # a fast clock times out sooner: no stretch
    slow = scenario(CONSENSUS + '[[timeline]]\nat = "1s"\nskew = { node = 1, rate = 0.5 }\n')
    assert plan(slow).liveness_bound_s == 8.0


# Each action and its steps


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('at = "10s"\npartition = [[0, 1], [2, 3]]', [(10.0, Partition(((0, 1), (2, 3))))]),
        ('at = "10s"\npartition = [[3]]', [(10.0, Partition(((0, 1, 2), (3,))))]),
        (
            'at = "10s"\npartition = { groups = [[2, 0]], for = "5s" }',
            [(10.0, Partition(((0, 2), (1, 3)))), (15.0, Heal())],
        ),
        ('at = "10s"\nheal = true', [(10.0, Heal())]),
        ('at = "1s"\nkill = 2', [(1.0, Kill((2,)))]),
        ('at = "1s"\nkill = [2, 1]', [(1.0, Kill((1, 2)))]),
        ('at = "1s"\nkill = { node = 2, for = "3s" }', [(1.0, Kill((2,))), (4.0, Restart((2,)))]),
        ('at = "1s"\nrestart = [0, 1]', [(1.0, Restart((0, 1)))]),
        ('at = "1s"\nwipe = 2', [(1.0, Wipe((2,))), (1.0, Restart((2,)))]),
        ('at = "1s"\nwipe = { nodes = [2], for = "4s" }', [(1.0, Wipe((2,))), (5.0, Restart((2,)))]),
        ('at = "1s"\npause = 0', [(1.0, Pause((0,)))]),
        ('at = "1s"\npause = { node = 0, for = "5s" }', [(1.0, Pause((0,))), (6.0, Resume((0,)))]),
        ('at = "1s"\nresume = 0', [(1.0, Resume((0,)))]),
        (
            'at = "1s"\ndelay = { links = "all", ms = 100, jitter_ms = 20, distribution = "normal", '
            'for = "10s" }',
            [
                (1.0, SetLinks(ALL, {"delay_s": 0.1, "jitter_s": 0.02, "distribution": "normal"})),
                (11.0, ClearLinks(ALL, ("delay_s", "jitter_s", "distribution"))),
            ],
        ),
        (
            'at = "1s"\ndelay = { ms = 50 }',
            [(1.0, SetLinks(ALL, {"delay_s": 0.05, "jitter_s": 0.0, "distribution": "uniform"}))],
        ),
        (
            'at = "1s"\ndrop = { links = { node = 2 }, rate = 0.01, for = "10s" }',
            [(1.0, SetLinks(OF_2, {"drop_rate": 0.01})), (11.0, ClearLinks(OF_2, ("drop_rate",)))],
        ),
        (
            'at = "1s"\nduplicate = { links = [[0, 1]], rate = 0.5 }',
            [(1.0, SetLinks(((0, 1),), {"duplicate_rate": 0.5}))],
        ),
        ('at = "1s"\nreorder = { rate = 1 }', [(1.0, SetLinks(ALL, {"reorder_rate": 1.0}))]),
        (
            'at = "1s"\nbandwidth = { links = "all", bytes_per_s = 100000, for = "2s" }',
            [
                (1.0, SetLinks(ALL, {"bandwidth_bytes_per_s": 100000})),
                (3.0, ClearLinks(ALL, ("bandwidth_bytes_per_s",))),
            ],
        ),
        (
            'at = "1s"\ncut = { from = 0, to = 1, for = "5s" }',
            [(1.0, SetLinks(((0, 1),), {"cut": True})), (6.0, ClearLinks(((0, 1),), ("cut",)))],
        ),
        (
            'at = "1s"\ncut = { from = [0, 1, 2], to = [2, 3] }',
            [(1.0, SetLinks(((0, 2), (0, 3), (1, 2), (1, 3), (2, 3)), {"cut": True}))],
        ),
        ('at = "1s"\nskew = { node = 1, rate = 2.0 }', [(1.0, Skew(1, 2.0))]),
        ('at = "1s"\nskew = { node = 1, rate = 2, for = "3s" }', [(1.0, Skew(1, 2.0)), (4.0, Skew(1, 1.0))]),
        ('at = "1s"\nclear = "all"', [(1.0, ClearLinks(ALL, LINK_FAULT_FIELDS))]),
        ('at = "1s"\nclear = { links = [[1, 0]] }', [(1.0, ClearLinks(((1, 0),)))]),
    ],
)
def test_each_action_becomes_its_steps(entry: str, expected: list[tuple[float, object]]) -> None:
    assert steps_of(entry) == expected


def test_a_skew_lifts_back_to_the_nodes_configured_rate() -> None:
    head = HEAD + "[cluster]\nclock_rate = { 1 = 1.5 }\n"
    assert steps_of('at = "1s"\nskew = { node = 1, rate = 3.0, for = "1s" }', head)[1] == (2.0, Skew(1, 1.5))


def test_steps_on_a_byzantine_nodes_process_are_allowed_in_a_timeline() -> None:
    head = HEAD + '[cluster]\nbyzantine = { 3 = "silent" }\n'
    assert steps_of('at = "1s"\nkill = 3', head) == [(1.0, Kill((3,)))]


def test_links_resolve_against_the_node_count() -> None:
    assert resolve_links("all", 3) == ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))
    assert resolve_links({"node": 2}, 4) == OF_2
    assert resolve_links({"node": [0, 1]}, 3) == ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))
    assert resolve_links([[1, 0], [0, 1], [1, 0]], 2) == ((0, 1), (1, 0))  # directed, distinct, sorted
    assert len(resolve_links("all", 7)) == 42


def test_steps_at_one_instant_lift_before_they_start_and_keep_entry_order() -> None:
    p = plan(
        scenario(
            '[[timeline]]\nat = "15s"\ndrop = { rate = 0.1, for = "1s" }\n'
            '[[timeline]]\nat = "10s"\ndelay = { ms = 10, for = "5s" }\n'
            '[[timeline]]\nat = "20s"\nwipe = 1\n'
        )
    )
    assert [s.kind for s in p.steps] == ["delay", "clear", "drop", "clear", "wipe", "restart"]
    assert [s.origin for s in p.steps][:3] == ["timeline entry 2", "timeline entry 2", "timeline entry 1"]
    assert [t for t, _ in p.recovery_points()] == [16.0, 20.0]  # 15 s is not one: drop starts then


def test_describe_reads_one_step_per_line() -> None:
    p = plan(
        scenario(
            '[[timeline]]\nat = "12s"\npartition = [[0, 1], [2, 3]]\n'
            '[[timeline]]\nat = "20s"\nheal = true\n'
            '[[timeline]]\nat = "21s"\ndelay = { links = { node = 2 }, ms = 100, jitter_ms = 20, '
            'distribution = "normal" }\n'
            '[[timeline]]\nat = "22s"\ncut = { from = [0, 1, 3], to = 2 }\n'
            '[[timeline]]\nat = "23s"\nskew = { node = 1, rate = 2.0 }\n'
        )
    )
    assert p.describe().splitlines() == [
        "  12.000s  partition {0,1} | {2,3}",
        "  20.000s  heal",
        "  21.000s  delay 100ms ±20ms (normal) on links of node 2",
        "  22.000s  cut links into node 2",
        "  23.000s  skew node 1 clock x2",
    ]
    assert p.fault_counts() == {"cut": 1, "delay": 1, "partition": 1, "skew": 1}


def test_recovery_points_follow_each_lift() -> None:
    p = plan(
        scenario(
            '[[timeline]]\nat = "5s"\npartition = [[0], [1]]\n'
            '[[timeline]]\nat = "6s"\nkill = 2\n'
            '[[timeline]]\nat = "8s"\nheal = true\n'  # node 2 still down: not yet
            '[[timeline]]\nat = "9s"\nrestart = 2\n'
            '[[timeline]]\nat = "12s"\npause = { node = 0, for = "2s" }\n'
            '[[timeline]]\nat = "20s"\nrestart = 3\n'  # a restart while clean is one too
            '[[timeline]]\nat = "25s"\nresume = 1\n'  # a resume of a running node is not
        )
    )
    assert p.recovery_points() == ((9.0, "restart 2"), (14.0, "resume 0"), (20.0, "restart 3"))


# The random nemesis

NEMESIS = (
    '[cluster]\nnodes = 4\nbyzantine = { 3 = "equivocate" }\n' + CONSENSUS + "[nemesis]\n"
    'kind = "random"\nstart = "5s"\nstop = "10s"\ninterval = "4s"\nlength = ["2s", "6s"]\n'
)


def nemesis_plan(
    seed: int, extra: str = "", duration: str = '"10m"', duration_s: float | None = None
) -> Plan:
    return plan(scenario(NEMESIS + extra, head=f"duration = {duration}\n"), seed, duration_s)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert nemesis_plan(1) == nemesis_plan(1)
    assert nemesis_plan(1).describe() == nemesis_plan(1).describe()
    assert nemesis_plan(1).steps != nemesis_plan(2).steps
    assert len({nemesis_plan(seed).describe() for seed in range(10)}) == 10


def test_the_seed_defaults_to_the_files() -> None:
    s = scenario(NEMESIS, head='seed = 5\nduration = "5m"\n')
    assert plan(s).seed == 5 and plan(s) == plan(s, 5)


def test_duration_override_fills_the_new_length_and_keeps_the_prefix() -> None:
    short, long = nemesis_plan(3, duration_s=120), nemesis_plan(3, duration_s=1200)
    assert short.duration_s == 120 and long.duration_s == 1200
    assert len(long.steps) > 5 * len(short.steps) > 0
    assert long.steps[: len(short.steps)] == short.steps
    assert max(s.at_s for s in long.steps) > 1000


def test_the_nemesis_keeps_one_fault_at_a_time_ends_before_stop_and_spares_byzantine_processes() -> None:
    for seed in range(30):
        p = nemesis_plan(seed)
        assert p.steps
        starts = p.steps[0::2]
        lifts = p.steps[1::2]
        for start, lift in zip(starts, lifts, strict=True):
            assert start.origin == lift.origin  # each fault is followed by its own lift
            assert start.at_s < lift.at_s <= 600 - 10
            assert 2 <= round(lift.at_s - start.at_s, 3) <= 6
            assert start.at_s >= 5
            if isinstance(start.action, Kill | Wipe | Pause):
                assert 3 not in start.action.nodes
            if isinstance(start.action, Skew):
                assert start.action.node != 3
        # Each lift is a recovery point, since nothing else is active then; so is the restart
        # that gives a node its skewed clock.
        skews = [s.at_s for s in starts if isinstance(s.action, Skew)]
        assert [t for t, _ in p.recovery_points()] == sorted([s.at_s for s in lifts] + skews)


def test_the_nemesis_lifts_each_fault_with_its_own_kind_of_lift() -> None:
    for seed in range(20):
        steps = nemesis_plan(seed).steps
        for start, lift in zip(steps[0::2], steps[1::2], strict=True):
            a, b = start.action, lift.action
            if isinstance(a, Partition):
                assert isinstance(b, Heal) and len(a.groups) == 2
                assert sorted(i for g in a.groups for i in g) == [0, 1, 2, 3]
            elif isinstance(a, Kill | Wipe):
                assert b == Restart(a.nodes)
            elif isinstance(a, Pause):
                assert b == Resume(a.nodes)
            elif isinstance(a, Skew):
                assert b == Skew(a.node, 1.0)
            else:
                assert isinstance(a, SetLinks) and isinstance(b, ClearLinks)
                assert a.links == b.links and set(a.changes) == set(b.fields)


def test_the_nemesis_respects_the_weights_roughly() -> None:
    extra = "faults = { partition = 6, kill = 3, delay = 1 }\n"
    counts: Counter[str] = Counter()
    for seed in range(40):
        counts.update(nemesis_plan(seed, extra).fault_counts())
    total = sum(counts.values())
    assert set(counts) == {"partition", "kill", "delay"}
    assert 0.5 < counts["partition"] / total < 0.7
    assert 0.2 < counts["kill"] / total < 0.4
    assert 0.05 < counts["delay"] / total < 0.15


def test_a_file_reordering_its_weights_gets_the_same_plan() -> None:
    a = nemesis_plan(4, "faults = { partition = 1, kill = 2, drop = 3 }\n")
    b = nemesis_plan(4, "faults = { drop = 3, kill = 2, partition = 1 }\n")
    assert a == b


def test_the_nemesis_draws_every_kind_with_the_default_weights() -> None:
    counts: Counter[str] = Counter()
    for seed in range(10):
        counts.update(nemesis_plan(seed).fault_counts())
    assert set(counts) == set(FAULT_KINDS)


def test_the_nemesis_stays_clear_of_the_timelines_faults() -> None:
    timeline = (
        '[[timeline]]\nat = "30s"\npartition = [[0, 1], [2, 3]]\n[[timeline]]\nat = "90s"\nheal = true\n'
        '[[timeline]]\nat = "200s"\nrestart = 1\n'
    )
    for seed in range(20):
        p = nemesis_plan(seed, timeline, duration='"5m"')
        nemesis = [s for s in p.steps if s.origin.startswith("nemesis")]
        for start, lift in zip(nemesis[0::2], nemesis[1::2], strict=True):
            assert lift.at_s < 30 or start.at_s > 90
            assert not start.at_s <= 200 <= lift.at_s


def test_an_interval_of_zero_puts_faults_back_to_back() -> None:
    p = plan(scenario(NEMESIS.replace('interval = "4s"', "interval = 0"), head='duration = "1m"\n'), seed=1)
    lifts, starts = p.steps[1::2], p.steps[2::2]
    assert starts and all(a.at_s == b.at_s for a, b in zip(lifts, starts, strict=False))
    # Only the last lift recovers (and the restart of a skew, which is no fault of its own).
    skews = [s.at_s for s in starts if isinstance(s.action, Skew)]
    assert [t for t, _ in p.recovery_points()] == [*skews, p.steps[-1].at_s]


def test_a_step_is_a_frozen_value() -> None:
    step = Step(1.0, Kill((1,)), "x")
    with pytest.raises(AttributeError):
        step.at_s = 2.0  # type: ignore[misc]
    links = SetLinks(((0, 1),), {"drop_rate": 0.1})
    with pytest.raises(TypeError):
        links.changes["drop_rate"] = 0.2  # type: ignore[index]


# Refusals: each names the file, the table or entry, and the key.

BAD = [
    ("unknown top-level key", 'durration = "5s"\n', r"test\.toml: unknown key 'durration'"),
    ("missing duration", "seed = 1\n", "missing key 'duration'"),
    ("seed type", 'seed = "one"\n', "seed must be"),
    ("negative duration", 'duration = "-5s"\n', "duration must not be negative"),
    ("zero duration", "duration = 0\n", "duration must be positive"),
    ("bad duration", 'duration = "5 minutes"\n', "duration: '5 minutes' is not a duration"),
    ("cluster key", "[cluster]\nnode = 4\n", r"\[cluster\]: unknown key 'node'"),
    ("cluster nodes type", '[cluster]\nnodes = "4"\n', r"\[cluster\] nodes must be"),
    (
        "byzantine index",
        '[cluster]\nbyzantine = { 4 = "silent" }\n',
        r"\[cluster\] byzantine: node 4 is not a node",
    ),
    ("byzantine key", '[cluster]\nbyzantine = { x = "silent" }\n', r"byzantine: 'x' is not a node index"),
    ("behaviour", '[cluster]\nbyzantine = { 1 = "evil" }\n', r"byzantine: node 1: unknown behaviour 'evil'"),
    (
        "too many byzantine",
        '[cluster]\nbyzantine = { 1 = "silent", 2 = "silent" }\n',
        r"byzantine: 2 Byzantine nodes, but 4 nodes tolerate at most f = 1",
    ),
    (
        "clock rate",
        "[cluster]\nclock_rate = { 1 = 0 }\n",
        r"clock_rate: node 1 must be a positive clock rate",
    ),
    ("clock rate type", '[cluster]\nclock_rate = { 1 = "fast" }\n', r"clock_rate: node 1 must be a number"),
    ("liveness bound", '[cluster]\nliveness_bound = "soon"\n', r"\[cluster\] liveness_bound: 'soon'"),
    ("consensus key", "[consensus]\nbase_timeout = 1.0\n", r"\[consensus\]: unknown key 'base_timeout'"),
    (
        "consensus value",
        "[consensus]\nmax_timeout_s = 0.5\n",
        r"test\.toml: \[consensus\] max_timeout_s \(0.5\) is below base_timeout_s",
    ),
    (
        "consensus type",
        '[consensus]\nmax_block_txs = "many"\n',
        r"\[consensus\] max_block_txs must be an integer",
    ),
    ("load key", "[load]\nclient = 3\n", r"\[load\]: unknown key 'client'"),
    ("load rate", "[load]\nrate = -1\n", r"\[load\] rate must be 0 or more"),
    ("load mix", "[load]\nmix = { put = 1, swap = 2 }\n", r"\[load\] mix: unknown key 'swap'"),
    ("load mix weight", "[load]\nmix = { put = -1 }\n", r"\[load\] mix put must be a weight"),
    ("load clients", "[load]\nclients = 0\nrate = 10\n", r"\[load\] clients must be at least 1"),
    ("no action", '[[timeline]]\nat = "1s"\n', r"\[\[timeline\]\] entry 1 \(at 1s\): no action"),
    (
        "two actions",
        '[[timeline]]\nat = "1s"\nheal = true\n[[timeline]]\nat = "2s"\nkill = 1\npause = 2\n',
        r"\[\[timeline\]\] entry 2 \(at 2s\): two actions, 'kill' and 'pause'",
    ),
    ("entry key", '[[timeline]]\nat = "1s"\nkil = 1\n', r"entry 1: unknown key 'kil'"),
    ("entry at", "[[timeline]]\nkill = 1\n", r"entry 1: missing key 'at'"),
    ("negative at", "[[timeline]]\nat = -1\nkill = 1\n", r"entry 1: at must not be negative"),
    ("at beyond", '[[timeline]]\nat = "61s"\nkill = 1\n', r"entry 1 \(at 61s\): at: it is at 61s, beyond"),
    (
        "for beyond",
        '[[timeline]]\nat = "58s"\npause = { node = 1, for = "5s" }\n',
        r"entry 1 \(at 58s\): at: its `for` ends at 63s, beyond the run's duration 60s",
    ),
    (
        "kill index",
        '[[timeline]]\nat = "1s"\nkill = 4\n',
        r"entry 1 \(at 1s\): kill: node 4 is not a node \(0..3\)",
    ),
    ("kill type", '[[timeline]]\nat = "1s"\nkill = "2"\n', r"entry 1 \(at 1s\): kill must be a node index"),
    ("kill list", '[[timeline]]\nat = "1s"\nkill = [1, 1]\n', r"kill: a node appears twice"),
    (
        "pause key",
        '[[timeline]]\nat = "1s"\npause = { node = 1, four = "5s" }\n',
        r"pause: unknown key 'four'",
    ),
    (
        "pause for",
        '[[timeline]]\nat = "1s"\npause = { node = 1, for = "-5s" }\n',
        r"pause for must not be negative",
    ),
    ("heal", '[[timeline]]\nat = "1s"\nheal = false\n', r"entry 1 \(at 1s\): heal must be true"),
    (
        "partition index",
        '[[timeline]]\nat = "1s"\npartition = [[0, 9]]\n',
        r"partition: node 9 is not a node",
    ),
    (
        "partition twice",
        '[[timeline]]\nat = "1s"\npartition = [[0, 1], [1, 2]]\n',
        r"node 1 is in two groups",
    ),
    ("partition one side", '[[timeline]]\nat = "1s"\npartition = [[0, 1, 2, 3]]\n', r"at least two sides"),
    (
        "partition shape",
        '[[timeline]]\nat = "1s"\npartition = [0, 1]\n',
        r"partition must be a list of groups",
    ),
    (
        "drop rate",
        '[[timeline]]\nat = "1s"\ndrop = { rate = 1.5 }\n',
        r"entry 1 \(at 1s\): drop rate must be in \[0, 1\]",
    ),
    ("drop rate missing", '[[timeline]]\nat = "1s"\ndrop = { links = "all" }\n', r"drop: missing key 'rate'"),
    (
        "duplicate rate",
        '[[timeline]]\nat = "1s"\nduplicate = { rate = -0.1 }\n',
        r"duplicate rate must be in",
    ),
    (
        "reorder rate type",
        '[[timeline]]\nat = "1s"\nreorder = { rate = "lots" }\n',
        r"reorder rate must be a number",
    ),
    ("delay ms", '[[timeline]]\nat = "1s"\ndelay = { ms = -3 }\n', r"delay ms must not be negative"),
    (
        "delay distribution",
        '[[timeline]]\nat = "1s"\ndelay = { ms = 3, distribution = "zipf" }\n',
        r"distribution",
    ),
    (
        "bandwidth",
        '[[timeline]]\nat = "1s"\nbandwidth = { bytes_per_s = 0 }\n',
        r"bandwidth bytes_per_s must be",
    ),
    (
        "links self",
        '[[timeline]]\nat = "1s"\ndrop = { links = [[1, 1]], rate = 0.1 }\n',
        r"drop links: \[1, 1\]",
    ),
    (
        "links index",
        '[[timeline]]\nat = "1s"\ndrop = { links = [[1, 5]], rate = 0.1 }\n',
        r"node 5 is not a node",
    ),
    (
        "links node",
        '[[timeline]]\nat = "1s"\ndrop = { links = { node = 7 }, rate = 0.1 }\n',
        r"links node: node 7",
    ),
    (
        "links word",
        '[[timeline]]\nat = "1s"\ndrop = { links = "some", rate = 0.1 }\n',
        r'drop links must be "all"',
    ),
    ("cut index", '[[timeline]]\nat = "1s"\ncut = { from = 0, to = 4 }\n', r"cut to: node 4 is not a node"),
    ("cut self", '[[timeline]]\nat = "1s"\ncut = { from = 1, to = 1 }\n', r"cut: from and to leave no link"),
    (
        "skew rate",
        '[[timeline]]\nat = "1s"\nskew = { node = 1, rate = -2.0 }\n',
        r"skew rate must be a positive",
    ),
    ("skew node", '[[timeline]]\nat = "1s"\nskew = { rate = 2.0 }\n', r"skew: missing key 'node'"),
    ("timeline shape", "timeline = 3\n", r"timeline must be an array of tables"),
    ("nemesis key", "[nemesis]\nbegin = 3\n", r"\[nemesis\]: unknown key 'begin'"),
    ("nemesis kind", '[nemesis]\nkind = "smart"\n', r'\[nemesis\] kind must be "random"'),
    ("nemesis fault", "[nemesis]\nfaults = { flood = 1 }\n", r"\[nemesis\] faults: unknown key 'flood'"),
    (
        "nemesis weights",
        "[nemesis]\nfaults = { kill = 0 }\n",
        r"\[nemesis\] faults needs at least one positive",
    ),
    ("nemesis weight", "[nemesis]\nfaults = { kill = -1 }\n", r"\[nemesis\] faults kill must be a weight"),
    ("nemesis length", '[nemesis]\nlength = ["5s", "2s"]\n', r"\[nemesis\] length must be a positive range"),
    (
        "nemesis length shape",
        '[nemesis]\nlength = ["5s"]\n',
        r"\[nemesis\] length must be one duration or a range",
    ),
    ("nemesis interval", '[nemesis]\ninterval = "-1s"\n', r"\[nemesis\] interval must not be negative"),
    ("nemesis room", '[nemesis]\nstart = "55s"\n', r"\[nemesis\] start: no room for a fault"),
]


@pytest.mark.parametrize(("body", "message"), [(b, m) for _, b, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_scenarios_are_refused_naming_the_entry_and_key(body: str, message: str) -> None:
    # The bodies that are about the duration itself bring their own (or none).
    head = "" if body.startswith(("duration", "seed = 1")) else HEAD
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario(body, head)
    assert str(caught.value).startswith("test.toml: ")


def test_every_known_behaviour_is_accepted() -> None:
    for name in BEHAVIOURS:
        assert scenario(f'[cluster]\nbyzantine = {{ 0 = "{name}" }}\n').cluster.byzantine[0] == name


def test_a_one_node_cluster_has_no_links_for_the_nemesis() -> None:
    with pytest.raises(ScenarioError, match=r"\[nemesis\] faults partition: a 1-node cluster has no links"):
        scenario("[cluster]\nnodes = 1\n[nemesis]\n")
    assert scenario("[cluster]\nnodes = 1\n[nemesis]\nfaults = { kill = 1 }\n").nemesis is not None


def test_a_duration_override_that_cuts_the_timeline_short_is_refused() -> None:
    s = scenario('[[timeline]]\nat = "30s"\nkill = { node = 1, for = "10s" }\n')
    assert plan(s, duration_s=40).duration_s == 40
    with pytest.raises(ScenarioError, match=r"entry 1 \(at 30s\): at: its `for` ends at 40s, beyond .* 39s"):
        plan(s, duration_s=39)


def test_invalid_toml_and_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        parse_scenario("duration = \n", "bad.toml")
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario(tmp_path / "absent.toml")
