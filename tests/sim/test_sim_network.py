"""Network routing: recipients, drops, duplicates, delays, time and view (Twins) partitions."""

from __future__ import annotations

import random

from bft.sim.network import AsyncPeriod, Instance, Network, NetworkParams, TimePartition, ViewPartition


def _params(**kw: float) -> NetworkParams:
    base = {
        "gst_s": 10.0,
        "drop_rate": 0.0,
        "dup_rate": 0.0,
        "min_delay_s": 0.01,
        "max_delay_s": 0.05,
        "delta_s": 0.1,
    }
    base.update(kw)
    return NetworkParams(**base)


FOUR = [Instance(i) for i in range(4)]
TWINS = [*FOUR, Instance(0, 1)]


def test_broadcast_skips_own_index_and_reaches_twins() -> None:
    net = Network(TWINS, _params(), random.Random(1))
    assert net.recipients(Instance(1), None) == [Instance(0), Instance(0, 1), Instance(2), Instance(3)]
    # Neither copy of index 0 reaches the other.
    assert net.recipients(Instance(0, 1), None) == [Instance(1), Instance(2), Instance(3)]
    assert net.recipients(Instance(2), 0) == [Instance(0), Instance(0, 1)]
    assert net.recipients(Instance(2), 2) == []
    assert net.recipients(Instance(2), 9) == []


def test_delays_are_bounded_before_and_after_gst() -> None:
    net = Network(FOUR, _params(max_delay_s=50.0), random.Random(2))
    for _ in range(200):
        for at, _dst in net.route(1.0, Instance(0), None, 3):
            # Sent before GST: arrives by GST + delta even with a wide spread.
            assert 1.0 <= at <= 10.0 + 0.1
        for at, _dst in net.route(20.0, Instance(0), None, 3):
            assert 20.01 <= at <= 20.1


def test_drops_and_duplicates_only_before_gst() -> None:
    net = Network(FOUR, _params(drop_rate=0.3, dup_rate=0.2), random.Random(3))
    pre = sum(len(net.route(1.0, Instance(0), 1, None)) for _ in range(2000))
    assert net.stats.dropped > 400
    assert net.stats.duplicated > 150
    assert 1000 < pre < 2000
    dropped = net.stats.dropped
    post = [len(net.route(11.0, Instance(0), 1, None)) for _ in range(500)]
    assert post == [1] * 500
    assert net.stats.dropped == dropped


def test_time_partition_holds_messages_until_gst() -> None:
    part = TimePartition(1.0, 5.0, (frozenset({0, 1}), frozenset({2, 3})))
    net = Network(FOUR, _params(), random.Random(4), [part])
    across = net.route(2.0, Instance(0), 2, None)
    assert len(across) == 1 and across[0][0] >= 10.0
    within = net.route(2.0, Instance(0), 1, None)
    assert len(within) == 1 and within[0][0] < 3.0
    before = net.route(0.5, Instance(0), 2, None)
    assert before[0][0] < 1.0
    after_heal = net.route(5.0, Instance(0), 2, None)
    assert after_heal[0][0] < 6.0


def test_view_partitions_route_twins_by_view() -> None:
    a = frozenset({Instance(0), Instance(1), Instance(2)})
    b = frozenset({Instance(0, 1), Instance(3)})
    net = Network(TWINS, _params(), random.Random(5), view_partitions=[ViewPartition(1, 2, (a, b), 10.0)])

    def reached(src: Instance, to: int | None, view: int | None, now: float = 1.0) -> set[Instance]:
        return {d for at, d in net.route(now, src, to, view) if at < net.params.gst_s}

    assert reached(Instance(1), 0, 1) == {Instance(0)}
    assert reached(Instance(3), 0, 1) == {Instance(0, 1)}
    assert reached(Instance(0, 1), None, 1) == {Instance(3)}
    # Views without a partition, and messages without a view, reach everyone.
    assert reached(Instance(3), 0, 2) == {Instance(0), Instance(0, 1)}
    assert reached(Instance(3), None, None) == {Instance(0), Instance(0, 1), Instance(1), Instance(2)}
    # After GST the view partitions lift.
    assert len(net.route(11.0, Instance(3), 0, 1)) == 2


def test_routing_is_deterministic() -> None:
    def go(seed: int) -> list[tuple[float, Instance]]:
        net = Network(FOUR, _params(drop_rate=0.2, dup_rate=0.2), random.Random(seed))
        return [x for k in range(100) for x in net.route(k * 0.1, Instance(k % 4), None, k)]

    assert go(9) == go(9)
    assert go(9) != go(10)


def test_view_partition_holds_exactly_the_views_in_range_until_it_heals() -> None:
    split = ViewPartition(3, 5, (frozenset(FOUR[:2]), frozenset(FOUR[2:])), heal_s=12.0)
    net = Network(TWINS, _params(), random.Random(6), view_partitions=[split])
    # After GST: only views 3 and 4 are held across groups, until the heal at 12 s.
    for view in range(1, 8):
        for at, dst in net.route(11.0, Instance(1), None, view):
            held = view in (3, 4) and dst.index in (2, 3)
            assert (at >= 12.0) == held, (view, dst)
            assert at <= (12.0 if held else 11.0) + 0.1
    assert net.stats.held == net.stats.held_by_view == 2 * 2
    # Twins' second copy of 0 goes with copy 0; messages without a view always pass.
    assert {d for at, d in net.route(11.0, Instance(3), None, 4) if at < 12.0} == {Instance(2)}
    assert all(at < 12.0 for at, _ in net.route(11.0, Instance(3), None, None))
    # Healed: every view passes.
    assert all(at < 12.6 for at, _ in net.route(12.5, Instance(0), None, 3))


def test_an_asynchronous_period_after_gst_drops_delays_and_partitions_then_ends() -> None:
    period = AsyncPeriod(20.0, 25.0, 0.3, 0.2, 4.0, (frozenset({0, 1}), frozenset({2, 3})))
    net = Network(FOUR, _params(), random.Random(7), async_periods=[period])
    late = 0
    for _ in range(1000):
        for at, _dst in net.route(21.0, Instance(0), 1, 5):
            assert 21.0 <= at <= 25.0 + 0.1  # by the period's end + delta
            late += at > 21.1
        across = net.route(21.0, Instance(0), 2, 5)
        assert len(across) == 1 and 25.0 <= across[0][0] <= 25.1  # held until the period ends
    assert net.stats.dropped > 200 and net.stats.duplicated > 100 and late > 500
    counts = (net.stats.dropped, net.stats.duplicated)
    # Synchronous between GST and the period, and after it.
    for now in (12.0, 25.0, 40.0):
        for _ in range(200):
            assert [at - now <= 0.1 for at, _ in net.route(now, Instance(0), 2, 5)] == [True]
    assert (net.stats.dropped, net.stats.duplicated) == counts
