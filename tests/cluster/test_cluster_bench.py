"""`bft bench` as a user runs it: a local 4-node cluster that it starts, loads, measures and
stops (one JSON object on stdout, no process left behind, its temporary directory removed), the
same figures from a running cluster with --target, and Ctrl-C in the middle of a run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import STOP_TIMEOUT_S, MakeCluster, pids_with_cmdline_containing, tail, wait_until

BENCH_TIMEOUT_S = 120.0
# A run that got SIGINT stops its nodes (SIGTERM, SIGKILL past 10 s) and exits within this.
INTERRUPTED_EXIT_S = 20.0

REQUIRED_KEYS = {
    "tx_per_s",
    "latency_ms",
    "nodes",
    "tx_size",
    "duration_s",
    "clients",
    "rate",
    "submitted",
    "committed",
    "rejected",
    "mempool_full_retries",
    "per_node",
    "target",
    "app",
    "load_cpu_percent",
    "max_node_rss_bytes",
}
PER_NODE_KEYS = {"node", "api", "cpu_s", "cpu_percent", "peak_rss_bytes"}


@pytest.fixture
def bench_tmp(tmp_path: Path) -> Iterator[Path]:
    """TMPDIR of the `bft bench` under test, so that its temporary cluster lives under tmp_path;
    any process still running from there at teardown is killed (by pid) and fails the test."""
    root = tmp_path / "tmp"
    root.mkdir()
    yield root
    leftovers = _node_processes(root)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if leftovers:
        pytest.fail(f"processes left running from {root}: {leftovers}", pytrace=False)


def _node_processes(root: Path) -> list[int]:
    return [pid for pid in pids_with_cmdline_containing(str(root)) if _is_bft_node(pid)]


def _is_bft_node(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"bft" in cmdline and b"node" in cmdline


def _bench(args: list[str], tmpdir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bft", "bench", *args],
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        check=False,
        env={**os.environ, "TMPDIR": str(tmpdir)},
        stdin=subprocess.DEVNULL,
    )


def _report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, detail
    try:
        # Nothing but the one object on stdout.
        report = json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"stdout is not one JSON object ({exc}); {detail}") from None
    assert isinstance(report, dict), detail
    return report


def _check_figures(report: dict[str, Any], nodes: int, tx_size: int, duration_s: float) -> None:
    assert set(report) >= REQUIRED_KEYS, f"missing keys {REQUIRED_KEYS - set(report)}: {report}"
    assert (report["nodes"], report["tx_size"], report["duration_s"]) == (nodes, tx_size, duration_s), report
    assert report["committed"] > 0 and report["tx_per_s"] > 0, report
    assert report["tx_per_s"] == pytest.approx(report["committed"] / duration_s, rel=0.01), report
    latency = report["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"], latency
    assert len(report["per_node"]) == nodes, report["per_node"]
    for entry in report["per_node"]:
        assert set(entry) >= PER_NODE_KEYS, entry
        assert entry["cpu_s"] is None or entry["cpu_s"] >= 0, entry
        assert entry["peak_rss_bytes"] is None or entry["peak_rss_bytes"] > 0, entry
    peaks = [e["peak_rss_bytes"] for e in report["per_node"] if e["peak_rss_bytes"] is not None]
    assert report["max_node_rss_bytes"] == (max(peaks) if peaks else None), report
    # The load generator is this machine's bench process: its CPU is always known.
    assert report["load_cpu_percent"] is not None and report["load_cpu_percent"] > 0, report


def test_bench_runs_a_local_cluster_and_leaves_nothing_behind(bench_tmp: Path) -> None:
    result = _bench(["--nodes", "4", "--duration", "3", "--tx-size", "128", "--json"], bench_tmp)
    report = _report(result)
    print(json.dumps(report, indent=1))
    _check_figures(report, nodes=4, tx_size=128, duration_s=3.0)
    assert (report["target"], report["app"]) == ("local", "kv")
    # Locally the node processes are known: CPU and memory are always there.
    assert all(e["cpu_s"] is not None and e["peak_rss_bytes"] is not None for e in report["per_node"])
    assert not _node_processes(bench_tmp), "node processes left running after bft bench exited"
    assert not list(bench_tmp.iterdir()), f"temporary files left behind: {list(bench_tmp.iterdir())}"


def test_consensus_only_runs_the_no_op_application_on_every_node(bench_tmp: Path) -> None:
    # Under bench_tmp, so that its fixture kills (and fails on) any node left running.
    home = bench_tmp / "home"
    args = ["--duration", "2", "--warmup", "1", "--tx-size", "128", "--consensus-only", "--home", str(home)]
    report = _report(_bench([*args, "--json"], bench_tmp))
    _check_figures(report, nodes=4, tx_size=128, duration_s=2.0)
    assert report["app"] == "noop"
    for i in range(4):
        data = home / f"node{i}" / "data"
        found = sorted(p.name for p in data.iterdir())
        assert "noop-app.state" in found and "app.sqlite" not in found, found
    assert not _node_processes(bench_tmp), "node processes left running after bft bench exited"


def test_bench_drives_a_running_cluster_with_target(make_cluster: MakeCluster, bench_tmp: Path) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 1, 30.0, "every node's first commit")
    targets = ",".join(f"127.0.0.1:{node.api_port}" for node in cluster.procs[:2])
    args = ["--target", targets, "--duration", "2", "--warmup", "1", "--tx-size", "200", "--clients", "4"]
    report = _report(_bench([*args, "--json"], bench_tmp))
    _check_figures(report, nodes=2, tx_size=200, duration_s=2.0)
    assert report["target"] == [f"http://127.0.0.1:{node.api_port}" for node in cluster.procs[:2]]
    assert report["app"] is None
    assert [e["node"] for e in report["per_node"]] == [0, 1]
    cluster.check_alive()


def test_too_small_a_transaction_is_refused_before_anything_starts(bench_tmp: Path) -> None:
    result = _bench(["--tx-size", "20", "--json"], bench_tmp)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "--tx-size 20 is too small" in result.stderr and "at least" in result.stderr
    assert not _node_processes(bench_tmp)


def test_ctrl_c_stops_the_run_and_every_node(bench_tmp: Path, tmp_path: Path) -> None:
    output = tmp_path / "bench.out"
    with output.open("wb") as out:
        bench = subprocess.Popen(
            [sys.executable, "-m", "bft", "bench", "--duration", "60", "--json"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(bench_tmp)},
        )
        try:
            wait_until(
                lambda: len(_node_processes(bench_tmp)) == 4 and b"cluster ready" in output.read_bytes(),
                60.0,
                "bft bench to start 4 nodes and report the cluster ready",
                diagnose=lambda: f"exit {bench.poll()}; output:\n{tail(output, 30)}",
            )
            bench.send_signal(signal.SIGINT)
            started = time.monotonic()
            code = bench.wait(timeout=INTERRUPTED_EXIT_S)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait(timeout=STOP_TIMEOUT_S)
    assert code == 130, f"exit {code} after SIGINT; output:\n{tail(output, 30)}"
    assert time.monotonic() - started < INTERRUPTED_EXIT_S
    assert not _node_processes(bench_tmp), "node processes left running after SIGINT"
    assert not list(bench_tmp.iterdir()), f"temporary files left behind: {list(bench_tmp.iterdir())}"
