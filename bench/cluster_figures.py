"""Figures of a real local cluster: blocks committed per second with empty blocks, and the time
from kill -9 of a node (the current leader) to the remaining nodes' next commit.

Run: python bench/cluster_figures.py [--nodes 4] [--seconds 10] [--kills 5] [--base-port 28600]
Starts `bft node` processes on 127.0.0.1 in a temporary directory and stops them all at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

POLL_S = 0.02


def status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=0.5) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):
        return None


def new_block_committed(port: int, after_view: int) -> bool:
    s = status(port)
    if s is None or s["height"] < 1:
        return False
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/blocks/{s['height']}", timeout=0.5) as r:
            return int(json.load(r)["view"]) > after_view
    except (OSError, ValueError):
        return False


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(POLL_S)
    raise SystemExit(f"timed out after {timeout_s}s waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--base-port", type=int, default=28600)
    args = parser.parse_args()
    n = args.nodes
    api = [args.base_port + 2 * i + 1 for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bft",
                "testnet",
                "--nodes",
                str(n),
                "--out",
                str(home / "net"),
                "--base-port",
                str(args.base_port),
            ],
            check=True,
            capture_output=True,
        )
        procs: dict[int, subprocess.Popen[bytes]] = {}

        def start(i: int) -> None:
            cmd = [sys.executable, "-m", "bft", "node", "--home", str(home / "net" / f"node{i}")]
            procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        try:
            for i in range(n):
                start(i)
            wait_for(lambda: all((s := status(p)) and s["height"] >= 1 for p in api), 30, "first commits")
            h0 = min(s["height"] for p in api if (s := status(p)))
            time.sleep(args.seconds)
            h1 = min(s["height"] for p in api if (s := status(p)))
            rate = (h1 - h0) / args.seconds
            print(f"{n} nodes, empty blocks: {h1 - h0} blocks in {args.seconds:.0f} s = {rate:.0f} blocks/s")

            gaps: list[float] = []
            for _ in range(args.kills):
                now_status = status(api[0])
                assert now_status is not None
                leader, view_at_kill = now_status["leader"], now_status["view"] + 1
                others = [p for i, p in enumerate(api) if i != leader]
                procs[leader].send_signal(signal.SIGKILL)
                procs[leader].wait()
                killed_at = time.monotonic()
                # The next commit of a block proposed after the kill (blocks already in the
                # pipeline may still commit just after it; they do not count).
                wait_for(
                    lambda v=view_at_kill, o=others: any(new_block_committed(p, v) for p in o),
                    120,
                    "a commit after kill -9",
                )
                gaps.append(time.monotonic() - killed_at)
                before = max(s["height"] for p in others if (s := status(p)))
                start(leader)
                wait_for(
                    lambda i=leader, h=before: (s := status(api[i])) is not None and s["height"] >= h,
                    60,
                    "the restarted node to catch up",
                )
            print(
                f"kill -9 of the leader to the next commit on the others, {len(gaps)} trials: "
                f"median {statistics.median(gaps):.2f} s, max {max(gaps):.2f} s "
                f"({', '.join(f'{g:.2f}' for g in gaps)})"
            )
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    main()
