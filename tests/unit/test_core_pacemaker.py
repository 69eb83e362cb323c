"""The pacemaker: forward-only views, exponential backoff with a cap, reset on QC progress only."""

from __future__ import annotations

import pytest
from core_helpers import N, config

from bft.core.leader import leader_of
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


def test_leader_schedule_visits_every_validator_once_per_round_after_the_prefix() -> None:
    cfg = config(0)
    for round_number in range(1, 50):
        leaders = [leader_of(cfg, View(round_number * N + i)) for i in range(N)]
        assert sorted(leaders) == list(range(N))
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
