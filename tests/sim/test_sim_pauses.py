"""Pauses (issue 14): a stopped process handles nothing while what is sent to it waits in order;
when it resumes, its first step is a timer step at the jumped clock, then it reads what was held,
in the order it arrived; it keeps its state. And the short-timeout mode: what each seed draws,
and a short campaign in it."""

from __future__ import annotations

import dataclasses

import pytest

from bft.campaign import FACTORIES
from bft.cli import main
from bft.sim import SimSpec, run_campaign, run_schedule
from bft.sim.faults import PAUSE_AIM_WINDOW_BASE_TIMEOUTS, PAUSE_BASE_TIMEOUTS, Pause, generate_fault_plan
from bft.sim.network import Instance
from bft.sim.node import SimNode
from bft.sim.runner import sim_key
from bft.sim.settings import SHORT_BASE_TIMEOUT_S, SHORT_DELTA_S, SHORT_MAX_BATCH_DELAY_S, draw_settings
from bft.sim.world import Deliver, Event, World
from crypto.signing import SignatureCache

SHORT = SimSpec(nodes=4, short_timeouts=True)


class _Recording(World):
    """A world that logs what reaches each paused instance and each step it takes afterwards."""

    def __init__(self, spec: SimSpec, seed: int) -> None:
        super().__init__(spec, seed, FACTORIES, sim_key, SignatureCache())
        # (what, instance, time, detail): "held" and "read" carry a delivery's (src, data),
        # "timer" the deadline due before the step.
        self.log: list[tuple[str, Instance, float, object]] = []

    def _handle(self, event: Event) -> None:
        if isinstance(event, Deliver) and event.dst in self.held:
            self.log.append(("held", event.dst, self.sched.now, (event.src, event.data)))
        super()._handle(event)

    def _deliver(self, node: SimNode, src: Instance, data: bytes) -> None:
        self.log.append(("read", node.inst, self.sched.now, (src, data)))
        super()._deliver(node, src, data)

    def _timer_step(self, node: SimNode, why: str = "") -> None:
        assert node.program is not None
        self.log.append(("timer", node.inst, self.sched.now, node.program.next_deadline()))
        super()._timer_step(node, why)


def _plan_pauses(spec: SimSpec, seed: int) -> tuple[Pause, ...]:
    return World(spec, seed, FACTORIES, sim_key, SignatureCache()).plan.pauses


def test_a_paused_node_holds_its_messages_in_order_and_resumes_with_a_timer_step() -> None:
    checked = messages = 0
    for seed in range(40):
        pauses = [p for p in _plan_pauses(SHORT, seed) if not p.aimed]
        if not pauses:
            continue
        world = _Recording(SHORT, seed)
        result = world.run()
        assert result.ok, result.failure_report()
        for pause in pauses:
            if pause.resume_s > result.sim_time_s:
                continue  # the schedule ended first
            inst = Instance(pause.index)
            mine = [(what, t, d) for what, i, t, d in world.log if i == inst]
            during = [e for e in mine if e[0] != "held" and pause.at_s <= e[1] < pause.resume_s]
            assert not during, f"seed {seed}: the paused node stepped: {during[:3]}"
            held = [d for what, t, d in mine if what == "held" and pause.at_s <= t < pause.resume_s]
            # The first step at the resume is a timer step at the jumped clock...
            after = [e for e in mine if e[0] != "held" and e[1] >= pause.resume_s]
            assert after[0][0] == "timer" and after[0][1] == pause.resume_s, (seed, after[:2])
            deadline = after[0][2]
            assert isinstance(deadline, float) and deadline < pause.resume_s  # due long ago
            # ...then every held message, in the order it arrived, all at the resume time.
            read = [d for what, t, d in after[1 : 1 + len(held)] if what == "read" and t == pause.resume_s]
            assert read == held, f"seed {seed}: held messages lost or reordered"
            checked += 1
            messages += len(held)
        if checked >= 3 and messages >= 10:
            return
    pytest.fail(f"only {checked} pauses checked in seeds 0..39")


def test_an_aimed_pause_stops_the_node_right_after_it_enters_a_view_it_leads() -> None:
    for seed in range(40):
        if not any(p.aimed for p in _plan_pauses(SHORT, seed)):
            continue
        trace: list[tuple[float, str, str]] = []
        world = World(SHORT, seed, FACTORIES, sim_key, SignatureCache(), trace)
        result = world.run()
        assert result.ok, result.failure_report()
        for k, (time_s, who, what) in enumerate(trace):
            if not what.startswith("pause until"):
                continue
            pause = next(
                p for p in result.plan.pauses if str(p.index) == who and p.at_s <= time_s < p.resume_s
            )
            if not pause.aimed:
                continue
            assert time_s <= pause.latest_stop_s
            # The step that stopped it entered a view the node leads, at the same instant.
            entered = [w for t, i, w in trace[:k] if i == who and t == time_s and w.startswith("enter view")]
            assert entered, trace[k - 5 : k + 1]
            view = int(entered[-1].split()[2])
            assert world.leader(view) == pause.index  # type: ignore[arg-type]
            print(f"\nseed {seed}: {pause.describe()}; stopped at {time_s * 1000:.1f} ms in view {view}")
            return
    pytest.fail("no aimed pause stopped a node in seeds 0..39")


def test_pauses_are_drawn_before_and_after_gst_for_honest_nodes_apart_from_their_crashes() -> None:
    before = after = aimed = 0
    for seed in range(300):
        plan = generate_fault_plan(seed, 7, (2,), base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0)
        plain = generate_fault_plan(
            seed, 7, (2,), base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0, pause_rate=0
        )
        # Their own stream of the seed: without pauses the plan is what it was.
        assert plain.pauses == () and dataclasses.replace(plan, pauses=()) == plain
        for p in plan.pauses:
            assert p.index != 2  # never the faulty validator
            lo, hi = PAUSE_BASE_TIMEOUTS
            window = PAUSE_AIM_WINDOW_BASE_TIMEOUTS if p.aimed else 0.0
            assert lo <= p.resume_s - p.at_s - window <= hi  # base timeout 1 s
            assert p.describe() in plan.describe()
            assert plan.last_fault_s >= p.resume_s
            for c in plan.crashes:
                assert c.index != p.index or c.restart_s <= p.at_s or p.resume_s <= c.at_s
            before += p.at_s < plan.gst_s
            after += p.at_s >= plan.gst_s
            aimed += p.aimed
    assert before >= 20 and after >= 20 and aimed >= 20, (before, after, aimed)


def test_the_short_timeout_mode_draws_the_base_timeout_batch_delay_and_delay_bound() -> None:
    bases, batches = set(), set()
    paused = 0
    for seed in range(200):
        world = World(SHORT, seed, FACTORIES, sim_key, SignatureCache())
        s = world.settings
        assert SHORT_BASE_TIMEOUT_S[0] <= s.base_timeout_s <= SHORT_BASE_TIMEOUT_S[1]
        assert 0.0 <= s.max_batch_delay_s <= SHORT_MAX_BATCH_DELAY_S
        assert SHORT_DELTA_S[0] <= s.delta_s <= min(SHORT_DELTA_S[1], s.base_timeout_s / 4)
        # What every node runs with, and what the network's bound after GST is.
        for node in world.nodes.values():
            assert node.config.base_timeout_s == s.base_timeout_s
            assert node.config.max_batch_delay_s == s.max_batch_delay_s
        assert world.plan.delta_s == s.delta_s
        for p in world.plan.pauses:
            assert p.resume_s - p.at_s >= PAUSE_BASE_TIMEOUTS[0] * s.base_timeout_s
        paused += bool(world.plan.pauses)
        # The rest of the seed's draws are the default mode's.
        default = draw_settings(seed, SHORT.base_timeout_s, SHORT.delta_s, SHORT.max_timeout_s)
        assert (
            dataclasses.replace(
                default,
                base_timeout_s=s.base_timeout_s,
                delta_s=s.delta_s,
                max_batch_delay_s=s.max_batch_delay_s,
            )
            == s
        )
        bases.add(s.base_timeout_s)
        batches.add(s.max_batch_delay_s)
    assert len(bases) > 20 and 0.0 in batches and len(batches) > 20
    assert 80 <= paused <= 160, paused  # about 55% of the plans


def test_the_short_timeout_mode_is_a_cli_flag_and_in_the_replay_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert SHORT.replay_command(7) == "bft sim --nodes 4 --short-timeouts --seed 7"
    assert main(["sim", "--nodes", "4", "--short-timeouts", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    result = run_schedule(SHORT, 7, FACTORIES)
    assert f"lowest {result.commits})" in out and "no violations" in out


def test_a_short_timeout_campaign() -> None:
    # Every invariant after each step, timer progress after each timer step (the resume's
    # included), and liveness after the last fault, over seeds that draw pauses of both kinds.
    seeds = range(12)
    assert any(p.aimed for s in seeds for p in _plan_pauses(SHORT, s))
    assert any(not p.aimed for s in seeds for p in _plan_pauses(SHORT, s))
    campaign = run_campaign(SHORT, seeds, FACTORIES)
    assert campaign.ok, campaign.report()
    assert campaign.total_commits >= len(seeds) * SHORT.min_new_commits
