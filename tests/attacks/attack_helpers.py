"""Harness of the attack suite: `bft attack` against real node processes, watched from outside.

Owns: the memory bound a node must stay under while attacked (`NODE_RSS_BOUND_KIB`), running an
attack command in the background while sampling the target's RSS and every node's committed
height (`watch_attack`), filling a chain with large blocks through the API (`fill_large_blocks`),
and counting log lines.
May not: import the node's code; it sees the nodes as an operator would (API, log, /proc).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cluster_helpers import Cluster, vm_rss_kib
from ledger_load import JsonClient, put_tx

# The bound every attacked node stays under (README, "Hardening"): a node idles at 60-90 MB; the
# transport's outgoing queues, the mempool and the API's connections are bounded well below this.
NODE_RSS_BOUND_KIB = 300 * 1024
SAMPLE_INTERVAL_S = 0.25
# An attack command gets this long beyond its own duration to report and exit.
ATTACK_GRACE_S = 60.0
AFTER_ATTACK_TIMEOUT_S = 30.0
# Values of the large transactions that make large blocks (the key-value ledger's value limit is
# 64 KiB).
LARGE_VALUE_BYTES = 60_000


@dataclass(frozen=True)
class AttackRun:
    """What one attack reported and what the nodes did meanwhile."""

    report: dict[str, Any]
    peak_rss_kib: int
    heights_before: dict[int, int]
    heights_after: dict[int, int]

    def progress(self, nodes: Sequence[int]) -> int:
        """The fewest blocks any of `nodes` committed during the attack."""
        return min(self.heights_after[i] - self.heights_before[i] for i in nodes)


def watch_attack(
    cluster: Cluster, target: int, watched: Sequence[int], args: Sequence[str], duration_s: float
) -> AttackRun:
    """Run `bft attack ARGS --json` (lasting about `duration_s`) while sampling node `target`'s RSS
    and checking that every node of `watched` stays up; the attack's report and the samples."""
    before = {i: cluster.min_height([i]) for i in watched}
    cmd = [sys.executable, "-m", "bft", "attack", *args, "--json"]
    attack = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    deadline = time.monotonic() + duration_s + ATTACK_GRACE_S
    try:
        for _ in range(int((duration_s + ATTACK_GRACE_S) / SAMPLE_INTERVAL_S) + 1):
            if attack.poll() is not None or time.monotonic() > deadline:
                break
            cluster.check_alive(watched)
            peak = max(peak, vm_rss_kib(cluster.procs[target].pid))
            time.sleep(SAMPLE_INTERVAL_S)
        out, err = attack.communicate(timeout=10)
    finally:
        if attack.poll() is None:
            attack.kill()
            attack.communicate()
    assert attack.returncode == 0, f"bft attack {' '.join(args)} exited {attack.returncode}: {err}"
    cluster.check_alive(watched)
    # The attacker's exit closes all its connections at once; the API answers again after that burst.
    after = {i: cluster.min_height([i], AFTER_ATTACK_TIMEOUT_S) for i in watched}
    report: dict[str, Any] = json.loads(out)
    run = AttackRun(report, peak, before, after)
    # For `pytest -s`: the figures the README quotes.
    print(
        f"\nbft attack {' '.join(args[:1])}: node {target} peak RSS {peak // 1024} MB, "
        f"blocks committed meanwhile {run.progress(watched)}; {json.dumps(report)}"
    )
    return run


def fill_large_blocks(cluster: Cluster, node: int, total_bytes: int, timeout_s: float = 120.0) -> int:
    """Commit about `total_bytes` of large key-value puts through node `node` (blocks of about the
    block limit); the height of the block that holds the last of them."""
    client = JsonClient(cluster.procs[node].api_port)
    value = "v" * LARGE_VALUE_BYTES
    batch = 8
    deadline = time.monotonic() + timeout_s
    height = 0
    try:
        for start in range(0, max(1, total_bytes // LARGE_VALUE_BYTES), batch):
            assert time.monotonic() < deadline, "filling the chain took too long"
            txs = [put_tx(f"large-{start + k}", value) for k in range(batch)]
            body = {"txs": [base64.b64encode(tx).decode() for tx in txs], "wait": "commit"}
            status, answer = client.request("POST", "/txs", body)
            assert status == 200, (status, answer)
            assert all(r["status"] == "committed" for r in answer["results"]), answer
            height = max(r["height"] for r in answer["results"])
    finally:
        client.close()
    return height


def count_lines(cluster: Cluster, node: int, *markers: str) -> int:
    """Lines of node `node`'s log that contain every one of `markers`."""
    return sum(1 for line in cluster.log_lines(node) if all(m in line for m in markers))
