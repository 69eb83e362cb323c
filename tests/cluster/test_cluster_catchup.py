"""Catch-up of a node whose disk is far behind the cluster, with real processes: blocks of large
values (a catch-up that moves far more than one 4 MiB transport frame), and a gap of 10,000+
blocks.

How a node ends up far behind: its data directory is copied while the process is frozen
(SIGSTOP: the copy is the disk a kill -9 at that instant leaves), the process goes on, and once
the cluster has committed the wanted number of blocks past the copy, the node is killed -9 and
restarted on the copy. To the node and its peers that is a node that crashed at the copy's
height and came back after that many blocks. It is not left down for the whole gap because with
one of four validators down its leader terms cost a timeout each: measured on a 2-core machine,
three nodes commit idle blocks at ~10-20 a second (base_timeout_s 0.02-0.05) and large-value
blocks at ~2 a second, against ~85 and ~8 with four, and shorter timeouts stall the cluster.
(The node's safety record goes back too; it restarts views behind the cluster, which is past
every view it voted in.)

Checked, through the command line, HTTP API, logs and /proc only: every process stays up (no
crash, no traceback in a log), the restarted node reaches the others' height within a bound,
has the same block ids at every compared height and, for the large values, returns the
acknowledged value of a sample of keys.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cluster_helpers import (
    START_TIMEOUT_S,
    Cluster,
    MakeCluster,
    assert_same_chain,
    height_window,
    set_consensus,
    tail,
    wait_until,
)
from ledger_load import JsonClient, put_tx

VALUE_BYTES = 60_000
LOAD_THREADS = 4
PUTS_PER_REQUEST = 4  # in flight per thread: 16 puts, ~1 MB, in flight in all
LARGE_BLOCKS_PAST = 300
LARGE_BYTES_PAST = 16 * 1024 * 1024  # four 4 MiB frames' worth of values the node must fetch
LARGE_LOAD_DEADLINE_S = 150.0
KV_SAMPLE = 60

# The acceptance gap; a smaller one (BFT_CATCHUP_GAP_BLOCKS) makes a quick local run. Producing
# 10,000 idle blocks took ~5-7 minutes on a shared 2-core machine (~60 blocks/s at first, falling
# to ~20 as the chain grows), so the deadline is generous.
GAP_BLOCKS = int(os.environ.get("BFT_CATCHUP_GAP_BLOCKS", "10000"))
GAP_DEADLINE_S = 600.0
CATCH_UP_TIMEOUT_S = 90.0
# "Caught up": within this many blocks of the lowest of the others (they go on committing).
CAUGHT_UP_SLACK = 5
CHAIN_SAMPLE = 40
WINDOW = 30


# Diagnostics.


def _log_problems(cluster: Cluster, i: int, limit: int = 12) -> list[str]:
    """Lines of node i's log and process output that report a crash or an error."""
    node = cluster.procs[i]
    found: list[str] = []
    for path in [node.log_file, *sorted(node.home.glob("process-*.out"))]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for n, line in enumerate(lines):
            if "Traceback" in line or "level=error" in line or "level=critical" in line:
                found.append(f"{path.name}:{n + 1}: {line[:400]}")
                if "Traceback" in line:  # the exception itself is at the end of the trace
                    found += [
                        f"{path.name}:  {x[:400]}" for x in lines[n + 1 : n + 40] if not x.startswith(" ")
                    ]
    return found[:limit] + ([f"... {len(found) - limit} more"] if len(found) > limit else [])


def _report(cluster: Cluster, history: list[str]) -> str:
    parts = [f"cluster: {cluster.describe()}", *history[-25:]]
    for node in cluster.procs:
        code = None if node.popen is None else node.popen.poll()
        state = (
            "running" if code is None else f"exited {code}{' (by the test)' if node.expected_exit else ''}"
        )
        parts.append(f"=== node {node.index}: {state}, started {node.starts}x")
        parts += _log_problems(cluster, node.index)
        parts.append(f"--- log tail:\n{tail(node.log_file, 8)}")
    return "\n".join(parts)


@dataclass
class Progress:
    """What a test saw, for its failure message."""

    cluster: Cluster
    history: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {text}"
        self.history.append(line)
        print(line, flush=True)

    def fail(self, what: str) -> AssertionError:
        return AssertionError(f"{what}\n{_report(self.cluster, self.history)}")


def _assert_all_healthy(cluster: Cluster, progress: Progress) -> None:
    dead = [n.index for n in cluster.procs if not n.running()]
    problems = {i: _log_problems(cluster, i) for i in cluster.all}
    if dead or any(problems.values()):
        raise progress.fail(
            f"nodes not running: {dead}; nodes whose logs report errors: "
            f"{[i for i, p in problems.items() if p]}"
        )


# Putting a node's disk back.


def _data_dir(cluster: Cluster, i: int) -> Path:
    return cluster.procs[i].home / "data"


def _snapshot_disk(cluster: Cluster, i: int, to: Path) -> int:
    """Copy node i's data directory while the process is frozen; its committed height then."""
    popen = cluster.procs[i].popen
    assert popen is not None and popen.poll() is None, f"node {i} is not running"
    # Read before the freeze (the API is in the process): the copy may hold a few blocks more.
    height = cluster.height(i)
    assert height is not None, f"node {i} did not answer /status"
    popen.send_signal(signal.SIGSTOP)
    try:
        shutil.copytree(_data_dir(cluster, i), to)
    finally:
        popen.send_signal(signal.SIGCONT)
    assert Path(f"/proc/{popen.pid}").exists(), f"node {i} died while frozen"
    return height


def _restart_on(cluster: Cluster, i: int, snapshot: Path) -> None:
    """kill -9 node i, put `snapshot` back as its data directory, start it."""
    cluster.kill([i])
    shutil.rmtree(_data_dir(cluster, i))
    shutil.copytree(snapshot, _data_dir(cluster, i))
    cluster.start(i)


def _wait_caught_up(cluster: Cluster, victim: int, target: int, progress: Progress) -> tuple[int, float]:
    """Wait until `victim` is at `target` or higher and within CAUGHT_UP_SLACK of the lowest of the
    others; (its height, seconds taken). Notes its height every few seconds."""
    others = [i for i in cluster.all if i != victim]
    started = time.monotonic()
    last_note = [started]

    def caught_up() -> int | None:
        for i in cluster.all:
            if not cluster.procs[i].running():
                raise progress.fail(f"node {i} exited while node {victim} was catching up")
        mine = cluster.height(victim)
        theirs = [h for h in cluster.heights(others).values() if h is not None]
        if time.monotonic() - last_note[0] >= 5.0:
            last_note[0] = time.monotonic()
            progress.note(f"catching up: node {victim} at {mine}, others at {sorted(theirs)}")
        everyone = len(theirs) == len(others)  # a node too busy to answer does not count as level
        if mine is not None and mine >= target and everyone and mine >= min(theirs) - CAUGHT_UP_SLACK:
            return mine
        return None

    try:
        height = wait_until(
            caught_up, CATCH_UP_TIMEOUT_S, f"node {victim} to catch up to {target}", interval_s=0.25
        )
    except AssertionError as exc:
        raise progress.fail(str(exc)) from None
    took = time.monotonic() - started
    # Back at full strength, the whole cluster commits on (catch-up must not stall the others).
    try:
        cluster.wait_heights(cluster.all, height + 10, 30.0, f"all four nodes to commit past {height + 10}")
    except AssertionError as exc:
        raise progress.fail(str(exc)) from None
    return height, took


# Large values.


def _value(key: str) -> str:
    seed = hashlib.sha256(key.encode()).hexdigest()
    return (seed * (VALUE_BYTES // len(seed) + 1))[:VALUE_BYTES]


@dataclass
class Load:
    """LOAD_THREADS clients putting distinct keys with VALUE_BYTES values, PUTS_PER_REQUEST per
    wait=commit request, round-robin over `ports`, until stopped; records acknowledged keys."""

    ports: list[int]
    acknowledged: dict[str, int] = field(default_factory=dict)  # key -> committed height
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(LOAD_THREADS)
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60.0)
        assert not any(t.is_alive() for t in self.threads), "a load thread did not stop"

    def acked_past(self, height: int) -> int:
        with self.lock:
            return sum(1 for h in self.acknowledged.values() if h > height)

    def _run(self, worker: int) -> None:
        clients = {port: JsonClient(port, timeout_s=45.0) for port in self.ports}
        pending: list[str] = []
        next_key = 0
        attempt = worker
        try:
            # Bounded by the stop event and by a count (far more requests than a test makes).
            for _ in range(100_000):
                if self.stop.is_set():
                    return
                while len(pending) < PUTS_PER_REQUEST:
                    pending.append(f"w{worker}-{next_key:06d}")
                    next_key += 1
                port = self.ports[attempt % len(self.ports)]
                attempt += 1
                txs = [base64.b64encode(put_tx(key, _value(key))).decode() for key in pending]
                try:
                    status, answer = clients[port].request("POST", "/txs", {"txs": txs, "wait": "commit"})
                except Exception as exc:  # a node is down or busy: try the next one
                    with self.lock:
                        self.errors.append(f"port {port}: {exc!r}")
                    time.sleep(0.2)
                    continue
                if status not in (200, 503) or not isinstance(answer, dict):
                    with self.lock:
                        self.errors.append(f"port {port}: status {status} {str(answer)[:200]}")
                    time.sleep(0.2)
                    continue
                left = []
                for key, item in zip(pending, answer["results"], strict=True):
                    if item["status"] == "committed":
                        with self.lock:
                            self.acknowledged[key] = int(item["height"])
                    elif item["status"] == "rejected" and item.get("error") != "mempool full":
                        with self.lock:
                            self.errors.append(f"put {key} rejected: {item}")
                    else:
                        left.append(key)
                pending = left
        finally:
            for client in clients.values():
                client.close()


@pytest.mark.parametrize("quorum_store", [False, True], ids=["inline", "quorum-store"])
def test_large_values_restart_catches_up_over_many_frames(
    make_cluster: MakeCluster, tmp_path: Path, quorum_store: bool
) -> None:
    """Under the quorum store the values travel in batches (a few per batch at 60 KB each), and
    the restarted node syncs the full blocks its peers assemble from them."""
    cluster = make_cluster(4, quorum_store=quorum_store)
    # Four nodes commit every few tens of ms; short views keep the survivors going while the
    # victim is down.
    set_consensus(cluster, base_timeout_s=0.5, max_batch_delay_s=0.01)
    victim = 1
    others = [i for i in cluster.all if i != victim]
    progress = Progress(cluster)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 3, START_TIMEOUT_S)
    load = Load([cluster.procs[i].api_port for i in others])  # none waits on the victim
    load.start()
    try:
        cluster.wait(lambda: len(load.acknowledged) >= 20, 60.0, "20 large puts acknowledged")
        snapshot = tmp_path / "victim-data"
        snap_height = _snapshot_disk(cluster, victim, snapshot)
        progress.note(
            f"node {victim}'s disk copied at height {snap_height} ({len(load.acknowledged)} puts acked)"
        )

        def far_enough() -> int | None:
            low = cluster.min_height(others)
            ok = (
                low >= snap_height + LARGE_BLOCKS_PAST
                and load.acked_past(snap_height) * VALUE_BYTES >= LARGE_BYTES_PAST
            )
            return low if ok else None

        started = time.monotonic()
        try:
            top = cluster.wait(
                far_enough,
                LARGE_LOAD_DEADLINE_S,
                f"{LARGE_BLOCKS_PAST} blocks and "
                f"{LARGE_BYTES_PAST >> 20} MiB of values past height {snap_height}",
            )
        except AssertionError as exc:
            raise progress.fail(str(exc)) from None
        megabytes = load.acked_past(snap_height) * VALUE_BYTES / 1e6
        progress.note(
            f"others at {top}: {top - snap_height} blocks, {megabytes:.1f} MB of values past "
            f"the copy in {time.monotonic() - started:.1f} s"
        )
        _restart_on(cluster, victim, snapshot)
        progress.note(f"node {victim} killed -9 and restarted on its disk at height {snap_height}")
        # The load goes on for a few seconds while it starts, then stops: the cluster still
        # commits empty blocks, so the target moves on regardless.
        cluster.wait_up([victim])
        progress.note(f"node {victim} answers at height {cluster.height(victim)}")
        time.sleep(3.0)
    finally:
        load.finish()
    target = max(h for h in cluster.heights(others).values() if h is not None)
    progress.note(
        f"load stopped: {len(load.acknowledged)} puts acked, {len(load.errors)} client errors "
        f"(e.g. {load.errors[:2]}); others' top height {target}"
    )
    height, took = _wait_caught_up(cluster, victim, target, progress)
    progress.note(f"node {victim} caught up to {height} in {took:.1f} s")
    _assert_all_healthy(cluster, progress)
    try:
        assert_same_chain(
            cluster,
            [victim, *others],
            set(height_window(snap_height + WINDOW, WINDOW, snap_height + 1))
            | set(height_window(target, WINDOW)),
        )
    except AssertionError as exc:
        raise progress.fail(str(exc)) from None
    acked = sorted(load.acknowledged.items())
    later = [kv for kv in acked if kv[1] > snap_height]
    rng = random.Random(1)
    sample = rng.sample(later, min(len(later), KV_SAMPLE // 2)) + rng.sample(
        acked, min(len(acked), KV_SAMPLE // 2)
    )
    reader = JsonClient(cluster.procs[victim].api_port, timeout_s=10.0)
    try:
        for key, committed in sample:
            status, found = reader.request("GET", f"/kv/{key}")
            if status != 200 or found.get("value") != _value(key):
                shown = found if status != 200 else {**found, "value": str(found.get("value"))[:40] + "..."}
                raise progress.fail(
                    f"node {victim}: /kv/{key} (committed at {committed}) -> {status} {shown}"
                )
    finally:
        reader.close()
    _assert_all_healthy(cluster, progress)


# A gap of 10,000 blocks.


def test_node_10000_blocks_behind_catches_up(make_cluster: MakeCluster, tmp_path: Path) -> None:
    cluster = make_cluster(4)
    # An idle cluster commits empty blocks as fast as it can (the delay must be > 0 and below
    # base_timeout_s); the base timeout stays at its default, so no view times out spuriously.
    set_consensus(cluster, max_batch_delay_s=0.001)
    victim = 3
    others = [i for i in cluster.all if i != victim]
    progress = Progress(cluster)
    cluster.start_all()
    cluster.wait_heights(cluster.all, 20, START_TIMEOUT_S)
    snapshot = tmp_path / "victim-data"
    snap_height = _snapshot_disk(cluster, victim, snapshot)
    progress.note(f"node {victim}'s disk copied at height {snap_height}")
    started = time.monotonic()
    last_note = [started]

    def far_enough() -> int | None:
        low = cluster.min_height(others)
        if time.monotonic() - last_note[0] >= 20.0:
            last_note[0] = time.monotonic()
            progress.note(f"others at {low} ({(low - snap_height) / (last_note[0] - started):.0f} blocks/s)")
        return low if low >= snap_height + GAP_BLOCKS else None

    try:
        top = cluster.wait(far_enough, GAP_DEADLINE_S, f"{GAP_BLOCKS} blocks past height {snap_height}")
    except AssertionError as exc:
        raise progress.fail(str(exc)) from None
    produced_s = time.monotonic() - started
    progress.note(
        f"others at {top}: {top - snap_height} blocks in {produced_s:.1f} s "
        f"({(top - snap_height) / produced_s:.0f} blocks/s)"
    )
    _restart_on(cluster, victim, snapshot)
    cluster.wait_up([victim])
    progress.note(
        f"node {victim} killed -9 and restarted on its disk: answers at height {cluster.height(victim)}"
    )
    target = max(h for h in cluster.heights(others).values() if h is not None)
    height, took = _wait_caught_up(cluster, victim, target, progress)
    progress.note(f"node {victim} caught up from {snap_height} to {height} in {took:.1f} s")
    _assert_all_healthy(cluster, progress)
    rng = random.Random(2)
    heights = set(rng.sample(range(snap_height + 1, target + 1), CHAIN_SAMPLE))
    heights |= set(height_window(snap_height + 10, 10, snap_height + 1)) | set(height_window(target, 10))
    try:
        assert_same_chain(cluster, [victim, *others], heights)
    except AssertionError as exc:
        raise progress.fail(str(exc)) from None
    _assert_all_healthy(cluster, progress)
