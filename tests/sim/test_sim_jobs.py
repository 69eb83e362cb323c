"""Campaigns across worker processes (`bft sim --jobs N`) and replays in fresh processes.

A schedule is a pure function of (spec, seed, factories): the same seed gives the same result
in this process, in a worker process, and in a fresh `bft sim --seed K` whatever the hash seed.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest

from bft.campaign import FACTORIES, run_campaign_jobs
from bft.cli import main
from bft.sim import ScheduleResult, SimSpec, run_schedule
from bft.sim.invariants import LIVENESS
from bft.sim.node import Factories
from bft.sim.trace import format_outcome

TIMEOUT_S = 120.0
# As `bft sim --nodes 4 --byzantine equivocate` builds it.
EQUIVOCATE = SimSpec(nodes=4, byzantine={0: "equivocate"})


def _bft(args: list[str], hash_seed: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run(
        [sys.executable, "-m", "bft", *args], capture_output=True, timeout=TIMEOUT_S, check=False, env=env
    )


def test_replay_command_is_byte_identical_in_fresh_processes() -> None:
    seed = 10
    here = run_schedule(EQUIVOCATE, seed, FACTORIES)
    assert here.plan.crashes, "pick a seed whose plan crashes a node"
    command = shlex.split(here.replay_command)
    assert command[0] == "bft" and command[-2:] == ["--seed", str(seed)]
    # Different hash seeds: a result that depended on set or dict-of-str order would differ.
    first, second = (_bft([*command[1:], "--trace"], hash_seed) for hash_seed in ("1", "2"))
    assert first.returncode == second.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    out = first.stdout.decode()
    trace = [line for line in out.splitlines() if re.match(r" *\d+\.\d ms  ", line)]
    assert len(trace) > 100
    assert any("crash" in line for line in trace)
    # ... and the fresh process ran the very schedule this process ran.
    assert f"outcome: {here.events} events, {here.sim_time_s * 1000:.1f} ms simulated" in out
    assert "\n".join(format_outcome(here)) in out


def _per_seed(spec: SimSpec, seeds: range, jobs: int) -> tuple[list[ScheduleResult], str]:
    seen: list[ScheduleResult] = []
    campaign = run_campaign_jobs(spec, seeds, jobs, seen.append)
    assert [r.seed for r in seen] == list(seeds)
    assert campaign.schedules == len(seeds) and campaign.wall_time_s > 0
    assert campaign.failed == [r for r in seen if not r.ok]
    return seen, campaign.report().split(":", 1)[1]  # the report minus the timing


def test_two_jobs_give_the_same_per_seed_results_as_one() -> None:
    seeds = range(6)
    serial, serial_report = _per_seed(EQUIVOCATE, seeds, 1)
    parallel, parallel_report = _per_seed(EQUIVOCATE, seeds, 2)
    assert parallel == serial  # heights, commits, violations, plans, placements, event counts
    assert parallel_report == serial_report
    assert all(r.ok and r.commits >= EQUIVOCATE.min_new_commits for r in serial)
    assert len({next(iter(r.byzantine)) for r in serial}) > 1  # the behaviour moved between seeds


def test_violations_from_workers_keep_their_seed_and_replay_command() -> None:
    # Liveness no schedule can meet: every seed fails, in the workers as here.
    spec = SimSpec(nodes=4, crashes=False, max_gst_s=2.0, window_s=3.0, min_new_commits=1000)
    seeds = range(10, 13)
    serial, _ = _per_seed(spec, seeds, 1)
    parallel, _ = _per_seed(spec, seeds, 2)
    assert parallel == serial
    for r in parallel:
        assert r.violations and {v.kind for v in r.violations} == {LIVENESS}
        report = r.failure_report()
        assert report.startswith(f"seed {r.seed}: ")
        assert report.endswith(f"replay: bft sim --nodes 4 --no-crashes --seed {r.seed}")


def _summary(capsys: pytest.CaptureFixture[str], jobs: int) -> tuple[int, str]:
    args = ["sim", "--nodes", "4", "--byzantine", "twins", "--seeds", "3", "--quiet", "--jobs", str(jobs)]
    code = main(args)
    out = capsys.readouterr().out
    return code, re.sub(r"simulated in .*", "", out)


def test_cli_jobs_two_prints_what_jobs_one_prints(capsys: pytest.CaptureFixture[str]) -> None:
    one = _summary(capsys, 1)
    assert one[0] == 0 and "3 schedules" in one[1]
    assert _summary(capsys, 2) == one


@pytest.mark.parametrize("jobs", ["0", "-2", "two"])
def test_cli_refuses_jobs_below_one(jobs: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "--seeds", "1", "--jobs", jobs])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --jobs" in err
    assert ("must be at least 1" in err) if jobs != "two" else ("whole number" in err)
    with pytest.raises(ValueError, match="jobs must be at least 1"):
        run_campaign_jobs(EQUIVOCATE, range(1), 0)


def test_an_error_in_the_parent_terminates_and_reaps_the_workers() -> None:
    workers: list[multiprocessing.process.BaseProcess] = []

    def stop(r: ScheduleResult) -> None:
        workers.extend(multiprocessing.active_children())
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run_campaign_jobs(SimSpec(nodes=4, twins=True), range(10_000), 2, stop)
    assert len(workers) == 2
    # Gone and reaped: a zombie or a live worker would still answer signal 0. (multiprocessing's
    # own bookkeeping is not asked: when the executor's manager thread and the pool both wait on a
    # child, one of them may never learn its exit status.)
    for worker in workers:
        assert worker.pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(worker.pid, 0)


def _no_factories() -> Factories:
    raise RuntimeError("no factories in this worker")


def test_a_worker_that_dies_fails_the_campaign_naming_the_seed() -> None:
    with pytest.raises(RuntimeError, match="a campaign worker died running seed 0"):
        run_campaign_jobs(EQUIVOCATE, range(8), 2, factories=_no_factories)
    assert multiprocessing.active_children() == []


# Ctrl-C as a terminal sends it: SIGINT to the whole process group, workers included.
DRIVER = textwrap.dedent(
    """
    import multiprocessing, signal, sys
    # As an interactive program starts: Ctrl-C raises KeyboardInterrupt. A process started by
    # the test runner may inherit SIGINT ignored or blocked (it then never arrives); say which.
    inherited = (signal.getsignal(signal.SIGINT), sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    print("inherited SIGINT handler and blocked signals:", *inherited, file=sys.stderr, flush=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    from bft.campaign import run_campaign_jobs
    from bft.sim import SimSpec

    def ready(r):
        if r.seed == 0:
            print(*(p.pid for p in multiprocessing.active_children()), flush=True)

    try:
        run_campaign_jobs(SimSpec(nodes=4, twins=True), range(10_000), 2, ready)
    except KeyboardInterrupt:
        print("interrupted", *(p.pid for p in multiprocessing.active_children()), flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_leaves_no_worker_behind() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], TIMEOUT_S)
        assert readable, "no schedule finished"
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read() if proc.stderr else ""
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"the driver ignored SIGINT; its stderr: {proc.communicate()[1]}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        # Left open (after a timeout), the pipes surface as ResourceWarnings in whichever test
        # the garbage collector runs next.
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == 130, err
    assert out.startswith("interrupted")
    # Every worker is gone and reaped: a zombie or a live orphan would still answer signal 0.
    # (The driver's multiprocessing bookkeeping is not asked: when the executor's manager thread
    # and the pool both wait on a child, one of them may never learn its exit status.)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "Traceback" not in err
