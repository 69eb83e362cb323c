"""`bft bench`: drive load from concurrent clients against a cluster and report committed
transactions per second, submit-to-commit latency, and each node's CPU and peak memory.

Owns: the `bench` subcommand (`add_command`); the local cluster it may start (a testnet on free
127.0.0.1 ports, one `bft node` process per validator, every one stopped on exit, error or
Ctrl-C); the load (client tasks bound round-robin to nodes, put transactions of an exact size,
token-bucket pacing, retries of "mempool full"); the measured window (after a warm-up); the
reading of each node's `/status` and `/metrics`; and the presentation (a live panel or plain
progress lines on stderr, then a table, or with `--json` exactly one JSON object, on stdout).
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
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from bft.app.kv import MAX_TX_BYTES, MAX_VALUE_BYTES, put_tx

if TYPE_CHECKING:
    import httpx
    import trio
    from rich.console import Console
    from rich.table import Table

DEFAULT_NODES: Final = 4
DEFAULT_DURATION_S: Final = 20.0
DEFAULT_TX_SIZE_BYTES: Final = 256
DEFAULT_CLIENTS: Final = 16
DEFAULT_BATCH: Final = 50
DEFAULT_WARMUP_S: Final = 2.0

LOCALHOST: Final = "127.0.0.1"
# Every node of a local cluster must be connected to all its peers before the load starts.
READY_TIMEOUT_S: Final = 60.0
READY_POLL_S: Final = 0.2
# A node that commits nothing for this long under "wait": "commit" counts as an error.
REQUEST_TIMEOUT_S: Final = 30.0
PROBE_TIMEOUT_S: Final = 2.0
HEIGHT_POLL_S: Final = 0.5
LIVE_REFRESH_PER_S: Final = 4
PLAIN_PROGRESS_S: Final = 5.0
# Back-off after "mempool full" or an unreachable node: doubles from the first to the cap.
BACKOFF_FIRST_S: Final = 0.05
BACKOFF_CAP_S: Final = 1.0
# Latencies kept for the live p50.
RECENT_LATENCIES: Final = 2000

METRIC_CPU: Final = "process_cpu_seconds_total"
METRIC_PEAK_RSS: Final = "bft_process_peak_rss_bytes"

EXIT_OK: Final = 0
EXIT_NOTHING_COMMITTED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130


class BenchError(Exception):
    """The benchmark cannot run: bad options, a cluster that does not come up, an unreachable target."""


# Options.


@dataclass(frozen=True, slots=True)
class BenchOptions:
    nodes: int
    duration_s: float
    tx_size_bytes: int
    clients: int
    rate_per_s: float
    batch: int
    warmup_s: float
    targets: tuple[str, ...]
    home: Path | None
    json: bool

    @property
    def local(self) -> bool:
        return not self.targets


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bft bench` to the `bft` parser."""
    bench = commands.add_parser(
        "bench",
        help="drive load against a cluster and report throughput, latency, CPU and memory",
        description=(
            "Start a local cluster of N node processes on 127.0.0.1 (or use running nodes with --target), "
            "submit key-value put transactions of an exact size from concurrent clients with "
            '"wait": "commit", and report committed transactions per second, p50/p90/p99 '
            "submit-to-commit latency and each node's CPU and peak memory over the measured window."
        ),
    )
    bench.add_argument(
        "--nodes", type=int, default=DEFAULT_NODES, help=f"local nodes (default {DEFAULT_NODES})"
    )
    bench.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION_S, help="measured seconds (default 20)"
    )
    bench.add_argument(
        "--tx-size", type=int, default=DEFAULT_TX_SIZE_BYTES, help="bytes per transaction (default 256)"
    )
    bench.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS, help=f"concurrent clients (default {DEFAULT_CLIENTS})"
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="target transactions per second in total (default 0: unlimited)",
    )
    bench.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help=f"transactions per request (default {DEFAULT_BATCH})"
    )
    bench.add_argument(
        "--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds of load before the window (default 2)"
    )
    bench.add_argument(
        "--target",
        default="",
        metavar="URL[,URL...]",
        help="API URLs of a running cluster to drive instead of starting one (--nodes is then ignored)",
    )
    bench.add_argument(
        "--home",
        type=Path,
        default=None,
        help="data directory of the local cluster (default: a temporary one)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    bench.set_defaults(run=run_command)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """The checked options of `bft bench`; BenchError naming the first bad one."""
    targets = tuple(_normalize_url(u) for u in args.target.split(",") if u.strip())
    opts = BenchOptions(
        nodes=len(targets) if targets else args.nodes,
        duration_s=args.duration,
        tx_size_bytes=args.tx_size,
        clients=args.clients,
        rate_per_s=args.rate,
        batch=args.batch,
        warmup_s=args.warmup,
        targets=targets,
        home=args.home,
        json=args.json,
    )
    problems = [
        (opts.nodes < 1, "--nodes must be at least 1"),
        (not 0 < opts.duration_s < math.inf, "--duration must be a positive number of seconds"),
        (not 0 <= opts.warmup_s < math.inf, "--warmup must be a non-negative number of seconds"),
        (opts.clients < 1, "--clients must be at least 1"),
        (opts.batch < 1, "--batch must be at least 1"),
        (not 0 <= opts.rate_per_s < math.inf, "--rate must be a non-negative number (0: unlimited)"),
        (opts.home is not None and not opts.local, "--home and --target exclude each other"),
    ]
    for bad, message in problems:
        if bad:
            raise BenchError(message)
    check_tx_size(opts.tx_size_bytes)
    return opts


def _normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


# Transactions.

# Fixed widths keep the encoded overhead of every transaction of a run the same.
RUN_ID_HEX_CHARS: Final = 8
_CLIENT_DIGITS: Final = 4
_SEQ_DIGITS: Final = 10
_PAD_CHAR: Final = "x"


def new_run_id() -> str:
    return secrets.token_hex(RUN_ID_HEX_CHARS // 2)


def bench_key(run_id: str, client: int, seq: int) -> str:
    """The unique key of transaction `seq` of `client` in run `run_id`."""
    return f"bench-{run_id}-{client:0{_CLIENT_DIGITS}d}-{seq:0{_SEQ_DIGITS}d}"


def tx_size_limits() -> tuple[int, int]:
    """The smallest and largest encoded size of a bench put transaction, in bytes."""
    overhead = len(put_tx(bench_key("0" * RUN_ID_HEX_CHARS, 0, 0), ""))
    return overhead, min(MAX_TX_BYTES, overhead + MAX_VALUE_BYTES)


def check_tx_size(size_bytes: int) -> None:
    low, high = tx_size_limits()
    if size_bytes < low:
        raise BenchError(
            f"--tx-size {size_bytes} is too small: a put transaction with a bench key "
            f"takes at least {low} bytes"
        )
    if size_bytes > high:
        raise BenchError(
            f"--tx-size {size_bytes} is too large: the key-value ledger takes at most {high} bytes"
        )


def build_tx(run_id: str, client: int, seq: int, size_bytes: int) -> bytes:
    """A put transaction (`bft.app.kv.put_tx`) with a unique key whose encoding is exactly
    `size_bytes` long, the value padded to fit; BenchError if it cannot be that size."""
    key = bench_key(run_id, client, seq)
    pad = size_bytes - len(put_tx(key, ""))
    if pad < 0 or pad > MAX_VALUE_BYTES:
        check_tx_size(size_bytes)
        raise BenchError(f"key {key!r} does not fit a {size_bytes}-byte transaction")
    tx = put_tx(key, _PAD_CHAR * pad)
    assert len(tx) == size_bytes, f"built {len(tx)} bytes for a {size_bytes}-byte transaction"
    return tx


# Statistics.


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 < p <= 100) of ascending `sorted_values`; None if empty."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p90 and p99 of `latencies_s`, in milliseconds (None for each if there are none)."""
    ordered = sorted(latencies_s)
    found = {name: percentile(ordered, p) for name, p in (("p50", 50), ("p90", 90), ("p99", 99))}
    return {name: None if v is None else round(v * 1000, 3) for name, v in found.items()}


@dataclass(slots=True)
class Tally:
    submitted: int = 0
    committed: int = 0
    rejected: int = 0
    uncommitted: int = 0
    errors: int = 0
    mempool_full_retries: int = 0
    latencies_s: list[float] = field(default_factory=list)


class Recorder:
    """The outcomes of the load. Everything counts toward `total` (the live view); what happens in
    the window [window_start, window_end) also counts toward `window` (the report)."""

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.total = Tally()
        self.window = Tally()
        self.recent_latencies_s: deque[float] = deque(maxlen=RECENT_LATENCIES)
        self.first_error: str | None = None

    def in_window(self, at: float) -> bool:
        return self.window_start <= at < self.window_end

    def _tallies(self, at: float) -> tuple[Tally, ...]:
        return (self.total, self.window) if self.in_window(at) else (self.total,)

    def on_submitted(self, count: int, at: float) -> None:
        for tally in self._tallies(at):
            tally.submitted += count

    def on_committed(self, latency_s: float, at: float) -> None:
        self.recent_latencies_s.append(latency_s)
        for tally in self._tallies(at):
            tally.committed += 1
            tally.latencies_s.append(latency_s)

    def on_rejected(self, at: float) -> None:
        for tally in self._tallies(at):
            tally.rejected += 1

    def on_uncommitted(self, at: float) -> None:
        for tally in self._tallies(at):
            tally.uncommitted += 1

    def on_retry(self, count: int, at: float) -> None:
        for tally in self._tallies(at):
            tally.mempool_full_retries += count

    def on_error(self, message: str, at: float) -> None:
        if self.first_error is None:
            self.first_error = message
        for tally in self._tallies(at):
            tally.errors += 1

    def recent_p50_ms(self) -> float | None:
        p50 = percentile(sorted(self.recent_latencies_s), 50)
        return None if p50 is None else p50 * 1000

    def rate_per_s(self, now: float, started: float) -> float:
        """Committed per second: over the window once it has begun, over the warm-up before."""
        if now >= self.window_start and self.window_start > started:
            elapsed = min(now, self.window_end) - self.window_start
            return self.window.committed / elapsed if elapsed > 0 else 0.0
        elapsed = now - started
        return self.total.committed / elapsed if elapsed > 0 else 0.0


# Pacing.


class TokenBucket:
    """Paces callers to `rate_per_s` tokens per second with bursts of at most `burst` tokens.

    `reserve(n, now)` takes `n` tokens and returns how long the caller must wait before using
    them. The balance may go negative: a reservation beyond the tokens at hand queues behind the
    earlier ones, so concurrent callers share the rate in the order they asked.
    """

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError(f"a token bucket needs a positive rate and burst, not {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def reserve(self, n: float, now: float) -> float:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s


def bucket_for(rate_per_s: float, batch: int, now: float) -> TokenBucket | None:
    """The shared pacer of a run: None for an unlimited rate; else bursts of one batch or a tenth
    of a second of the rate, whichever is larger."""
    if rate_per_s <= 0:
        return None
    return TokenBucket(rate_per_s, max(float(batch), rate_per_s / 10), now)


class Backoff:
    """Delays that double from `first_s` up to `cap_s`; `reset` after a success."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._next_s = first_s

    def next(self) -> float:
        delay = self._next_s
        self._next_s = min(self.cap_s, self._next_s * 2)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s


# Node metrics.


@dataclass(frozen=True, slots=True)
class NodeSample:
    """One reading of a node's resource use; None where the node did not report it."""

    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    at: float = 0.0


def parse_metrics(text: str, at: float = 0.0) -> NodeSample:
    """`process_cpu_seconds_total` and `bft_process_peak_rss_bytes` from Prometheus text;
    None for a metric that is absent, or for both if the text does not parse."""
    from prometheus_client.parser import text_string_to_metric_families

    cpu_s: float | None = None
    peak: int | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == METRIC_CPU:
                    cpu_s = float(sample.value)
                elif sample.name == METRIC_PEAK_RSS:
                    peak = int(sample.value)
    except (ValueError, TypeError, IndexError, KeyError):
        return NodeSample(at=at)
    return NodeSample(cpu_s, peak, at)


def proc_sample(pid: int, at: float = 0.0) -> NodeSample:
    """The same figures from /proc for a local process (Linux); None where it cannot be read."""
    cpu_s: float | None = None
    peak: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); the text after ")" starts at field 3.
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return NodeSample(cpu_s, peak, at)


def merge_samples(preferred: NodeSample, fallback: NodeSample) -> NodeSample:
    """`preferred`, with each missing figure taken from `fallback`."""
    return NodeSample(
        preferred.cpu_s if preferred.cpu_s is not None else fallback.cpu_s,
        preferred.peak_rss_bytes if preferred.peak_rss_bytes is not None else fallback.peak_rss_bytes,
        preferred.at,
    )


def node_usage(node: int, api: str, start: NodeSample, end: NodeSample) -> dict[str, Any]:
    """The per-node entry of the report: CPU seconds and percent between two samples, peak RSS."""
    cpu_s: float | None = None
    cpu_percent: float | None = None
    if start.cpu_s is not None and end.cpu_s is not None:
        cpu_s = round(max(0.0, end.cpu_s - start.cpu_s), 3)
        interval_s = end.at - start.at
        cpu_percent = round(cpu_s / interval_s * 100, 1) if interval_s > 0 else None
    peaks = [s.peak_rss_bytes for s in (start, end) if s.peak_rss_bytes is not None]
    return {
        "node": node,
        "api": api,
        "cpu_s": cpu_s,
        "cpu_percent": cpu_percent,
        "peak_rss_bytes": max(peaks) if peaks else None,
    }


# The report.


@dataclass(frozen=True, slots=True)
class BenchReport:
    opts: BenchOptions
    window: Tally
    per_node: list[dict[str, Any]]
    # The first failed request of the run (warm-up included), for the operator.
    first_error: str | None = None

    @property
    def tx_per_s(self) -> float:
        return self.window.committed / self.opts.duration_s

    def to_json(self) -> dict[str, Any]:
        """The object `bft bench --json` prints (DESIGN.md, "Interfaces other programs rely on")."""
        return {
            "tx_per_s": round(self.tx_per_s, 2),
            "latency_ms": latency_summary_ms(self.window.latencies_s),
            "nodes": self.opts.nodes,
            "tx_size": self.opts.tx_size_bytes,
            "duration_s": self.opts.duration_s,
            "warmup_s": self.opts.warmup_s,
            "clients": self.opts.clients,
            "rate": self.opts.rate_per_s,
            "batch": self.opts.batch,
            "submitted": self.window.submitted,
            "committed": self.window.committed,
            "rejected": self.window.rejected,
            "uncommitted": self.window.uncommitted,
            "errors": self.window.errors,
            "mempool_full_retries": self.window.mempool_full_retries,
            "per_node": self.per_node,
            "target": "local" if self.opts.local else list(self.opts.targets),
        }


def report_table(report: BenchReport) -> Table:
    from rich.table import Table

    data = report.to_json()
    latency = data["latency_ms"]
    where = "local cluster" if report.opts.local else ", ".join(report.opts.targets)
    table = Table(title=f"bft bench — {data['nodes']} nodes ({where}), {data['duration_s']:g} s measured")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("committed tx/s", f"{data['tx_per_s']:.1f}"),
        ("latency p50 / p90 / p99 (ms)", " / ".join(_ms(latency[p]) for p in ("p50", "p90", "p99"))),
        ("tx size (bytes)", str(data["tx_size"])),
        ("clients x batch", f"{data['clients']} x {data['batch']}"),
        ("target rate (tx/s)", "unlimited" if not data["rate"] else f"{data['rate']:g}"),
        ("submitted / committed", f"{data['submitted']} / {data['committed']}"),
        ("rejected / uncommitted / errors", f"{data['rejected']} / {data['uncommitted']} / {data['errors']}"),
        ("mempool-full retries", str(data["mempool_full_retries"])),
    ]
    for entry in data["per_node"]:
        rows.append(
            (
                f"node {entry['node']} ({entry['api']}) CPU / peak RSS",
                f"{_optional(entry['cpu_s'], '{:.2f} s')} ({_optional(entry['cpu_percent'], '{:.0f}%')}) / "
                f"{_optional(_mib(entry['peak_rss_bytes']), '{:.1f} MiB')}",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


def _ms(value: float | None) -> str:
    return _optional(value, "{:.1f}")


def _mib(value: int | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def _optional(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


# Talking to nodes.


async def fetch_status(http: httpx.AsyncClient, api: str) -> dict[str, Any] | None:
    """The node's `/status`, or None if it does not answer with a JSON object."""
    import httpx

    try:
        response = await http.get(f"{api}/status", timeout=PROBE_TIMEOUT_S)
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


async def fetch_sample(http: httpx.AsyncClient, api: str, pid: int | None) -> NodeSample:
    """The node's resource figures from `/metrics`, completed from /proc for a local process."""
    import httpx
    import trio

    at = trio.current_time()
    try:
        response = await http.get(f"{api}/metrics", timeout=PROBE_TIMEOUT_S)
        sample = parse_metrics(response.text, at) if response.status_code == 200 else NodeSample(at=at)
    except httpx.HTTPError:
        sample = NodeSample(at=at)
    return sample if pid is None else merge_samples(sample, proc_sample(pid, at))


async def sample_all(
    http: httpx.AsyncClient, apis: Sequence[str], pids: Sequence[int | None]
) -> list[NodeSample]:
    import trio

    samples: list[NodeSample] = [NodeSample()] * len(apis)

    async def one(i: int) -> None:
        samples[i] = await fetch_sample(http, apis[i], pids[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(apis)):
            nursery.start_soon(one, i)
    return samples


# The load.


class Outcome(Protocol):
    """What the load needs of one `bft.client.SubmitResult`."""

    @property
    def status(self) -> str: ...
    @property
    def committed(self) -> bool: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def retry_after_s(self) -> float | None: ...


class Submitter(Protocol):
    """What the load needs of `bft.client.AsyncClient`."""

    async def submit(self, txs: Sequence[bytes], *, wait: Literal["commit"]) -> Sequence[Outcome]: ...


@dataclass(frozen=True, slots=True)
class ClientKit:
    """How the load opens a client for a node URL, and the exceptions of a failed request (after
    which a client backs off and tries again)."""

    open: Callable[[str], AbstractAsyncContextManager[Submitter]]
    errors: tuple[type[Exception], ...]


def default_kit() -> ClientKit:
    """The client of `bft.client`; its errors include `NodeUnavailable` and refusals (4xx/5xx)."""
    from bft.client import AsyncClient, ClientError

    def open_client(url: str) -> AbstractAsyncContextManager[Submitter]:
        return AsyncClient(url, timeout_s=REQUEST_TIMEOUT_S)

    return ClientKit(open_client, (ClientError,))


@dataclass(frozen=True, slots=True)
class LoadPlan:
    run_id: str
    tx_size_bytes: int
    batch: int
    stop_at: float
    errors: tuple[type[Exception], ...]


async def run_client(
    client_id: int,
    submitter: Submitter,
    plan: LoadPlan,
    recorder: Recorder,
    bucket: TokenBucket | None,
) -> None:
    """Submit batches with "wait": "commit" until `plan.stop_at`, one request at a time."""
    import trio

    seq = 0
    backoff = Backoff()
    # The transactions to (re)submit, each with the time it was first sent.
    pending: list[tuple[bytes, float]] = []
    while trio.current_time() < plan.stop_at:
        if not pending:
            txs = [build_tx(plan.run_id, client_id, seq + k, plan.tx_size_bytes) for k in range(plan.batch)]
            seq += plan.batch
            if bucket is not None:
                await trio.sleep(bucket.reserve(len(txs), trio.current_time()))
            sent_at = trio.current_time()
            recorder.on_submitted(len(txs), sent_at)
            pending = [(tx, sent_at) for tx in txs]
        try:
            results = await submitter.submit([tx for tx, _ in pending], wait="commit")
        except plan.errors as exc:
            # Whether the node took the batch is unknown; its keys are unique, so move on.
            recorder.on_error(str(exc), trio.current_time())
            pending = []
            await trio.sleep(backoff.next())
            continue
        pending = _settle(pending, results, recorder, trio.current_time())
        if pending:
            await trio.sleep(_retry_delay(backoff, results))
        else:
            backoff.reset()


def _retry_delay(backoff: Backoff, results: Sequence[Outcome]) -> float:
    """The back-off, stretched to the node's Retry-After hint (up to the cap)."""
    hints = [r.retry_after_s for r in results if r.retryable and r.retry_after_s is not None]
    delay = backoff.next()
    return max(delay, min(max(hints), backoff.cap_s)) if hints else delay


def _settle(
    pending: list[tuple[bytes, float]], results: Sequence[Outcome], recorder: Recorder, now: float
) -> list[tuple[bytes, float]]:
    """Record the outcome of each transaction of a request at `now`; the ones to submit again."""
    if len(results) != len(pending):
        recorder.on_error(f"{len(results)} results for {len(pending)} transactions", now)
        return []
    retry: list[tuple[bytes, float]] = []
    for (tx, first), result in zip(pending, results, strict=True):
        if result.committed:
            recorder.on_committed(now - first, now)
        elif result.retryable:
            retry.append((tx, first))
        elif result.status == "rejected":
            recorder.on_rejected(now)
        else:
            recorder.on_uncommitted(now)
    if retry:
        recorder.on_retry(len(retry), now)
    return retry


async def run_clients(
    opts: BenchOptions,
    apis: Sequence[str],
    plan: LoadPlan,
    recorder: Recorder,
    kit: ClientKit,
) -> None:
    """`opts.clients` client tasks, client c bound to node c mod n, sharing one pacer."""
    import trio

    bucket = bucket_for(opts.rate_per_s, opts.batch, trio.current_time())

    async def one(c: int) -> None:
        async with kit.open(apis[c % len(apis)]) as submitter:
            await run_client(c, submitter, plan, recorder, bucket)

    async with trio.open_nursery() as nursery:
        for c in range(opts.clients):
            nursery.start_soon(one, c)


# Progress.


@dataclass(slots=True)
class Progress:
    """What the live view shows; written by the load and the height poller, read by the view."""

    started: float
    recorder: Recorder
    apis: Sequence[str]
    heights: list[int | None]

    def phase(self, now: float) -> str:
        if now < self.recorder.window_start:
            return "warm-up"
        return "measuring" if now < self.recorder.window_end else "finishing"

    def line(self, now: float) -> str:
        total = self.recorder.total
        p50 = self.recorder.recent_p50_ms()
        heights = " ".join("-" if h is None else str(h) for h in self.heights)
        return (
            f"{now - self.started:6.1f} s {self.phase(now):9}  submitted {total.submitted}  "
            f"committed {total.committed}  {self.recorder.rate_per_s(now, self.started):.1f} tx/s  "
            f"p50 {_ms(p50)} ms  heights {heights}"
        )

    def panel(self, now: float) -> Table:
        from rich.table import Table

        table = Table(title="bft bench — Ctrl-C stops the run and every node it started")
        table.add_column("")
        table.add_column("", justify="right")
        total = self.recorder.total
        table.add_row("elapsed", f"{now - self.started:.1f} s ({self.phase(now)})")
        table.add_row("submitted", str(total.submitted))
        table.add_row("committed", str(total.committed))
        table.add_row("tx/s", f"{self.recorder.rate_per_s(now, self.started):.1f}")
        table.add_row("p50 (recent)", f"{_ms(self.recorder.recent_p50_ms())} ms")
        for i, (api, height) in enumerate(zip(self.apis, self.heights, strict=True)):
            table.add_row(f"node {i} height ({api})", "-" if height is None else str(height))
        return table


async def poll_heights(http: httpx.AsyncClient, progress: Progress) -> None:
    import trio

    while True:
        for i, api in enumerate(progress.apis):
            progress.heights[i] = _int_field(await fetch_status(http, api), "height")
        await trio.sleep(HEIGHT_POLL_S)


async def show_progress(progress: Progress, console: Console, live: bool) -> None:
    """A rich Live panel on `console`, or a plain line every few seconds; until cancelled."""
    import trio
    from rich.live import Live

    if not live:
        while True:
            await trio.sleep(PLAIN_PROGRESS_S)
            console.print(progress.line(trio.current_time()), highlight=False)
    now = trio.current_time()
    with Live(progress.panel(now), console=console, refresh_per_second=LIVE_REFRESH_PER_S) as view:
        while True:
            await trio.sleep(1 / LIVE_REFRESH_PER_S)
            view.update(progress.panel(trio.current_time()))


# The local cluster.


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_base_port(count: int, attempts: int = 200) -> int:
    """A base port P with P .. P+count-1 free on 127.0.0.1 now. Preferably below the kernel's
    ephemeral range, where the nodes' own outgoing connections cannot take a listen port."""
    low = _ephemeral_low()
    rng = random.Random()
    for attempt in range(attempts):
        if low - count > 20000 and attempt < attempts // 2:
            base = rng.randrange(20000, low - count)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOCALHOST, 0))
                base = s.getsockname()[1]
        if base + count <= 65535 and all(_port_is_free(base + k) for k in range(count)):
            return base
    raise BenchError(f"no run of {count} free ports on {LOCALHOST} in {attempts} attempts")


def prepare_home(home: Path, nodes: int) -> list[str]:
    """Write a testnet of `nodes` validators into `home` unless one is there; the API URLs."""
    from bft.node.config import load_genesis
    from bft.node.errors import NodeError
    from bft.node.testnet import write_testnet

    try:
        if not (home / "genesis.json").exists():
            write_testnet(nodes, home, free_base_port(2 * nodes))
        genesis = load_genesis(home / "genesis.json")
    except NodeError as exc:
        raise BenchError(str(exc)) from exc
    if len(genesis.validators) != nodes:
        raise BenchError(f"{home} holds a {len(genesis.validators)}-node testnet, not {nodes}")
    return [f"http://{v.api}" for v in genesis.validators]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def start_nodes(nursery: trio.Nursery, home: Path, nodes: int) -> list[trio.Process]:
    """One `bft node` process per node directory of `home`, owned by `nursery`: cancelling it
    stops them (SIGTERM, then SIGKILL past a deadline) and reaps them."""
    from bft.node.cluster import node_command, run_node_process

    processes: list[trio.Process] = []
    for i in range(nodes):
        node_home = home / f"node{i}"
        process = await nursery.start(run_node_process, node_command(node_home), node_home / "stderr.log")
        processes.append(process)
    return processes


async def wait_ready(
    http: httpx.AsyncClient,
    apis: Sequence[str],
    want_peers: int | None,
    processes: Sequence[trio.Process],
    home: Path | None,
    timeout_s: float,
) -> None:
    """Until every node answers `/status` (with `want_peers` peers, if given); BenchError if a
    process exits or the deadline passes."""
    import trio

    last: list[dict[str, Any] | None] = [None] * len(apis)
    with trio.move_on_after(timeout_s):
        for _ in range(int(timeout_s / READY_POLL_S) + 10):
            _check_alive(processes, home)
            last = [await fetch_status(http, api) for api in apis]
            peers = [_int_field(s, "peers") for s in last]
            if all(s is not None for s in last) and (
                want_peers is None or all((p or 0) >= want_peers for p in peers)
            ):
                return
            await trio.sleep(READY_POLL_S)
    seen = ", ".join(f"{api}: {_describe_status(status)}" for api, status in zip(apis, last, strict=True))
    raise BenchError(f"the cluster was not ready after {timeout_s:.0f} s ({seen})")


def _int_field(status: dict[str, Any] | None, name: str) -> int | None:
    value = None if status is None else status.get(name)
    return value if isinstance(value, int) else None


def _describe_status(status: dict[str, Any] | None) -> str:
    return "no answer" if status is None else f"{status.get('peers')} peers"


def _check_alive(processes: Sequence[trio.Process], home: Path | None) -> None:
    for i, process in enumerate(processes):
        if process.returncode is not None:
            detail = ""
            if home is not None:
                detail = (
                    f":\n{_tail(home / f'node{i}' / 'stderr.log')}\n{_tail(home / f'node{i}' / 'node.log')}"
                )
            raise BenchError(f"node {i} exited with {process.returncode} before the load started{detail}")


# The run.


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
    indices = [_int_field(s, "node") for s in statuses]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(show_progress, progress, console, live)
        nursery.start_soon(poll_heights, http, progress)
        nursery.start_soon(run_clients, opts, apis, plan, recorder, kit)
        await trio.sleep_until(window_start)
        first = await sample_all(http, apis, pids)
        await trio.sleep_until(window_end)
        last = await sample_all(http, apis, pids)
        nursery.cancel_scope.cancel()
    per_node = [node_usage(_or(indices[i], i), apis[i], first[i], last[i]) for i in range(len(apis))]
    return BenchReport(opts, recorder.window, per_node, recorder.first_error)


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
    assert home is not None
    apis = prepare_home(home, opts.nodes)
    console.print(f"starting {opts.nodes} nodes in {home}")
    return apis, await start_nodes(nursery, home, opts.nodes)


async def _cancel_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope, console: Console) -> None:
    async for signum in signals:
        console.print(f"{signal.Signals(signum).name}: stopping...")
        scope.cancel()
        return


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


def bench(
    opts: BenchOptions, console: Console, *, live: bool, kit: ClientKit | None = None
) -> BenchReport | None:
    """Run one benchmark with the client of `kit` (default: `bft.client`); None if interrupted.
    The local cluster's temporary directory is removed afterwards."""
    import trio

    kit = default_kit() if kit is None else kit
    temporary = opts.local and opts.home is None
    home = Path(tempfile.mkdtemp(prefix="bft-bench-")) if temporary else opts.home
    try:
        return trio.run(run_bench, opts, home, console, live, kit)
    finally:
        if temporary and home is not None:
            shutil.rmtree(home, ignore_errors=True)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
