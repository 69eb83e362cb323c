"""Honest throughput with and without hostile connections against one node, measured side by side.

Run: python bench/hostile_figures.py [--connections 1000] [--rounds 3] [--duration 20] [--nice 19]
         [--kinds preauth,slow-body,idle-sse] [--base-port 29600]
Starts a 4-node cluster (`bft node` processes on 127.0.0.1 in a temporary directory), then runs
`bft bench --target <every node's API>` `--rounds` times in each condition, alternating the order
(quiet, hostile, hostile, quiet, ...) so that drift on a shared machine hits both alike. In the
hostile runs `bft attack hostile` holds `--connections` connections against node 0 (pre-auth
churn on its p2p port, slow request bodies and idle event streams on its API, from 8 loopback
source addresses), from before the bench starts until after it ends. Prints each run, the median
of each condition, their ratio, and node 0's peak RSS. Stops every process it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cluster_figures import status, wait_for

NODES = 4
# The attack's connections are all open (and churning) before the bench's warm-up starts.
ATTACK_LEAD_S = 5.0
WARMUP_S = 2.0


def bft(*args: str) -> list[str]:
    return [sys.executable, "-m", "bft", *args]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid: int) -> int:
    """User and system clock ticks of process `pid` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def run_bench(
    urls: list[str], duration_s: float, node0: subprocess.Popen[bytes]
) -> tuple[dict[str, Any], int]:
    """One `bft bench` over `urls`: its JSON report and node 0's peak RSS (KiB) meanwhile."""
    cmd = bft(
        "bench",
        "--target",
        ",".join(urls),
        "--duration",
        str(duration_s),
        "--warmup",
        str(WARMUP_S),
        "--json",
    )
    bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    peak = 0
    deadline = time.monotonic() + duration_s + 120
    while bench.poll() is None and time.monotonic() < deadline:
        peak = max(peak, rss_kib(node0.pid))
        time.sleep(0.5)
    out, _ = bench.communicate(timeout=30)
    if bench.returncode != 0:
        raise SystemExit(f"bft bench failed with exit code {bench.returncode}")
    report: dict[str, Any] = json.loads(out)
    return report, peak


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--kinds", default="preauth,slow-body,idle-sse")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--base-port", type=int, default=29600)
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the attacker at this niceness (19: it gets only CPU the cluster leaves idle, as an "
        "attacker on another machine would take none of the cluster's)",
    )
    args = parser.parse_args()
    p2p = [args.base_port + 2 * i for i in range(NODES)]
    api = [port + 1 for port in p2p]
    urls = [f"http://127.0.0.1:{port}" for port in api]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        testnet = bft(
            "testnet", "--nodes", str(NODES), "--out", str(home), "--base-port", str(args.base_port)
        )
        subprocess.run(testnet, check=True, capture_output=True)
        procs = [
            subprocess.Popen(
                bft("node", "--home", str(home / f"node{i}")),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(NODES)
        ]
        attack: subprocess.Popen[bytes] | None = None
        runs: dict[str, list[float]] = {"quiet": [], "hostile": []}
        try:
            wait_for(
                lambda: all((s := status(p)) and s["peers"] == NODES - 1 and s["height"] >= 1 for p in api),
                60,
                "a connected, committing cluster",
            )
            for round_ in range(args.rounds):
                order = ["quiet", "hostile"] if round_ % 2 == 0 else ["hostile", "quiet"]
                for condition in order:
                    attack_out = ""
                    if condition == "hostile":
                        attack = subprocess.Popen(
                            [
                                "nice",
                                "-n",
                                str(args.nice),
                                *bft(
                                    "attack",
                                    "hostile",
                                    "--p2p",
                                    f"127.0.0.1:{p2p[0]}",
                                    "--api",
                                    f"127.0.0.1:{api[0]}",
                                    "--kinds",
                                    args.kinds,
                                    "--connections",
                                    str(args.connections),
                                    "--sources",
                                    "8",
                                    "--duration",
                                    str(ATTACK_LEAD_S + WARMUP_S + args.duration + 60),
                                    "--json",
                                ),
                            ],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL,
                        )
                        time.sleep(ATTACK_LEAD_S)
                    started, ticks = time.monotonic(), cpu_ticks(attack.pid) if attack is not None else 0
                    report, peak_kib = run_bench(urls, args.duration, procs[0])
                    attack_cpu = (
                        (cpu_ticks(attack.pid) - ticks)
                        / os.sysconf("SC_CLK_TCK")
                        / (time.monotonic() - started)
                        if attack is not None
                        else 0.0
                    )
                    if attack is not None:
                        attack.send_signal(signal.SIGINT)
                        try:
                            attack_out = attack.communicate(timeout=30)[0].decode().strip()
                        except subprocess.TimeoutExpired:
                            attack.kill()
                            attack.communicate()
                        attack = None
                    alive = all(p.poll() is None for p in procs)
                    runs[condition].append(float(report["tx_per_s"]))
                    latency = report["latency_ms"]
                    print(
                        f"round {round_ + 1} {condition:7s}: {report['tx_per_s']:8.1f} tx/s, "
                        f"p50 {latency['p50']:.0f} ms, p99 {latency['p99']:.0f} ms, "
                        f"node 0 peak RSS {peak_kib / 1024:.0f} MB, CPU node 0 "
                        f"{report['per_node'][0]['cpu_percent']}%, attacker {100 * attack_cpu:.0f}%, "
                        f"all nodes alive: {alive}" + (f"\n    attack: {attack_out}" if attack_out else ""),
                        flush=True,
                    )
                    if not alive:
                        raise SystemExit("a node died")
            quiet, hostile = statistics.median(runs["quiet"]), statistics.median(runs["hostile"])
            print(
                f"median tx/s: quiet {quiet:.1f}, with {args.connections} hostile connections on node 0 "
                f"{hostile:.1f}: {100 * hostile / quiet:.0f} % of quiet"
            )
        finally:
            if attack is not None:
                attack.kill()
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
