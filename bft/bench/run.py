"""One run of `bft bench`, from the cluster's start to its stop.

Owns: `bench` (a run under `trio.run`, with the temporary data directory of a local cluster
removed afterwards), the run's nursery and its lifetime (the local cluster's processes are stopped
on exit, error, SIGINT or SIGTERM), the readiness wait, the timing of the warm-up and the measured
window, the resource samples at the window's two ends (the nodes' and this process's, the load
generator's), and the assembly of the report.
May not: print the report or choose the exit status (the command does); import trio, httpx or
rich at module level.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bft.bench.errors import BenchError
from bft.bench.load import ClientKit, LoadPlan, default_kit, run_clients
from bft.bench.local import READY_TIMEOUT_S, prepare_home, start_nodes, wait_ready
from bft.bench.options import BenchOptions
from bft.bench.probe import PROBE_TIMEOUT_S, fetch_status, int_field, sample_all
from bft.bench.progress import Progress, poll_heights, show_progress
from bft.bench.report import BenchReport
from bft.bench.stats import Recorder
from bft.bench.txs import new_run_id
from bft.bench.usage import cpu_between, node_usage, self_sample

if TYPE_CHECKING:
    import httpx
    import trio
    from rich.console import Console


def bench(
    opts: BenchOptions, console: Console, *, live: bool, kit: ClientKit | None = None
) -> BenchReport | None:
    """Run one benchmark with the client of `kit` (default: `bft.client`, in the body
    `opts.body` says); None if interrupted. The local cluster's temporary directory is removed
    afterwards."""
    import trio

    kit = default_kit(binary=not opts.json_body) if kit is None else kit
    temporary = opts.local and opts.home is None
    home = Path(tempfile.mkdtemp(prefix="bft-bench-")) if temporary else opts.home
    try:
        return trio.run(run_bench, opts, home, console, live, kit)
    finally:
        if temporary and home is not None:
            shutil.rmtree(home, ignore_errors=True)


async def run_bench(
    opts: BenchOptions, home: Path | None, console: Console, live: bool, kit: ClientKit
) -> BenchReport | None:
    """Start the local cluster (or reach the targets), run the load, and stop every process
    started, whatever happens; None if SIGINT or SIGTERM cut the run short."""
    import trio

    outcome: list[BenchReport] = []
    failure: list[BenchError] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_signal, signals, nursery.cancel_scope, console)
            try:
                outcome.append(await _setup_and_measure(nursery, opts, home, console, live, kit))
            except BenchError as exc:
                # Raised here, out of the nursery, it would come wrapped in an exception group.
                failure.append(exc)
            nursery.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


async def _setup_and_measure(
    nursery: trio.Nursery, opts: BenchOptions, home: Path | None, console: Console, live: bool, kit: ClientKit
) -> BenchReport:
    import httpx

    async with httpx.AsyncClient() as http:
        apis, processes = await _cluster(nursery, opts, home, console)
        want_peers = opts.nodes - 1 if opts.local else None
        timeout_s = READY_TIMEOUT_S if opts.local else PROBE_TIMEOUT_S * 5
        await wait_ready(http, apis, want_peers, processes, home, timeout_s)
        console.print(
            f"cluster ready; {opts.warmup_s:g} s warm-up, then {opts.duration_s:g} s measured",
            highlight=False,
        )
        pids: list[int | None] = [p.pid for p in processes] if processes else [None] * len(apis)
        report = await measure(opts, http, apis, pids, console, live, kit)
    if processes:
        console.print("stopping the nodes...")
    return report


async def _cluster(
    nursery: trio.Nursery, opts: BenchOptions, home: Path | None, console: Console
) -> tuple[list[str], list[trio.Process]]:
    if not opts.local:
        return list(opts.targets), []
    assert home is not None and opts.commit_chain is not None and opts.app is not None
    quorum_store, reputation = bool(opts.quorum_store), bool(opts.leader_reputation)
    apis = prepare_home(
        home, opts.nodes, opts.commit_chain, opts.app, quorum_store=quorum_store, leader_reputation=reputation
    )
    mode = f"commit chain {opts.commit_chain}{', quorum store' if quorum_store else ''}"
    mode += ", leader reputation" if reputation else ""
    console.print(f"starting {opts.nodes} nodes in {home} ({mode}, application {opts.app})")
    return apis, await start_nodes(nursery, home, opts.nodes)


async def measure(
    opts: BenchOptions,
    http: httpx.AsyncClient,
    apis: Sequence[str],
    pids: Sequence[int | None],
    console: Console,
    live: bool,
    kit: ClientKit,
) -> BenchReport:
    """Warm up, then measure for `opts.duration_s`; the report of the window."""
    import trio

    started = trio.current_time()
    window_start = started + opts.warmup_s
    window_end = window_start + opts.duration_s
    recorder = Recorder(window_start, window_end)
    plan = LoadPlan(new_run_id(), opts.tx_size_bytes, opts.batch, window_end, kit.errors)
    progress = Progress(started, recorder, apis, [None] * len(apis))
    statuses = [await fetch_status(http, api) for api in apis]
    indices = [int_field(s, "node") for s in statuses]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(show_progress, progress, console, live)
        nursery.start_soon(poll_heights, http, progress)
        nursery.start_soon(run_clients, opts, apis, plan, recorder, kit)
        await trio.sleep_until(window_start)
        load_first = self_sample(trio.current_time())
        first = await sample_all(http, apis, pids)
        await trio.sleep_until(window_end)
        load_last = self_sample(trio.current_time())
        last = await sample_all(http, apis, pids)
        nursery.cancel_scope.cancel()
    per_node = [node_usage(_or(indices[i], i), apis[i], first[i], last[i]) for i in range(len(apis))]
    load_cpu_s, load_cpu_percent = cpu_between(load_first, load_last)
    return BenchReport(opts, recorder.window, per_node, recorder.first_error, load_cpu_s, load_cpu_percent)


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope, console: Console) -> None:
    async for signum in signals:
        console.print(f"{signal.Signals(signum).name}: stopping...")
        scope.cancel()
        return


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
