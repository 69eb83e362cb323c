"""The pacemaker: forward-only views, exponential backoff with a cap, reset on QC progress only."""

from __future__ import annotations

import pytest
from core_helpers import N, config

from bft.core.leader import TERM_VIEWS, leader_of
from bft.core.pacemaker import Pacemaker
from bft.core.types import View


def make(now: float = 0.0, **overrides: float) -> Pacemaker:
    cfg = config(0, base_timeout_s=1.0, max_timeout_s=30.0, timeout_backoff=2.0)
    if overrides:
        cfg = config(0, **{"base_timeout_s": 1.0, "max_timeout_s": 30.0, "timeout_backoff": 2.0, **overrides})
    return Pacemaker(cfg, View(1), now)


def test_first_deadline_is_one_base_timeout_away() -> None:
    pm = make(now=5.0)
    assert pm.view == 1
    assert pm.deadline == 6.0


def test_local_timeouts_back_off_exponentially_up_to_the_cap() -> None:
    pm = make()
    now = pm.deadline
    waits = []
    for _ in range(8):
        pm.on_local_timeout(now)
        waits.append(pm.deadline - now)
        now = pm.deadline
    assert waits == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_backoff_never_overflows() -> None:
    pm = make(timeout_backoff=10.0, max_timeout_s=1e6)
    for i in range(2000):
        pm.on_local_timeout(float(i))
    assert pm.timeout_s() == 1e6


def test_progress_resets_the_backoff() -> None:
    pm = make()
    for t in (1.0, 3.0, 7.0):
        pm.on_local_timeout(t)
    assert pm.timeout_s() == 8.0
    assert pm.enter(View(2), 100.0, progress=True)
    assert pm.timeout_s() == 1.0
    assert pm.deadline == 101.0


def test_a_tc_does_not_reset_the_backoff() -> None:
    pm = make()
    for t in (1.0, 3.0):
        pm.on_local_timeout(t)
    assert pm.enter(View(2), 100.0, progress=False)
    assert pm.view == 2
    assert pm.deadline == 104.0
    # ...and the next local timeout keeps growing from there.
    pm.on_local_timeout(104.0)
    assert pm.deadline == 112.0


@pytest.mark.parametrize("progress", [True, False])
def test_views_only_move_forward(progress: bool) -> None:
    pm = make()
    assert pm.enter(View(5), 10.0, progress)
    deadline = pm.deadline
    for view in (5, 4, 1, 0):
        assert not pm.enter(View(view), 20.0, progress)
        assert pm.view == 5
        assert pm.deadline == deadline
    assert pm.enter(View(9), 20.0, progress)
    assert pm.view == 9


def test_leader_schedule_gives_every_validator_one_two_view_term_per_round() -> None:
    cfg = config(0)
    for round_number in range(1, 50):
        start = round_number * N * TERM_VIEWS
        leaders = [leader_of(cfg, View(start + i)) for i in range(N * TERM_VIEWS)]
        terms = leaders[::TERM_VIEWS]
        assert sorted(terms) == list(range(N))
        assert leaders == [t for t in terms for _ in range(TERM_VIEWS)]
    # The order changes between rounds (a fixed order would starve the same runs every round).
    orders = {
        tuple(leader_of(cfg, View(r * N * TERM_VIEWS + i * TERM_VIEWS)) for i in range(N)) for r in range(50)
    }
    assert len(orders) > 1


def test_one_validator_down_leaves_four_working_views_in_a_row_every_round() -> None:
    # The three-chain needs four consecutive working leaders; round-robin with n=4 never has them.
    cfg = config(0)
    for down in range(N):
        for round_number in range(30):
            start = round_number * N * TERM_VIEWS
            working = [leader_of(cfg, View(start + i)) != down for i in range(N * TERM_VIEWS)]
            longest = max(len(run) for run in "".join("x" if w else " " for w in working).split())
            assert longest >= 4, (down, round_number)
    # Deterministic: every replica computes the same schedule.
    assert [leader_of(config(0), View(v)) for v in range(200)] == [
        leader_of(config(3), View(v)) for v in range(200)
    ]
    twins = config(0, leaders=(3, 3, 0))
    assert [leader_of(twins, View(v)) for v in (1, 2, 3)] == [3, 3, 0]
    assert [leader_of(twins, View(v)) for v in range(4, 40)] == [
        leader_of(cfg, View(v)) for v in range(4, 40)
    ]


def test_config_refuses_bad_timing() -> None:
    with pytest.raises(ValueError):
        config(0, base_timeout_s=0.0)
    with pytest.raises(ValueError):
        config(0, base_timeout_s=5.0, max_timeout_s=1.0)
    with pytest.raises(ValueError):
        config(0, timeout_backoff=0.5)
    with pytest.raises(ValueError):
        config(4)
