"""`bft cluster --chaos`: a local cluster with its links through the fault relay, perturbed live
with `bft ctl`, shown in a live table, and judged when it stops.

Owns: the scenario such a cluster runs (no timeline: the faults come from `bft ctl`), the live
table (per node: state, height, view, commits/s, timeouts sent, TCs, and the top refusals by
reason, so that a Byzantine node is visible by what the honest nodes refuse from it), and the
stop: the first Ctrl-C ends the run, heals everything, lets the nodes settle and prints the
checker's verdict; a second one stops at once. May not: apply faults itself (`bft ctl` does,
through the runner's control socket) or judge (the checker does).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bft.chaos.control import CONTROL_SOCKET
from bft.chaos.nemesis import plan
from bft.chaos.record import RunRecord, StatusSample
from bft.chaos.runner import ChaosRun
from bft.chaos.scenario import parse_scenario
from bft.chaos.testbed import Testbed

LIVE_DURATION: Final = "168h"
SETTLE_S: Final = 30.0
REFRESH_S: Final = 0.5
RATE_WINDOW_S: Final = 5.0


def live_scenario_text(nodes: int, byzantine: Mapping[int, str], rate: float) -> str:
    """The scenario of a live cluster: `nodes` validators, Byzantine ones at their indices,
    `rate` client operations a second (0: none), and no timeline."""
    inline = ", ".join(f'{i} = "{name}"' for i, name in sorted(byzantine.items()))
    load = ""
    if rate > 0:
        mix = "{ put = 5, cas = 3, del = 1, get = 3 }"
        load = f"\n[load]\nclients = 4\nrate = {rate:g}\nmix = {mix}\nkeys = 32\n"
    return (
        f'name = "live"\nduration = "{LIVE_DURATION}"\nseed = 0\n\n[cluster]\nnodes = {nodes}\n'
        f"byzantine = {{ {inline} }}\n" + load
    )


async def run_live(out: Path, nodes: int, byzantine: Mapping[int, str], rate: float, console: Console) -> int:
    """Run until Ctrl-C; 0 if the checker found nothing wrong, 1 otherwise."""
    from bft.chaos.checker import check
    from bft.chaos.report import format_terminal, write_html

    scenario = parse_scenario(live_scenario_text(nodes, byzantine, rate), "bft cluster --chaos", "live")
    bed = Testbed(scenario, out, seed=0)
    control = out / CONTROL_SOCKET
    run = ChaosRun(
        plan(scenario), bed, "bft cluster --chaos", SETTLE_S, console.print, control=control, live_line=False
    )
    console.print(f"cluster in {out}; APIs: {', '.join(bed.api_urls)}")
    console.print(f"perturb it with: bft ctl --home {out} partition 0,1 2,3   (bft ctl --help)")
    console.print("Ctrl-C ends the run: everything is healed and the checker judges it")
    record: RunRecord | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_on_signals, run, nursery.cancel_scope)
        nursery.start_soon(_view, run, console)
        record = await run.run()
        nursery.cancel_scope.cancel()
    (out / "record.json").write_text(record.to_json())
    report = check(record)
    console.print(format_terminal(record, report), markup=False, highlight=False)
    console.print(f"report: {write_html(record, report, out / 'report.html')}")
    return 0 if report.ok else 1


async def _on_signals(run: ChaosRun, scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if run.stopping:
                scope.cancel()
                raise KeyboardInterrupt
            run.stop()


async def _view(run: ChaosRun, console: Console) -> None:
    with Live(_table(run), console=console, refresh_per_second=4) as live:
        while True:
            await trio.sleep(REFRESH_S)
            live.update(_table(run))


def _table(run: ChaosRun) -> Table:
    bed = run.bed
    last: dict[int, StatusSample] = {}
    counted: dict[int, StatusSample] = {}
    earlier: dict[int, StatusSample] = {}
    now = run.now()
    for seen in run.record.samples:
        last[seen.node] = seen
        if seen.refusals or seen.timeouts is not None:
            counted[seen.node] = seen
        if seen.t_s <= now - RATE_WINDOW_S and seen.height is not None:
            earlier[seen.node] = seen
    faults = ", ".join(bed.active_faults()) or "none"
    table = Table(
        title=f"bft cluster --chaos  t={now:.0f}s  faults: {faults}  ops {len(run.load.history.ops)}"
    )
    for column in ("node", "state", "height", "view", "commits/s", "timeouts", "TCs", "refusals (top)"):
        table.add_column(column, justify="left" if column in ("state", "refusals (top)") else "right")
    for proc in bed.procs:
        i = proc.index
        state = "paused" if proc.paused else "running" if proc.running else "down"
        if proc.byzantine:
            state += f" ({proc.byzantine})"
        sample, count, before = last.get(i), counted.get(i), earlier.get(i)
        rate = "-"
        if (
            sample is not None
            and before is not None
            and sample.height is not None
            and sample.t_s > before.t_s
        ):
            assert before.height is not None
            rate = f"{(sample.height - before.height) / (sample.t_s - before.t_s):.1f}"
        top = sorted((count.refusals if count else {}).items(), key=lambda kv: -kv[1])[:3]
        table.add_row(
            str(i),
            state,
            _show(sample.height if sample else None),
            _show(sample.view if sample else None),
            rate,
            _show(count.timeouts if count else None),
            _show(count.tcs if count else None),
            ", ".join(f"{reason} {n}" for reason, n in top) or "-",
        )
    return table


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)
