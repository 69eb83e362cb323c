"""Fault plans and Twins scenarios: deterministic, within the fault budget, varied."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

from bft.sim.faults import CrashKind, FaultPlan, generate_fault_plan
from bft.sim.twins import generate_twins_scenario


def _plan(seed: int, n: int = 7, faulty: tuple[int, ...] = ()) -> FaultPlan:
    return generate_fault_plan(seed, n, faulty, base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0)


def test_plan_is_a_function_of_the_seed_and_printable() -> None:
    assert _plan(3) == _plan(3)
    assert any(_plan(3) != _plan(s) for s in range(4, 10))
    assert "GST" in _plan(3).describe()


def _is_total_crash(plan: FaultPlan, n: int, faulty: tuple[int, ...]) -> bool:
    honest = set(range(n)) - set(faulty)
    return len({c.at_s for c in plan.crashes}) == 1 and {c.index for c in plan.crashes} == honest


def test_never_more_than_f_faulty_at_once_except_in_a_total_crash() -> None:
    for n, faulty in [(4, ()), (4, (2,)), (7, ()), (7, (1,)), (10, (0, 5))]:
        f = (n - 1) // 3
        totals = 0
        for seed in range(300):
            plan = _plan(seed, n, faulty)
            late = [c for c in plan.crashes if c.at_s >= plan.gst_s]
            assert len(late) <= 1 and all(c.kind is CrashKind.PLAIN for c in late)
            for c in plan.crashes:
                assert c.index not in faulty
                assert 0 <= c.at_s < c.restart_s
                if c not in late:
                    assert c.restart_s <= plan.gst_s  # before GST, every crash also restarts
            ends = [
                plan.gst_s,
                *(c.restart_s for c in plan.crashes),
                *(a.end_s for a in plan.async_periods),
                *(v.heal_s for v in plan.view_partitions),
                *(p.resume_s for p in plan.pauses),
            ]
            assert plan.last_fault_s == max(ends)
            if _is_total_crash(plan, n, faulty):
                totals += 1  # every honest node at once, each restarting before GST
                continue
            for c in plan.crashes:
                down = [d for d in plan.crashes if d.at_s <= c.at_s < d.restart_s]
                assert len(down) + len(faulty) <= f
                assert len({d.index for d in down}) == len(down)
        assert 10 <= totals <= 80  # about 15% of the non-calm plans


def test_plans_are_varied() -> None:
    plans = [_plan(seed) for seed in range(300)]
    kinds = Counter(c.kind for p in plans for c in p.crashes)
    assert set(kinds) == set(CrashKind)
    assert all(kinds[k] > 20 for k in CrashKind)
    assert {c.after_ops for p in plans for c in p.crashes if c.kind is CrashKind.MID_SAVE} == set(range(1, 7))
    assert sum(1 for p in plans if p.partitions) > 100
    assert sum(1 for p in plans if p.drop_rate > 0) > 100
    assert sum(1 for p in plans if not p.crashes and not p.partitions and p.drop_rate == 0) > 10
    assert len({p.max_delay_s for p in plans}) >= 4


def test_twins_scenario() -> None:
    s = generate_twins_scenario(random.Random(1), 4, (2,), rounds=8)
    assert s == generate_twins_scenario(random.Random(1), 4, (2,), rounds=8)
    assert len(s.leaders) == 8 and len(s.partitions) == 8
    instances = set(s.instances(4))
    assert len(instances) == 5
    for groups in s.partitions:
        assert 1 <= len(groups) <= 3
        assert set().union(*groups) == instances
        assert sum(len(g) for g in groups) == len(instances)
    splits = s.view_partitions(heal_s=5.0)
    assert [list(p.views) for p in splits] == [[v] for v in range(1, 9)]
    assert [p.groups for p in splits] == list(s.partitions)
    assert all(p.heal_s == 5.0 for p in splits)
    assert "view 1" in s.describe()


def test_some_plans_crash_a_node_for_long_after_gst() -> None:
    """So that block sync runs in campaigns: one honest node down 8-40 s after GST."""
    late = [c for seed in range(300) for p in [_plan(seed, 7, ())] for c in p.crashes if c.at_s >= p.gst_s]
    assert 50 <= len(late) <= 150
    assert all(8.0 <= c.restart_s - c.at_s <= 40.0 for c in late)
    no_late = generate_fault_plan(
        3, 7, (), base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0, late_crashes=False
    )
    assert all(c.at_s < no_late.gst_s for c in no_late.crashes)


def test_some_plans_are_asynchronous_again_after_gst() -> None:
    """A second asynchronous period, after GST and some progress, that ends (then liveness)."""
    plans = [_plan(seed) for seed in range(300)]
    again = [(p, a) for p in plans for a in p.async_periods]
    assert 50 <= len(again) <= 130  # about 30% of the non-calm plans
    assert all(len(p.async_periods) <= 1 for p in plans)
    for plan, a in again:
        assert plan.gst_s + 2.0 <= a.start_s <= plan.gst_s + 8.0
        assert 1.0 <= a.end_s - a.start_s <= 8.0
        assert plan.last_fault_s >= a.end_s
        assert f"asynchronous again {a.start_s:.3f}..{a.end_s:.3f}s" in plan.describe()
        if a.groups:
            members = sorted(i for g in a.groups for i in g)
            assert members == list(range(7)) and len(a.groups) >= 2
    assert sum(1 for _, a in again if a.drop_rate > 0) > 20
    assert sum(1 for _, a in again if a.dup_rate > 0) > 20
    assert sum(1 for _, a in again if a.groups) > 20
    assert {a.max_delay_s for _, a in again} == {0.5, 1.5, 4.0}  # always a wide spread
    quiet = generate_fault_plan(
        plans.index(again[0][0]), 7, (), base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0, late_async=False
    )
    assert quiet.async_periods == ()


def test_some_plans_partition_by_view_and_heal() -> None:
    """Bounded ranges of views split into groups, each healing at most 8 s after GST."""
    for n, faulty in [(4, ()), (4, (1,)), (7, (0, 3))]:
        plans = [_plan(seed, n, faulty) for seed in range(300)]
        split = [(p, v) for p in plans for v in p.view_partitions]
        assert 60 <= len(split) <= 180  # 30% of the non-calm plans, 1 or 2 each
        assert sum(1 for p in plans if len(p.view_partitions) == 2) > 10
        for plan, v in split:
            assert 1 <= v.first_view <= 40 and 1 <= len(v.views) <= 6
            assert plan.gst_s <= v.heal_s <= plan.gst_s + 8.0
            assert plan.last_fault_s >= v.heal_s
            members = sorted(i.index for g in v.groups for i in g)
            assert members == list(range(n))  # every validator, once, faulty ones included
            assert 2 <= len(v.groups) <= 3 and all(v.groups)
            assert f"partition by view, {v.describe()}" in plan.describe()
        assert {len(v.views) for _, v in split} == set(range(1, 7))
    off = generate_fault_plan(
        1, 4, (), base_timeout_s=1.0, delta_s=0.1, max_gst_s=20.0, view_partitions=False
    )
    assert off.view_partitions == ()


def test_network_faults_after_gst_leave_the_crash_budget_alone() -> None:
    """Asynchrony is no validator fault: the crashes, GST and pre-GST network of a plan are the
    same with or without the later network faults, so the budget rule is the one tested above."""
    for seed in range(200):
        full = _plan(seed, 4, (2,))
        bare = generate_fault_plan(
            seed,
            4,
            (2,),
            base_timeout_s=1.0,
            delta_s=0.1,
            max_gst_s=20.0,
            late_async=False,
            view_partitions=False,
        )
        assert dataclasses.replace(full, async_periods=(), view_partitions=()) == bare


def test_plans_with_network_faults_after_gst_are_deterministic() -> None:
    for seed in range(100):
        plan = _plan(seed)
        assert plan == _plan(seed)
        assert plan.describe() == _plan(seed).describe()
    drawn = [_plan(seed) for seed in range(100)]
    assert len({p.view_partitions for p in drawn if p.view_partitions}) > 20
    assert len({p.async_periods for p in drawn if p.async_periods}) > 20
