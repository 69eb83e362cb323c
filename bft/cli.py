"""The `bft` command.

Owns: argument parsing and the terminal presentation of each subcommand.
May not: hold protocol, simulation or behaviour logic; it composes them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bft.core.types import max_faulty


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bft", description="A Byzantine-fault-tolerant consensus node.")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_sim(commands)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


def _add_sim(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from bft.campaign import behaviour_names

    sim = commands.add_parser(
        "sim",
        help="run a seeded simulation campaign of the real core",
        description=(
            "Run n replicas of the real core in a deterministic simulator with message delays, drops, "
            "duplicates, partitions that heal, crashes and restarts, and Byzantine behaviours; check "
            "agreement, validity, no double signing, safety-state monotonicity and liveness after "
            "every step. Exits 1 on any violation and prints the seed and the command that replays it."
        ),
    )
    sim.add_argument("--nodes", type=int, default=4, help="number of validators (default 4)")
    sim.add_argument(
        "--byzantine",
        default="",
        help=f"comma-separated behaviours, at most f of them: {', '.join(behaviour_names())}",
    )
    sim.add_argument("--seeds", type=int, default=100, help="how many schedules to run (default 100)")
    sim.add_argument("--first-seed", type=int, default=0, help="seed of the first schedule (default 0)")
    sim.add_argument("--seed", type=int, default=None, help="replay exactly this one seed")
    sim.add_argument("--trace", action="store_true", help="with --seed: print every event")
    sim.add_argument("--no-crashes", action="store_true", help="no crash/restart faults")
    sim.add_argument("--quiet", action="store_true", help="no live progress display")
    sim.set_defaults(run=_run_sim)


def _parse_behaviours(nodes: int, text: str) -> tuple[dict[int, str], bool] | str:
    from bft.campaign import behaviour_names

    names = [b.strip() for b in text.split(",") if b.strip()]
    unknown = sorted(set(names) - set(behaviour_names()))
    if unknown:
        return f"unknown behaviour(s) {', '.join(unknown)}; choose from {', '.join(behaviour_names())}"
    twins = "twins" in names
    others = [b for b in names if b != "twins"]
    f = max_faulty(nodes)
    if len(others) + (1 if twins else 0) > f:
        return f"{len(names)} faulty behaviours exceed f = {f} for {nodes} nodes"
    return {i: b for i, b in enumerate(others)}, twins


def _run_sim(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bft.campaign import FACTORIES
    from bft.sim.runner import run_campaign, run_schedule
    from bft.sim.spec import ScheduleResult, SimSpec

    console = Console(stderr=True)
    parsed = _parse_behaviours(args.nodes, args.byzantine)
    if isinstance(parsed, str):
        console.print(f"bft sim: {parsed}")
        return 2
    byzantine, twins = parsed
    try:
        spec = SimSpec(nodes=args.nodes, byzantine=byzantine, twins=twins, crashes=not args.no_crashes)
    except ValueError as e:
        console.print(f"bft sim: {e}")
        return 2

    if args.seed is not None:
        trace: list[object] | None = [] if args.trace else None
        result = run_schedule(spec, args.seed, FACTORIES, trace=trace)  # type: ignore[arg-type]
        for entry in trace or []:
            print(entry)
        print(
            f"seed {args.seed}: {result.events} events, {result.sim_time_s:.1f}s simulated, "
            f"min committed height {result.commits}, heights {dict(result.heights)}"
        )
        if not result.ok:
            print(result.failure_report())
            return 1
        print("no violations")
        return 0

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    violations = 0
    with Progress(
        TextColumn("[bold]bft sim[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
        transient=False,
    ) as progress:
        task = progress.add_task("sim", total=len(seeds), status="")
        commits = 0

        def on_result(r: ScheduleResult) -> None:
            nonlocal commits, violations
            commits += r.commits
            if not r.ok:
                violations += len(r.violations)
                progress.console.print(r.failure_report())
            progress.update(task, advance=1, status=f"commits {commits}  violations {violations}")

        campaign = run_campaign(spec, seeds, FACTORIES, on_result)
    print(
        f"nodes {spec.nodes}, behaviours {','.join(spec.behaviour_names()) or 'none'}: "
        f"{campaign.schedules} schedules, {campaign.total_commits} blocks committed "
        f"(lowest honest height per schedule, summed), {len(campaign.failures)} violations, "
        f"{campaign.sim_time_s:.0f}s simulated in {campaign.wall_time_s:.1f}s real, "
        f"{campaign.schedules_per_s:.1f} schedules/s"
    )
    if not campaign.ok:
        for r in campaign.failed:
            print(f"replay: {r.replay_command}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
