"""The drive loop's schedule (`bft.node.drive`): frames get a turn whatever the deadline does, a
deadline left in the past costs spaced timer steps (and a stall report), not a spin, and a
backlog of frames does not keep a due timer waiting."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import trio
import trio.testing

from bft.node.clock import NodeClock
from bft.node.drive import MIN_TIMER_INTERVAL_S, Frame, Waker, drive


class Program:
    """A fake program: records its steps; `stuck` keeps its deadline in the past forever (the
    bug), else each timer step moves it `period_s` past `now`."""

    def __init__(self, first_deadline: float, period_s: float = 0.0, stuck: bool = False) -> None:
        self.deadline = first_deadline
        self.period_s = period_s
        self.stuck = stuck
        self.steps: list[tuple[str, float]] = []
        self.stalls = 0

    def next_deadline(self) -> float | None:
        return self.deadline

    def on_timer(self, now: float) -> None:
        # On a virtual clock a spinning loop never lets time pass: fail instead of hanging.
        assert len(self.steps) < 100_000, "the drive loop spins on timer steps"
        self.steps.append(("timer", now))
        if not self.stuck:
            self.deadline = now + self.period_s

    def on_frame(self, peer: int, data: bytes, now: float) -> None:
        self.steps.append((f"frame {peer} {data.decode()}", now))

    def on_stall(self, now: float, deadline: float) -> None:
        assert deadline <= now
        self.stalls += 1

    def count(self, kind: str) -> int:
        return sum(1 for step, _ in self.steps if step.startswith(kind))


def _start(
    nursery: trio.Nursery,
    program: Program,
    receive: trio.MemoryReceiveChannel[Frame],
    waker: Waker | None = None,
    on_wake: Callable[[float], None] = lambda now: None,
) -> None:
    """Drive `program` on the frames of `receive` in `nursery`, on a real-rate node clock."""
    nursery.start_soon(
        drive,
        receive,
        program.next_deadline,
        program.on_timer,
        program.on_frame,
        program.on_stall,
        NodeClock(),
        waker,
        on_wake,
    )


async def _run(program: Program, frames: list[Frame], run_s: float, send_at_s: float = 0.0) -> None:
    send, receive = trio.open_memory_channel[Frame](len(frames) + 1)
    async with trio.open_nursery() as nursery:
        _start(nursery, program, receive)
        await trio.sleep(send_at_s)
        for frame in frames:
            send.send_nowait(frame)
        await trio.sleep(run_s)
        nursery.cancel_scope.cancel()


async def _with_backlog(
    frames: int,
    run_s: float,
    program: Program,
    on_timer: Callable[[float], None],
    on_frame: Callable[[int, bytes, float], None],
) -> None:
    """Drive `program` for `run_s` with `frames` frames already waiting at the start."""
    send, receive = trio.open_memory_channel[Frame](frames)
    for i in range(frames):
        send.send_nowait((2, f"b{i}".encode()))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            drive, receive, program.next_deadline, on_timer, on_frame, program.on_stall, NodeClock()
        )
        await trio.sleep(run_s)
        nursery.cancel_scope.cancel()


async def test_a_deadline_stuck_in_the_past_still_lets_every_frame_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The shape: the deadline is due at start and no timer step moves it.
    program = Program(first_deadline=0.0, stuck=True)
    frames = [(1, f"m{i}".encode()) for i in range(500)]
    await _run(program, frames, run_s=1.0, send_at_s=0.1)
    assert program.count("frame") == 500
    # Frames are handled in order.
    assert [step for step, _ in program.steps if step.startswith("frame")] == [
        f"frame 1 m{i}" for i in range(500)
    ]
    # Timer steps are spaced, not a spin: at most one per MIN_TIMER_INTERVAL_S (plus the first).
    assert program.count("timer") <= 1.1 / MIN_TIMER_INTERVAL_S + 1
    assert program.stalls == program.count("timer")
    times = [at for step, at in program.steps if step == "timer"]
    assert all(b - a >= MIN_TIMER_INTERVAL_S - 1e-9 for a, b in itertools.pairwise(times))


async def test_a_backlog_of_frames_does_not_keep_a_due_timer_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 1,000 frames wait and each costs 1 ms to handle; the timer is due every 10 ms. Every timer
    # step comes at most one frame's cost after its deadline.
    program = Program(first_deadline=0.01, period_s=0.01)
    due: list[tuple[float, float]] = []

    def on_timer(now: float) -> None:
        due.append((program.deadline, now))
        program.on_timer(now)

    def on_frame(peer: int, data: bytes, now: float) -> None:
        program.on_frame(peer, data, now)
        autojump_clock.jump(0.001)

    await _with_backlog(1000, 1.5, program, on_timer, on_frame)
    assert program.count("frame") == 1000
    backlog = [(deadline, at) for deadline, at in due if at <= 1.0]
    assert len(backlog) >= 90, len(backlog)
    assert all(at - deadline <= 0.001 + 1e-9 for deadline, at in backlog), backlog[:5]
    assert program.stalls == 0


async def test_a_stalled_timer_and_a_backlog_take_turns(autojump_clock: trio.testing.MockClock) -> None:
    # A timer step that leaves the deadline at `now` (a stall) while 1,000 frames wait, each
    # costing 0.1 ms: the frames go on being read and the timer steps stay spaced.
    program = Program(first_deadline=0.0, period_s=0.0)

    def on_frame(peer: int, data: bytes, now: float) -> None:
        program.on_frame(peer, data, now)
        autojump_clock.jump(0.0001)

    await _with_backlog(1000, 1.0, program, program.on_timer, on_frame)
    assert program.count("frame") == 1000
    times = [at for step, at in program.steps if step == "timer"]
    assert all(b - a >= MIN_TIMER_INTERVAL_S - 1e-9 for a, b in itertools.pairwise(times))
    # The 1,000 frames took 0.1 s: about 100 timer steps among them, one per millisecond.
    assert 50 <= sum(1 for at in times if at <= 0.1) <= 110
    assert program.stalls == len(times)


async def test_a_healthy_deadline_is_waited_for(autojump_clock: trio.testing.MockClock) -> None:
    # Deadlines that move forward by 0.1 s: timer steps at 0.1 s intervals, no stall reported.
    program = Program(first_deadline=0.1, period_s=0.1)
    await _run(program, [(1, b"x")], run_s=0.7, send_at_s=0.35)
    times = [round(at, 6) for step, at in program.steps if step == "timer"]
    assert times == [round(0.1 * k, 6) for k in range(1, 11)], times
    assert program.stalls == 0
    assert ("frame 1 x", 0.35) in [(s, round(t, 6)) for s, t in program.steps]


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.0])
async def test_a_skewed_clock_runs_the_timers_rate_times_as_fast(
    autojump_clock: trio.testing.MockClock, rate: float
) -> None:
    """A deadline 1 s ahead on the node's clock fires after 1/rate s of real time, and the
    program is handed the node's time, not trio's."""
    fired: list[tuple[float, float]] = []
    clock = NodeClock(rate)
    deadline = clock.now() + 1.0
    start = trio.current_time()

    def next_deadline() -> float | None:
        return None if fired else deadline

    def on_timer(now: float) -> None:
        fired.append((now, trio.current_time() - start))

    _, receive = trio.open_memory_channel[Frame](1)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                drive, receive, next_deadline, on_timer, lambda *a: None, lambda *a: None, clock
            )
            await trio.sleep(3)
            nursery.cancel_scope.cancel()
    assert len(fired) == 1
    node_now, real_elapsed_s = fired[0]
    assert node_now == pytest.approx(deadline)
    assert real_elapsed_s == pytest.approx(1.0 / rate)


async def test_a_wake_ends_the_wait_at_once_and_loses_no_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Another task's wake (the API admitting transactions) gives the program a step at once,
    not at its deadline 10 s away; many wakes before the loop runs make one step; frames sent
    around the wakes all arrive, in order."""
    program = Program(first_deadline=10.0, period_s=10.0)
    waker = Waker()
    wakes: list[float] = []
    send, receive = trio.open_memory_channel[Frame](10)
    async with trio.open_nursery() as nursery:
        _start(nursery, program, receive, waker, wakes.append)
        await trio.sleep(1.0)
        for _ in range(5):
            waker.wake()
        await trio.sleep(1.0)
        send.send_nowait((1, b"a"))
        waker.wake()
        send.send_nowait((1, b"b"))
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert [round(t, 3) for t in wakes] == [1.0, 2.0], wakes
    assert [step for step, _ in program.steps] == ["frame 1 a", "frame 1 b"]
