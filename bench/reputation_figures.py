"""Commit gaps of a real 4-node cluster with one validator killed, with the fixed leader schedule
and with leader reputation (`bft.core.reputation`), side by side on the same machine.

For each schedule: write a testnet (`bft testnet`, with `--leader-reputation` for the second),
start `bft node` processes on 127.0.0.1, let them commit, kill -9 one validator, and record for
`--seconds` the times at which the survivors' committed height moves (polling node 0's /status
every 20 ms, light load of one put every 100 ms so that every commit is a block with a
transaction). Prints, per schedule, the commit gaps after the kill: the longest, how many were
over one second in the first round (the first `--first-round` seconds) and after it, and the
blocks committed; with `--plot FILE`, a timeline of the committed height (matplotlib, the
`report` extra).

Run: python bench/reputation_figures.py [--seconds 40] [--first-round 10] [--plot FILE]
Stops every process it started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

POLL_S = 0.02
PUT_EVERY_S = 0.1
GAP_S = 1.0


def _get(port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=0.5) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):
        return None


def _put(port: int, k: int) -> None:
    tx = json.dumps({"op": "put", "key": f"k{k}", "value": "v"}).encode()
    body = json.dumps({"txs": [base64.b64encode(tx).decode()], "wait": "none"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/txs", data=body, headers={"Content-Type": "application/json"}
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=0.5).read()


def run(reputation: bool, seconds: float, base_port: int, victim: int) -> list[tuple[float, int]]:
    """(seconds since the kill, committed height) at every change seen at node 0."""
    with tempfile.TemporaryDirectory(prefix="bft-reputation-") as tmp:
        out = Path(tmp) / "net"
        args = ["testnet", "--nodes", "4", "--out", str(out), "--base-port", str(base_port)]
        args += ["--leader-reputation"] if reputation else []
        subprocess.run([sys.executable, "-m", "bft", *args], check=True, capture_output=True)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bft", "node", "--home", str(out / f"node{i}")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(4)
        ]
        api = base_port + 1
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                s = _get(api, "/status")
                if s is not None and s["height"] >= 5:
                    break
                time.sleep(0.1)
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            killed = time.monotonic()
            seen: list[tuple[float, int]] = []
            last_put = 0.0
            k = 0
            while time.monotonic() - killed < seconds:
                now = time.monotonic()
                if now - last_put >= PUT_EVERY_S:
                    _put(api, k)
                    k += 1
                    last_put = now
                s = _get(api, "/status")
                if s is not None and (not seen or s["height"] != seen[-1][1]):
                    seen.append((time.monotonic() - killed, int(s["height"])))
                time.sleep(POLL_S)
            return seen
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def gaps(seen: list[tuple[float, int]]) -> list[tuple[float, float]]:
    """(when it started, how long) of every interval between two height changes."""
    return [(a, b - a) for (a, _), (b, _) in itertools.pairwise(seen)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--first-round", type=float, default=10.0)
    parser.add_argument("--base-port", type=int, default=28700)
    parser.add_argument("--victim", type=int, default=3)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    for reputation in (False, True):
        seen = run(reputation, args.seconds, args.base_port + (20 if reputation else 0), args.victim)
        results[reputation] = seen
        g = gaps(seen)
        early = [d for t, d in g if t < args.first_round and d > GAP_S]
        late = [d for t, d in g if t >= args.first_round and d > GAP_S]
        blocks = seen[-1][1] - seen[0][1] if seen else 0
        longest_late = max((d for t, d in g if t >= args.first_round), default=0.0)
        name = "leader reputation" if reputation else "fixed schedule"
        print(
            f"{name:18}: {blocks} blocks in {args.seconds:.0f} s after the kill; gaps over {GAP_S:.0f} s: "
            f"{len(early)} in the first {args.first_round:.0f} s (longest {max(early, default=0):.2f} s), "
            f"{len(late)} after (longest gap after: {longest_late:.2f} s, "
            f"sum of gaps over 1 s {sum(late):.1f} s)"
        )
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.2))
        for reputation, seen in results.items():
            label = "leader reputation" if reputation else "fixed schedule"
            ax.step([t for t, _ in seen], [h - seen[0][1] for _, h in seen], where="post", label=label)
        ax.set_xlabel(f"seconds after kill -9 of validator {args.victim}")
        ax.set_ylabel("blocks committed since")
        ax.set_title("4 validators, one killed: commits with and without leader reputation")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
