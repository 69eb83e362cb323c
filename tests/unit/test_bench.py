"""The pure parts of `bft bench`: options, transactions of an exact size, percentiles, the
measured window, token-bucket pacing and back-off on a fake clock, metric parsing, the report's
JSON shape; the local cluster's testnet (`prepare_home`, files only); and the client loop against
fake clients on trio's mock clock (no sockets)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from bft.app.kv import MAX_TX_BYTES, Put, parse_tx
from bft.bench import add_command
from bft.bench.errors import BenchError
from bft.bench.load import ClientKit, LoadPlan, Submitter, run_client
from bft.bench.local import prepare_home
from bft.bench.options import BenchOptions, options_from_args
from bft.bench.pacing import Backoff, TokenBucket, bucket_for
from bft.bench.report import BenchReport, report_table
from bft.bench.stats import Recorder, Tally, latency_summary_ms, percentile
from bft.bench.txs import bench_key, build_tx, check_tx_size, tx_size_limits
from bft.bench.usage import (
    NodeSample,
    cpu_between,
    max_peak_rss_bytes,
    merge_samples,
    node_usage,
    parse_metrics,
    proc_sample,
    self_sample,
)
from bft.node.config import load_genesis, load_node_config

RUN = "0123abcd"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bft")
    add_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def options(**changes: Any) -> BenchOptions:
    base: dict[str, Any] = {
        "nodes": 4,
        "duration_s": 10.0,
        "tx_size_bytes": 256,
        "clients": 2,
        "rate_per_s": 0.0,
        "batch": 5,
        "warmup_s": 0.0,
        "targets": (),
        "home": None,
        "json": True,
    }
    base.update(changes)
    return BenchOptions(**base)


# Options.


def test_defaults_are_the_documented_ones() -> None:
    opts = options_from_args(parse())
    assert (opts.nodes, opts.duration_s, opts.tx_size_bytes, opts.rate_per_s) == (4, 20.0, 256, 0.0)
    assert opts.clients >= 1 and opts.batch >= 1 and opts.warmup_s >= 0
    assert opts.local and opts.home is None and not opts.json


def test_targets_are_normalized_and_set_the_node_count() -> None:
    opts = options_from_args(parse("--target", "127.0.0.1:26601, http://127.0.0.1:26603/", "--nodes", "7"))
    assert opts.targets == ("http://127.0.0.1:26601", "http://127.0.0.1:26603")
    assert opts.nodes == 2 and not opts.local
    # A running cluster's commit rule is its genesis', which the bench does not read.
    assert opts.commit_chain is None


@pytest.mark.parametrize(("argv", "commit_chain"), [((), 3), (("--commit-chain", "2"), 2)])
def test_the_local_cluster_runs_the_commit_rule_asked_for(argv: tuple[str, ...], commit_chain: int) -> None:
    assert options_from_args(parse(*argv)).commit_chain == commit_chain


def test_consensus_only_runs_the_no_op_application_locally() -> None:
    assert options_from_args(parse()).app == "kv"
    opts = options_from_args(parse("--consensus-only"))
    assert opts.consensus_only and opts.app == "noop"
    # What a running cluster executes is in its nodes' configs, which the bench does not read.
    assert options_from_args(parse("--target", "127.0.0.1:26601")).app is None


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (("--nodes", "0"), "--nodes"),
        (("--duration", "0"), "--duration"),
        (("--duration", "nan"), "--duration"),
        (("--warmup", "-1"), "--warmup"),
        (("--clients", "0"), "--clients"),
        (("--batch", "0"), "--batch"),
        (("--rate", "-5"), "--rate"),
        (("--tx-size", "10"), "too small"),
        (("--tx-size", str(MAX_TX_BYTES + 1)), "too large"),
        (("--target", "127.0.0.1:1", "--home", "/tmp/x"), "--home"),
        (
            ("--target", "127.0.0.1:1", "--commit-chain", "2"),
            "--commit-chain and --target exclude each other",
        ),
        (
            ("--target", "127.0.0.1:1", "--consensus-only"),
            "--consensus-only and --target exclude each other",
        ),
    ],
)
def test_bad_options_are_refused_with_the_reason(argv: tuple[str, ...], complaint: str) -> None:
    with pytest.raises(BenchError, match=complaint):
        options_from_args(parse(*argv))


# The local cluster's testnet.


def test_the_local_testnet_has_the_commit_rule_asked_for_and_keeps_it(tmp_path: Path) -> None:
    apis = prepare_home(tmp_path, 4, 2)
    genesis = load_genesis(tmp_path / "genesis.json")
    assert genesis.commit_chain == 2
    assert apis == [f"http://{v.api}" for v in genesis.validators]
    assert prepare_home(tmp_path, 4, 2) == apis  # the same testnet, not a new one
    with pytest.raises(BenchError, match="holds a testnet of commit chain 2, not 3"):
        prepare_home(tmp_path, 4, 3)


def test_the_consensus_only_testnet_runs_the_no_op_application_on_every_node(tmp_path: Path) -> None:
    from bft.app.kv import KeyValueLedger
    from bft.app.noop import NOOP_FACTORY, NoopApplication
    from bft.node.runtime import load_application

    prepare_home(tmp_path / "noop", 4, 3, "noop")
    for i in range(4):
        config = load_node_config(tmp_path / "noop" / f"node{i}")
        assert config.app_factory == NOOP_FACTORY
        app = load_application(config, load_genesis(config.genesis_file))
        assert isinstance(app, NoopApplication)
        app.close()
    prepare_home(tmp_path / "kv", 4, 3, "kv")
    kv_config = load_node_config(tmp_path / "kv" / "node0")
    assert kv_config.app_factory == ""
    kv_app = load_application(kv_config, load_genesis(kv_config.genesis_file))
    assert isinstance(kv_app, KeyValueLedger)
    kv_app.close()
    # A home is reused only for the application it was written for.
    assert prepare_home(tmp_path / "noop", 4, 3, "noop")
    with pytest.raises(BenchError, match="pass --consensus-only"):
        prepare_home(tmp_path / "noop", 4, 3, "kv")
    with pytest.raises(BenchError, match="omit --consensus-only"):
        prepare_home(tmp_path / "kv", 4, 3, "noop")
    with pytest.raises(BenchError, match="unknown application 'ledger'"):
        prepare_home(tmp_path / "other", 4, 3, "ledger")


# Transactions.


@pytest.mark.parametrize("size", [tx_size_limits()[0], 100, 128, 256, 1000, 4096, tx_size_limits()[1]])
def test_a_transaction_is_a_valid_put_of_exactly_the_size(size: int) -> None:
    tx = build_tx(RUN, 3, 41, size)
    assert len(tx) == size
    op = parse_tx(tx)
    assert isinstance(op, Put), op
    assert op.key == bench_key(RUN, 3, 41)


def test_keys_are_unique_across_clients_and_sequence_numbers() -> None:
    txs = {build_tx(RUN, c, seq, 128) for c in range(5) for seq in range(200)}
    keys = {bench_key(RUN, c, seq) for c in range(5) for seq in range(200)}
    assert len(txs) == len(keys) == 1000
    assert all(k.startswith(f"bench-{RUN}-") for k in keys)


def test_sizes_too_small_or_too_large_are_refused_clearly() -> None:
    low, high = tx_size_limits()
    assert 40 < low < 100 and high <= MAX_TX_BYTES
    check_tx_size(low)
    check_tx_size(high)
    with pytest.raises(BenchError, match=f"at least {low} bytes"):
        check_tx_size(low - 1)
    with pytest.raises(BenchError, match="too small"):
        build_tx(RUN, 0, 0, low - 1)
    with pytest.raises(BenchError, match="too large"):
        build_tx(RUN, 0, 0, high + 1)


# Percentiles and the window.


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    assert [percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], p) for p in (50, 90, 99)] == [
        5.0,
        9.0,
        10.0,
    ]
    assert percentile([7.0], 1) == percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    for bad in (0, -1, 101):
        with pytest.raises(ValueError):
            percentile([1.0], bad)


def test_latency_summary_is_ordered_milliseconds_of_unsorted_input() -> None:
    summary = latency_summary_ms([0.3, 0.001, 0.2, 0.05, 0.9, 0.1, 0.12, 0.11, 0.13, 0.14])
    assert set(summary) == {"p50", "p90", "p99"}
    assert summary == {"p50": 120.0, "p90": 300.0, "p99": 900.0}
    assert latency_summary_ms([]) == {"p50": None, "p90": None, "p99": None}


def test_only_what_happens_inside_the_window_is_reported() -> None:
    recorder = Recorder(window_start=10.0, window_end=20.0)
    for at in (9.99, 10.0, 15.0, 19.99, 20.0):
        recorder.on_submitted(2, at)
        recorder.on_committed(0.5, at)
    recorder.on_rejected(5.0)
    recorder.on_rejected(12.0)
    recorder.on_retry(3, 11.0)
    recorder.on_error("boom", 1.0)
    recorder.on_error("later", 25.0)
    recorder.on_uncommitted(19.0)
    assert (recorder.total.submitted, recorder.total.committed) == (10, 5)
    assert (recorder.window.submitted, recorder.window.committed) == (6, 3)
    assert recorder.window.latencies_s == [0.5, 0.5, 0.5]
    assert (recorder.window.rejected, recorder.window.mempool_full_retries) == (1, 3)
    assert (recorder.window.errors, recorder.total.errors, recorder.first_error) == (0, 2, "boom")
    assert recorder.window.uncommitted == 1
    # Over the window once it has begun; over everything since the start before.
    assert recorder.rate_per_s(now=15.0, started=0.0) == pytest.approx(3 / 5)
    assert recorder.rate_per_s(now=30.0, started=0.0) == pytest.approx(3 / 10)
    assert recorder.rate_per_s(now=5.0, started=0.0) == pytest.approx(5 / 5)
    assert recorder.recent_p50_ms() == pytest.approx(500.0)


# Pacing.


def test_token_bucket_paces_to_the_rate_on_a_fake_clock() -> None:
    rate, batch = 200.0, 10
    now = 0.0
    bucket = bucket_for(rate, batch, now)
    assert bucket is not None and bucket.burst == pytest.approx(20.0)
    granted = 0
    for _ in range(10_000):
        wait = bucket.reserve(batch, now)
        assert wait >= 0
        now += wait
        if now > 10.0:
            break
        granted += batch
    # 10 s at 200/s, plus the initial burst.
    assert 2000 <= granted <= 2000 + bucket.burst + batch


def test_token_bucket_queues_concurrent_reservations_in_order() -> None:
    bucket = TokenBucket(rate_per_s=100.0, burst=10.0, now=0.0)
    waits = [bucket.reserve(10, 0.0) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # Idle time refills the bucket, but never beyond the burst.
    assert bucket.reserve(10, 100.0) == 0.0
    assert bucket.reserve(10, 100.0) == pytest.approx(0.1)


def test_unlimited_rate_has_no_bucket_and_bad_buckets_are_refused() -> None:
    assert bucket_for(0.0, 10, 0.0) is None
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        TokenBucket(1.0, 0.0, 0.0)


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    backoff = Backoff(first_s=0.05, cap_s=0.3)
    assert [backoff.next() for _ in range(5)] == pytest.approx([0.05, 0.1, 0.2, 0.3, 0.3])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.05)


# Metrics.

SAMPLE_METRICS = """\
# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 613.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.3588864e+07
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# HELP bft_process_peak_rss_bytes Peak resident set size of the node process.
# TYPE bft_process_peak_rss_bytes gauge
bft_process_peak_rss_bytes 5.5e+07
"""


def test_metrics_are_read_from_prometheus_text() -> None:
    sample = parse_metrics(SAMPLE_METRICS, at=3.0)
    assert sample == NodeSample(cpu_s=12.5, peak_rss_bytes=55_000_000, at=3.0)


def test_missing_or_garbled_metrics_are_none() -> None:
    without_peak = SAMPLE_METRICS.split("# HELP bft_process_peak_rss_bytes")[0]
    assert parse_metrics(without_peak) == NodeSample(cpu_s=12.5, peak_rss_bytes=None)
    assert parse_metrics("") == NodeSample()
    assert parse_metrics("this is { not prometheus\n") == NodeSample()


def test_node_usage_is_the_delta_over_the_interval() -> None:
    start = NodeSample(cpu_s=10.0, peak_rss_bytes=40_000_000, at=100.0)
    end = NodeSample(cpu_s=15.0, peak_rss_bytes=50_000_000, at=110.0)
    usage = node_usage(2, "http://127.0.0.1:1", start, end)
    assert usage == {
        "node": 2,
        "api": "http://127.0.0.1:1",
        "cpu_s": 5.0,
        "cpu_percent": 50.0,
        "peak_rss_bytes": 50_000_000,
    }
    unknown = node_usage(0, "u", NodeSample(at=1.0), NodeSample(at=2.0))
    assert (unknown["cpu_s"], unknown["cpu_percent"], unknown["peak_rss_bytes"]) == (None, None, None)


def test_a_missing_metric_is_completed_from_the_fallback() -> None:
    merged = merge_samples(NodeSample(cpu_s=1.0, at=5.0), NodeSample(cpu_s=9.0, peak_rss_bytes=7, at=6.0))
    assert merged == NodeSample(cpu_s=1.0, peak_rss_bytes=7, at=5.0)


def test_cpu_between_two_readings_is_seconds_and_percent_of_one_core() -> None:
    assert cpu_between(NodeSample(cpu_s=2.0, at=10.0), NodeSample(cpu_s=3.5, at=15.0)) == (1.5, 30.0)
    assert cpu_between(NodeSample(at=10.0), NodeSample(cpu_s=3.5, at=15.0)) == (None, None)
    assert cpu_between(NodeSample(cpu_s=2.0, at=10.0), NodeSample(cpu_s=2.0, at=10.0)) == (0.0, None)


def test_self_sample_counts_this_process_cpu() -> None:
    first = self_sample(at=1.0)
    assert first.cpu_s is not None
    while time.process_time() - first.cpu_s < 0.02:
        sum(range(10_000))
    cpu_s, _ = cpu_between(first, self_sample(at=2.0))
    assert cpu_s is not None and cpu_s >= 0.02
    assert first.peak_rss_bytes is None and first.at == 1.0


def test_max_node_rss_is_the_largest_peak_reported() -> None:
    entries: list[dict[str, Any]] = [
        {"peak_rss_bytes": 5},
        {"peak_rss_bytes": None},
        {"peak_rss_bytes": 9},
        {},
    ]
    assert max_peak_rss_bytes(entries) == 9
    assert max_peak_rss_bytes([{"peak_rss_bytes": None}]) is None
    assert max_peak_rss_bytes([]) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_proc_sample_reads_this_process() -> None:
    sample = proc_sample(os.getpid())
    assert sample.cpu_s is not None and sample.cpu_s > 0
    assert sample.peak_rss_bytes is not None and sample.peak_rss_bytes > 1_000_000
    assert proc_sample(2**22 + 12345) == NodeSample()


# The report.

REPORT_KEYS = {
    "tx_per_s",
    "latency_ms",
    "nodes",
    "tx_size",
    "duration_s",
    "warmup_s",
    "clients",
    "rate",
    "batch",
    "submitted",
    "committed",
    "rejected",
    "uncommitted",
    "errors",
    "mempool_full_retries",
    "per_node",
    "target",
    "commit_chain",
    "quorum_store",
    "leader_reputation",
    "app",
    "body",
    "load_cpu_s",
    "load_cpu_percent",
    "max_node_rss_bytes",
}


def test_report_json_shape() -> None:
    window = Tally(submitted=60, committed=50, rejected=1, mempool_full_retries=4, latencies_s=[0.1] * 50)
    per_node = [
        node_usage(i, f"http://127.0.0.1:{i}", NodeSample(1.0, 1, 0.0), NodeSample(2.0, 2 + 10 * i, 1.0))
        for i in range(4)
    ]
    report = BenchReport(options(duration_s=10.0), window, per_node, load_cpu_s=2.5, load_cpu_percent=25.0)
    data = json.loads(json.dumps(report.to_json()))
    assert set(data) == REPORT_KEYS
    assert (data["app"], data["load_cpu_s"], data["load_cpu_percent"]) == ("kv", 2.5, 25.0)
    assert data["max_node_rss_bytes"] == 32
    assert data["tx_per_s"] == 5.0
    assert data["latency_ms"] == {"p50": 100.0, "p90": 100.0, "p99": 100.0}
    assert (data["nodes"], data["tx_size"], data["duration_s"], data["target"]) == (4, 256, 10.0, "local")
    assert data["commit_chain"] == 3
    assert (data["submitted"], data["committed"], data["rejected"], data["mempool_full_retries"]) == (
        60,
        50,
        1,
        4,
    )
    assert [set(n) for n in data["per_node"]] == [
        {"node", "api", "cpu_s", "cpu_percent", "peak_rss_bytes"}
    ] * 4
    remote_opts = options(targets=("http://a:1", "http://b:2"), nodes=2, commit_chain=None)
    remote = BenchReport(remote_opts, Tally(), [])
    assert remote.to_json()["target"] == ["http://a:1", "http://b:2"]
    assert remote.to_json()["latency_ms"] == {"p50": None, "p90": None, "p99": None}
    assert remote.to_json()["commit_chain"] is None
    assert remote.to_json()["app"] is None
    assert remote.to_json()["load_cpu_percent"] is remote.to_json()["max_node_rss_bytes"] is None
    assert report_table(remote).row_count > 0
    noop = BenchReport(options(consensus_only=True), window, per_node, load_cpu_s=2.5, load_cpu_percent=25.0)
    assert noop.to_json()["app"] == "noop"
    table = _rendered(report_table(noop))
    assert "no-op (--consensus-only)" in table
    assert "load generator CPU" in table and "2.50 s (25%)" in table
    assert "max node peak RSS" in table


def _rendered(table: Any) -> str:
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


# The client loop, against fake clients on the mock clock.


@dataclass(frozen=True)
class FakeResult:
    status: str
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def committed(self) -> bool:
        return self.status == "committed"

    @property
    def retryable(self) -> bool:
        return self.error == "mempool full"


class FakeNode:
    """Commits after `latency_s`; refuses the first `full_first` txs with "mempool full"."""

    def __init__(self, latency_s: float = 0.1, full_first: int = 0, fail_first: int = 0) -> None:
        self.latency_s = latency_s
        self.full_left = full_first
        self.fail_left = fail_first
        self.seen: list[bytes] = []

    async def submit(self, txs: Sequence[bytes], *, wait: str) -> list[FakeResult]:
        assert wait == "commit"
        await trio.sleep(self.latency_s)
        if self.fail_left:
            self.fail_left -= 1
            raise ConnectionError("node down")
        self.seen.extend(txs)
        results = []
        for _ in txs:
            if self.full_left:
                self.full_left -= 1
                results.append(FakeResult("rejected", "mempool full", 0.2))
            else:
                results.append(FakeResult("committed"))
        return results


def run_on_mock_clock(node: FakeNode, recorder: Recorder, plan: LoadPlan, bucket: TokenBucket | None) -> None:
    async def main() -> None:
        await run_client(1, node, plan, recorder, bucket)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def plan(stop_at: float, batch: int = 5) -> LoadPlan:
    return LoadPlan(RUN, 128, batch, stop_at, (ConnectionError,))


def test_client_measures_submit_to_commit_latency() -> None:
    node = FakeNode(latency_s=0.125)
    recorder = Recorder(0.0, 1.0)
    run_on_mock_clock(node, recorder, plan(stop_at=1.0), None)
    # One request at a time, 0.125 s each: eight requests of five.
    assert recorder.total.submitted == recorder.total.committed == 40
    assert recorder.total.latencies_s == pytest.approx([0.125] * 40)
    # The last request commits at 1.0 s, the end of the window: it is not counted there.
    assert recorder.window.latencies_s == pytest.approx([0.125] * 35)
    assert len(set(node.seen)) == 40 and all(len(tx) == 128 for tx in node.seen)


def test_client_retries_mempool_full_with_the_same_bytes_and_counts_from_the_first_send() -> None:
    node = FakeNode(latency_s=0.1, full_first=3)
    recorder = Recorder(0.0, 10.0)
    run_on_mock_clock(node, recorder, plan(stop_at=0.5), None)
    assert recorder.total.mempool_full_retries == 3
    retried = node.seen[:3]
    assert node.seen[5:8] == retried, "the refused transactions are submitted again"
    # First batch: two commit at 0.1 s; three wait for the Retry-After hint (0.2 s) and commit at 0.4 s.
    assert recorder.total.latencies_s[:5] == pytest.approx([0.1, 0.1, 0.4, 0.4, 0.4])
    # Then a second batch of five goes out at 0.4 s and commits.
    assert recorder.total.submitted == recorder.total.committed == 10


def test_client_backs_off_after_a_failed_request_and_goes_on() -> None:
    node = FakeNode(latency_s=0.1, fail_first=2)
    recorder = Recorder(0.0, 10.0)
    run_on_mock_clock(node, recorder, plan(stop_at=2.0), None)
    assert recorder.total.errors == 2 and recorder.first_error == "node down"
    assert recorder.total.committed > 0
    assert recorder.total.submitted == recorder.total.committed + 2 * 5


def test_client_paces_to_the_token_bucket() -> None:
    node = FakeNode(latency_s=0.001)
    recorder = Recorder(0.0, 100.0)
    bucket = TokenBucket(rate_per_s=100.0, burst=5.0, now=0.0)
    run_on_mock_clock(node, recorder, plan(stop_at=5.0), bucket)
    assert 500 <= recorder.total.submitted <= 510


# The real client of bft.client fits the load's interface.


def test_the_load_drives_bft_client_async_client() -> None:
    from bft.client import AsyncClient, ClientError

    requests: list[dict[str, Any]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(0.1)
        body = json.loads(request.content)
        requests.append(body)
        results = [
            {"hash": hashlib.sha256(base64.b64decode(tx)).hexdigest(), "status": "committed", "height": 1}
            for tx in body["txs"]
        ]
        return httpx.Response(200, json={"results": results})

    @asynccontextmanager
    async def open_client(url: str) -> AsyncIterator[Submitter]:
        async with AsyncClient(url, transport=httpx.MockTransport(handler)) as client:
            yield client

    kit = ClientKit(open_client, (ClientError,))
    recorder = Recorder(0.0, 10.0)

    async def main() -> None:
        opener: AbstractAsyncContextManager[Submitter] = kit.open("http://127.0.0.1:9")
        async with opener as submitter:
            await run_client(0, submitter, plan(stop_at=0.25, batch=3), recorder, None)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert [(r["wait"], len(r["txs"])) for r in requests] == [("commit", 3)] * 3
    assert recorder.total.committed == 9
    assert recorder.total.latencies_s == pytest.approx([0.1] * 9)
