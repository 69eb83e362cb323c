"""`bft chaos`: run a scenario on a live cluster (`run`), print its plan (`plan`), re-judge a
recorded run (`check`).

Owns: the command line of the chaos runner, where a run's files go (`--out`, default
`chaos-runs/<scenario>-seed<S>-<time>`: the testnet with every node's log, `record.json`,
`report.html`, `report.png`), and the exit codes: 0 no violation, 1 violations (with the seed
and the command that replays the run), 2 a bad scenario or a run that could not be carried out.
May not: judge or draw anything itself.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bft.cli_args import non_negative_int, port, positive_float

if TYPE_CHECKING:
    from bft.chaos.nemesis import Plan

EXIT_OK: Final = 0
EXIT_VIOLATIONS: Final = 1
EXIT_ERROR: Final = 2
DEFAULT_SETTLE_S: Final = 60.0
# The commands of `bft ctl` (`bft.chaos.control` parses them).
CONTROL_USAGE: Final = (
    "commands: partition 0,1 2,3 | heal | kill N | restart N | pause N | resume N | wipe N | "
    "delay MS [JITTER_MS] [LINKS] | drop RATE [LINKS] | duplicate RATE [LINKS] | reorder RATE [LINKS] | "
    "bandwidth BYTES_PER_S [LINKS] | cut A B | clear [LINKS]   (LINKS: all, node=K, or A>B,C>D)"
)


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    chaos = commands.add_parser(
        "chaos",
        help="perturb a live cluster from a scenario file and prove nothing went wrong",
        description=(
            "Run a scenario (configs/scenarios/*.toml) on a local cluster whose p2p links go through "
            "a fault-injecting relay: partitions, delays, drops, one-way cuts, kills, pauses, wiped "
            "data directories, skewed clocks, Byzantine nodes, under client load. Then check from the "
            "HTTP API that every honest node holds the same blocks and app hashes, that nothing "
            "acknowledged was lost, that reads and compare-and-sets agree with the committed order, "
            "and that commits resumed after every fault; write a report."
        ),
    )
    kinds = chaos.add_subparsers(dest="chaos", required=True)
    run = kinds.add_parser("run", help="run a scenario and judge it")
    run.add_argument("scenario", type=Path, help="the scenario file (TOML)")
    run.add_argument("--seed", type=non_negative_int, default=None, help="the seed (default: the file's)")
    run.add_argument("--duration", default=None, help='run length, e.g. "90s", "30m" (default: the file\'s)')
    run.add_argument("--out", type=Path, default=None, help="where the run's files go (a new directory)")
    run.add_argument("--base-port", type=port, default=None, help="first node port (default: a free run)")
    run.add_argument(
        "--settle",
        type=positive_float,
        default=DEFAULT_SETTLE_S,
        help=f"seconds allowed after the run for every node to catch up (default {DEFAULT_SETTLE_S:.0f})",
    )
    run.set_defaults(run=_run)
    plan = kinds.add_parser("plan", help="print the steps a scenario takes with a seed")
    plan.add_argument("scenario", type=Path)
    plan.add_argument("--seed", type=non_negative_int, default=None)
    plan.add_argument("--duration", default=None)
    plan.set_defaults(run=_plan)
    check = kinds.add_parser("check", help="judge a recorded run again (record.json)")
    check.add_argument("record", type=Path)
    check.set_defaults(run=_check)


def _load(args: argparse.Namespace) -> object:
    from bft.chaos.nemesis import plan
    from bft.chaos.scenario import ScenarioError, load_scenario, parse_duration

    try:
        scenario = load_scenario(args.scenario)
        duration = None if args.duration is None else parse_duration(args.duration, "--duration")
        return plan(scenario, args.seed, duration)
    except ScenarioError as exc:
        return str(exc)


def replay_command(scenario: Path, seed: int, duration_s: float) -> str:
    return f"bft chaos run {shlex.quote(str(scenario))} --seed {seed} --duration {duration_s:g}s"


def _headline(plan: Plan) -> str:
    return (
        f"{plan.scenario.name}: seed {plan.seed}, {plan.duration_s:g} s, {plan.scenario.cluster.nodes} nodes"
    )


def _plan(args: argparse.Namespace) -> int:
    from bft.chaos.nemesis import Plan

    loaded = _load(args)
    if not isinstance(loaded, Plan):
        print(f"bft chaos plan: {loaded}", file=sys.stderr)
        return EXIT_ERROR
    print(_headline(loaded))
    print(loaded.describe())
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import trio

    from bft.chaos.checker import check
    from bft.chaos.nemesis import Plan
    from bft.chaos.runner import ChaosError, ChaosRun, record_path
    from bft.chaos.testbed import Testbed
    from bft.node.errors import NodeError

    loaded = _load(args)
    if not isinstance(loaded, Plan):
        print(f"bft chaos run: {loaded}", file=sys.stderr)
        return EXIT_ERROR
    plan = loaded
    name = plan.scenario.name
    out = args.out or Path("chaos-runs") / f"{name}-seed{plan.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and any(out.iterdir()):
        print(f"bft chaos run: {out} is not empty; choose another --out", file=sys.stderr)
        return EXIT_ERROR
    command = replay_command(args.scenario, plan.seed, plan.duration_s)

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"{_headline(plan)}; files in {out}")
    byzantine = plan.scenario.cluster.byzantine
    if byzantine:
        say("byzantine: " + ", ".join(f"{i} = {b}" for i, b in sorted(byzantine.items())))
    say(plan.describe())
    try:
        out.mkdir(parents=True, exist_ok=True)
        testbed = Testbed(plan.scenario, out, plan.seed, args.base_port)
        record = trio.run(ChaosRun(plan, testbed, command, args.settle, say).run)
    except (ChaosError, NodeError, OSError) as exc:
        print(f"bft chaos run: {exc}", file=sys.stderr)
        return EXIT_ERROR
    record_path(out).write_text(record.to_json())
    report = check(record)
    return _report(record, report, out)


def _report(record: object, report: object, out: Path | None) -> int:
    from bft.chaos.checker import CheckReport
    from bft.chaos.record import RunRecord
    from bft.chaos.report import format_terminal, write_html, write_png

    assert isinstance(record, RunRecord) and isinstance(report, CheckReport)
    print(format_terminal(record, report))
    if out is not None:
        html = write_html(record, report, out / "report.html")
        with contextlib.suppress(ImportError):  # the figure needs the [report] extra
            write_png(record, report, out / "report.png")
        print(f"report: {html}")
    return EXIT_OK if report.ok else EXIT_VIOLATIONS


def _check(args: argparse.Namespace) -> int:
    from bft.chaos.checker import check
    from bft.chaos.record import RunRecord

    try:
        record = RunRecord.from_json(args.record.read_text())
    except (OSError, ValueError) as exc:
        print(f"bft chaos check: {args.record}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return _report(record, check(record), None)
