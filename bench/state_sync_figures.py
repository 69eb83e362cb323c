"""How long a wiped validator takes to rejoin a real 4-node cluster: replaying the chain by block
sync from genesis, against joining from a snapshot (`bft node --state-sync`), side by side on the
same chain, machine and run.

Writes a testnet with `"state_sync"` (`bft testnet --state-sync`, snapshots every
`--snapshot-interval` heights, nothing pruned so that block sync from genesis stays possible),
starts `bft node` processes on 127.0.0.1, loads `--keys` puts of `--value-bytes` values and lets
the chain grow to `--height`; then twice: kill -9 node 3, delete its data directory, start it
(first plainly, then with `--state-sync`) and time it until it is within 5 blocks of node 0.
Prints both times, the chain and the state they moved.

Run: python bench/state_sync_figures.py [--keys 20000] [--value-bytes 200] [--height 3000]
Stops every process it started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

VICTIM = 3
CAUGHT_UP_SLACK = 5
DEADLINE_S = 900.0


def _get(port: int, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            data: dict[str, Any] = json.load(r)
            return data
    except (OSError, ValueError):
        return None


def _height(port: int) -> int | None:
    status = _get(port, "/status")
    return None if status is None else int(status["height"])


def _post_puts(port: int, first: int, count: int, value: str) -> None:
    txs = [
        base64.b64encode(json.dumps({"op": "put", "key": f"key-{k}", "value": value}).encode()).decode()
        for k in range(first, first + count)
    ]
    body = json.dumps({"txs": txs, "wait": "none"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/txs", data=body, headers={"Content-Type": "application/json"}
    )
    with contextlib.suppress(OSError):
        urllib.request.urlopen(request, timeout=10).read()


def _until(what: str, check: Any, deadline_s: float = DEADLINE_S, every_s: float = 0.2) -> Any:
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        found = check()
        if found:
            return found
        time.sleep(every_s)
    raise SystemExit(f"gave up waiting for {what} after {deadline_s:.0f} s")


class Testnet:
    def __init__(self, root: Path, base_port: int, snapshot_interval: int) -> None:
        self.root = root
        cmd = [sys.executable, "-m", "bft", "testnet", "--nodes", "4", "--out", str(root)]
        subprocess.run([*cmd, "--base-port", str(base_port), "--state-sync"], check=True, capture_output=True)
        self.api = [base_port + 2 * i + 1 for i in range(4)]
        for i in range(4):
            with (root / f"node{i}" / "config.toml").open("a") as f:
                f.write(f"\n[storage]\nsnapshot_interval = {snapshot_interval}\n")
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int, *args: str) -> None:
        home = self.root / f"node{i}"
        cmd = [sys.executable, "-m", "bft", "node", "--home", str(home), *args]
        self.procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def kill(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def wipe(self, i: int) -> None:
        shutil.rmtree(self.root / f"node{i}" / "data", ignore_errors=True)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()


def _rejoin(net: Testnet, *args: str) -> tuple[float, int]:
    """Wipe node 3, start it with `args`; (seconds until it is within CAUGHT_UP_SLACK of node 0,
    node 0's height then)."""
    net.kill(VICTIM)
    net.wipe(VICTIM)
    started = time.monotonic()
    net.start(VICTIM, *args)

    def caught_up() -> int | None:
        mine, theirs = _height(net.api[VICTIM]), _height(net.api[0])
        return (
            theirs if mine is not None and theirs is not None and mine >= theirs - CAUGHT_UP_SLACK else None
        )

    top = _until("node 3 to catch up", caught_up)
    return time.monotonic() - started, int(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--snapshot-interval", type=int, default=200)
    parser.add_argument("--base-port", type=int, default=27400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bft-state-sync-") as tmp:
        net = Testnet(Path(tmp) / "net", args.base_port, args.snapshot_interval)
        try:
            for i in range(4):
                net.start(i)
            _until("the nodes to answer", lambda: all(_height(p) is not None for p in net.api), 60)
            value = "v" * args.value_bytes
            for first in range(0, args.keys, 500):
                _post_puts(net.api[first // 500 % 4], first, min(500, args.keys - first), value)
                time.sleep(0.05)
            _until(f"height {args.height}", lambda: (_height(net.api[0]) or 0) >= args.height)
            _until("a snapshot served", lambda: (_get(net.api[0], "/snapshots") or {}).get("snapshots"), 120)
            app_bytes = (net.root / "node0" / "data" / "app.sqlite").stat().st_size
            block_sync_s, top_a = _rejoin(net)
            state_sync_s, top_b = _rejoin(net, "--state-sync")
            status = _get(net.api[VICTIM], "/status") or {}
        finally:
            net.stop()
    print(f"chain: {top_a} blocks at the first rejoin, {top_b} at the second")
    print(f"state: {args.keys} keys of {args.value_bytes} B values")
    print(f"node 0's ledger file: {app_bytes / 1e6:.1f} MB")
    print(f"block sync from genesis: {block_sync_s:.1f} s to within {CAUGHT_UP_SLACK} blocks of node 0")
    print(f"state sync (--state-sync): {state_sync_s:.1f} s, from height {status.get('earliest_height')}")
    print(f"ratio: {block_sync_s / state_sync_s:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
