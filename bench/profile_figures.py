"""A CPU profile of a saturated `bft bench`: µs of CPU per committed transaction, by group, for
the nodes (all of them together) and for the load generator.

Run: python bench/profile_figures.py [--nodes 4] [--duration 20] [-- extra bft bench flags]
Needs py-spy (`pip install py-spy`; attaching to a process may need root or ptrace rights).
Starts `bft bench --json` (its own local cluster), samples every node process and the bench
process itself with py-spy through the measured window, and prints a markdown table: each
group's share of the samples times the process's CPU seconds (from the bench's report), divided
by the transactions committed in the window.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A sample belongs to the first group whose marker appears in its stack (innermost frames win:
# stacks are scanned from the leaf up). Markers are `function (file` prefixes as py-spy prints
# them; "other" is everything else.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("signatures (Ed25519 sign and verify)", ("crypto/signing.py", "crypto/keys.py", "crypto/certs.py")),
    (
        "SQLite writes and fsync (block store, journal, ledger commit, safety record)",
        (
            "BlockStore._transaction",
            "KeyValueLedger.commit",
            "osfs.py",
        ),
    ),
    ("application execution (parse, reads, results)", ("bft/app/kv.py",)),
    ("quorum store: batch store (SQLite, fsync, digest checks)", ("bft/node/batch_store.py",)),
    ("committed-transaction checks and tx index reads", ("BlockStore.has_tx", "BlockStore.tx_location")),
    ("block store encoding and inserts", ("bft/node/storage.py",)),
    ("mempool admission and gossip", ("bft/node/mempool.py", "Node._gossip", "Node.submit")),
    ("CBOR and message codec", ("bft/core/cbor.py", "bft/core/wire.py", "cbor2")),
    ("transport: framing, encryption, sockets", ("net/",)),
    (
        "HTTP: hypercorn, starlette, JSON, base64",
        ("hypercorn", "starlette", "h11", "bft/node/api", "json/", "base64"),
    ),
    ("consensus core (rules, tree, votes)", ("bft/core/",)),
    ("HTTP client (httpx) and load logic", ("httpx", "httpcore", "bft/bench", "bft/client.py")),
    ("trio scheduler and I/O waits", ("trio/",)),
)


def group_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, markers in GROUPS:
            if any(m in frame for m in markers):
                return name
    return "other"


def profile(raw: Path) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[group_of(stack)] += int(n)
    return counts


def node_pids(parent: int) -> list[int]:
    """The `bft node` processes below `parent`."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for line in out.splitlines()[1:]:
        pid_text, ppid_text, command = line.split(None, 2)
        children[int(ppid_text)].append((int(pid_text), command))
    found: list[int] = []
    todo = [parent]
    while todo:
        for pid, command in children.get(todo.pop(), []):
            todo.append(pid)
            if " node --home " in command:
                found.append(pid)
    return found


def _print_table(first: str, unit: str, samples: collections.Counter[str], us_per_tx: float) -> None:
    """A markdown table: each group's share of `samples` of the `us_per_tx` CPU."""
    print(f"| {first} | {unit} | share |")
    print("|---|---|---|")
    total = sum(samples.values()) or 1
    for name, n in samples.most_common():
        print(f"| {name} | {us_per_tx * n / total:.0f} | {100 * n / total:.0f}% |")


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of `pid` so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("extra", nargs="*", help="more `bft bench` flags (after --)")
    args = parser.parse_args()
    warmup_s = 3.0
    cmd = [sys.executable, "-m", "bft", "bench", "--nodes", str(args.nodes), "--tx-size", "256"]
    cmd += ["--duration", str(args.duration), "--warmup", str(warmup_s), "--json", *args.extra]
    with tempfile.TemporaryDirectory() as tmp:
        bench = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 60
        pids: list[int] = []
        while len(pids) < args.nodes and time.monotonic() < deadline and bench.poll() is None:
            time.sleep(0.5)
            pids = node_pids(bench.pid)
        time.sleep(warmup_s + 2)
        load_start = _cpu_s(bench.pid), time.monotonic()
        spies: dict[str, tuple[Path, subprocess.Popen[bytes]]] = {}
        for label, pid in [("load", bench.pid), *((f"node{i}", p) for i, p in enumerate(pids))]:
            raw = Path(tmp) / f"{label}.txt"
            record = [
                shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(pid),
                "-d",
                str(int(args.duration - 3)),
                "-r",
                "100",
            ]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            spies[label] = (raw, subprocess.Popen([*record, "-f", "raw", "-o", str(raw)], **quiet))  # type: ignore[call-overload]
        for _, process in spies.values():
            process.wait(timeout=args.duration + 60)
        load_cpu_s, load_window_s = _cpu_s(bench.pid) - load_start[0], time.monotonic() - load_start[1]
        out, _ = bench.communicate(timeout=args.duration + 120)
        report = json.loads(out)
        committed = report["committed"]
        node_cpu_s = sum(n["cpu_s"] or 0.0 for n in report["per_node"])
        nodes = collections.Counter[str]()
        for label, (raw, _) in spies.items():
            if label != "load" and raw.exists():
                nodes.update(profile(raw))
        load = profile(spies["load"][0]) if spies["load"][0].exists() else collections.Counter[str]()
    load_txs = report["tx_per_s"] * load_window_s
    print(
        f"{report['tx_per_s']:,.0f} tx/s, {committed:,} committed in the window, p50 "
        f"{report['latency_ms']['p50']:.0f} ms; node CPU {node_cpu_s:.1f} s in all"
    )
    print()
    _print_table("group", "µs per tx, all nodes", nodes, node_cpu_s * 1e6 / committed)
    print(f"| **all** | **{node_cpu_s * 1e6 / committed:.0f}** | |")
    if load:
        print()
        share = 100 * load_cpu_s / load_window_s
        print(f"load generator: {load_cpu_s:.1f} s CPU in {load_window_s:.1f} s ({share:.0f}% of a core)")
        print()
        _print_table("load generator group", "µs per tx", load, load_cpu_s * 1e6 / load_txs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
