"""Scheduler: ordering by (time, insertion), the clock, determinism."""

from __future__ import annotations

import random

import pytest

from bft.sim.scheduler import Scheduler


def test_pops_in_time_then_insertion_order() -> None:
    s: Scheduler[str] = Scheduler()
    s.schedule(2.0, "c")
    s.schedule(1.0, "a")
    s.schedule(1.0, "b")
    s.schedule(0.5, "first")
    out = []
    while (item := s.pop()) is not None:
        out.append(item)
    assert out == [(0.5, "first"), (1.0, "a"), (1.0, "b"), (2.0, "c")]
    assert s.now == 2.0
    assert len(s) == 0


def test_clock_advances_and_past_is_refused() -> None:
    s: Scheduler[int] = Scheduler()
    s.schedule(1.0, 1)
    assert s.peek_time() == 1.0
    s.pop()
    s.schedule_after(0.5, 2)
    assert s.peek_time() == 1.5
    with pytest.raises(ValueError):
        s.schedule(0.9, 3)
    assert s.pop() == (1.5, 2)
    assert s.pop() is None
    assert s.peek_time() is None


def _run(seed: int) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    s: Scheduler[int] = Scheduler()
    for k in range(50):
        s.schedule(float(rng.randint(0, 10)), k)
    out = []
    while (item := s.pop()) is not None:
        t, k = item
        out.append((t, k))
        if k < 200 and rng.random() < 0.5:
            s.schedule_after(float(rng.randint(0, 3)), k + 100)
    return out


def test_deterministic() -> None:
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)
    times = [t for t, _ in _run(7)]
    assert times == sorted(times)
