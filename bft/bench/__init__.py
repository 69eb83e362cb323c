"""`bft bench`: drive load from concurrent clients against a cluster and report committed
transactions per second, submit-to-commit latency, each node's CPU and peak memory, and the load
generator's own CPU; `--consensus-only` runs the local cluster with the no-op application
(`bft.app.noop`), so that the figure of consensus alone stands beside the key-value ledger's.

Owns: the `bench` subcommand (`add_command`) and its body (`run_command`: options, one run, the
report on stdout, the exit status). The parts live in the modules of this package:
`options` (flags and their checking), `txs` (put transactions of an exact size), `stats`
(counters, the measured window, percentiles), `pacing` (token bucket, back-off), `usage` (CPU and
peak memory from metrics or /proc, and this process's CPU), `probe` (`/status` and `/metrics` over
HTTP), `report` (JSON and table), `load` (the client tasks), `progress` (the live view on stderr),
`local` (the local cluster, its application and readiness) and `run` (one run, from the cluster's
start to its stop).
May not: import the node's runtime or the protocol core, or reach a node other than over HTTP
(the client of `bft.client`, `/status`, `/metrics`), as any user of a cluster would.

Measurement: a transaction's latency runs from the start of the request that first submitted
it (after pacing) to the response that reports it committed, retries after "mempool full"
included. Only transactions committed inside the window [warm-up end, warm-up end + duration)
count toward `tx_per_s` and the percentiles; the counters of the report cover the same window
(submissions by when they were first sent, outcomes by when their response came).

Heavy libraries (trio, httpx, rich, prometheus_client, the client) are imported where they are
used, so that building the `bft` parser stays cheap for every other subcommand.
"""

from __future__ import annotations

import argparse
import json
from typing import Final

from bft.bench.errors import BenchError
from bft.bench.options import add_arguments, options_from_args
from bft.bench.report import report_table
from bft.bench.run import bench

__all__ = ["add_command", "run_command"]

EXIT_OK: Final = 0
EXIT_NOTHING_COMMITTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bft bench` to the `bft` parser."""
    parser = commands.add_parser(
        "bench",
        help="drive load against a cluster and report throughput, latency, CPU and memory",
        description=(
            "Start a local cluster of N node processes on 127.0.0.1 (or use running nodes with --target), "
            "submit key-value put transactions of an exact size from concurrent clients with "
            '"wait": "commit" (in the binary body of POST /txs; --json-body for the JSON one), and report '
            "committed transactions per second, p50/p90/p99 submit-to-commit latency, each node's CPU and "
            "peak memory and the load generator's own CPU over the measured window. --consensus-only runs "
            "the local nodes with the no-op application."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=run_command)


def run_command(args: argparse.Namespace) -> int:
    """The body of `bft bench`."""
    from rich.console import Console

    err = Console(stderr=True, soft_wrap=True)
    try:
        opts = options_from_args(args)
    except BenchError as exc:
        err.print(f"bft bench: {exc}", highlight=False)
        return EXIT_USAGE
    try:
        report = bench(opts, err, live=err.is_terminal and not opts.json)
    except BenchError as exc:
        err.print(f"bft bench: {exc}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        report = None
    if report is None:
        err.print("bft bench: interrupted")
        return EXIT_INTERRUPTED
    if report.first_error is not None:
        err.print(f"bft bench: some requests failed; the first: {report.first_error}", highlight=False)
    if opts.json:
        print(json.dumps(report.to_json()))
    else:
        Console().print(report_table(report))
    return EXIT_OK if report.window.committed > 0 else EXIT_NOTHING_COMMITTED
