"""State sync and pruning with real processes: a wiped validator rejoins a cluster whose nodes have
pruned the blocks it would need to replay, from a snapshot, under load.

A 4-node chain with "state_sync" in its genesis, each node keeping `RETAIN_BLOCKS` blocks and a
snapshot every `SNAPSHOT_INTERVAL` heights, runs two loads, until every node has pruned height 1.
Then node 3 is killed and its data directory deleted (safety record included: it recovers it at
start, as any wiped node does). Block sync from genesis is impossible: `GET /blocks/1` answers
410 everywhere. Node 3 then starts with
`--state-sync`: it restores the newest snapshot the others serve (verified against a committed
block's claim), takes part in the last load, and afterwards holds the same values as node 0 for
every key written, the same blocks above its snapshot, and no app-hash mismatch. Restarted
without the flag it resumes from what it restored.
"""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import urllib.error
import urllib.request
from typing import Any

from cluster_helpers import (
    Cluster,
    MakeCluster,
    assert_same_chain,
    http_get,
    set_consensus,
    set_table,
    tail,
    wait_until,
)
from ledger_load import put_tx, submit_all

RETAIN_BLOCKS = 400
SNAPSHOT_INTERVAL = 50
KEYS = 3000
VICTIM = 3
LOAD_DEADLINE_S = 120.0
PRUNE_DEADLINE_S = 150.0
CATCH_UP_TIMEOUT_S = 90.0


class LyingApi:
    """An HTTP server in front of one node's API that lies in every answer state sync reads: its
    snapshot list names another app hash, every chunk has a byte flipped, every page of
    transaction records leaves one out, and every block has another app hash (so its id does
    not verify). A joining node that asks it first must catch each lie and still join."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.asked: list[str] = []
        liar = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                liar.asked.append(self.path)
                status, body, kind = liar.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, bytes, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.upstream}{path}", timeout=30) as response:
                status, body, kind = response.status, response.read(), response.headers["Content-Type"]
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), "application/json"
        if path == "/snapshots":
            doc = json.loads(body)
            for snap in doc["snapshots"]:
                snap["app_hash"] = "00" * 32
            body = json.dumps(doc).encode()
        elif path.startswith("/snapshots/") and "/txs" in path:
            body = body[44:]  # the first record of every page left out
        elif path.startswith("/snapshots/"):
            body = bytes([body[0] ^ 1]) + body[1:]
        elif path.startswith("/blocks/"):
            doc = json.loads(body)
            doc["app_hash"] = "11" * 32
            body = json.dumps(doc).encode()
        return status, body, kind

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _value(key: int, phase: str) -> str:
    # 200-1,400 bytes: the state is a few MB, several snapshot chunks of 512 KiB.
    return f"{phase}-{key}-" + "v" * (200 + (key * 37) % 1200)


def _puts(phase: str, keys: range) -> tuple[list[bytes], dict[str, str]]:
    values = {f"key-{k}": _value(k, phase) for k in keys}
    return [put_tx(k, v) for k, v in values.items()], values


def _load(cluster: Cluster, nodes: list[int], txs: list[bytes]) -> None:
    ports = [cluster.procs[i].api_port for i in nodes]
    result = submit_all(txs, ports, threads=6, batch=50, deadline_s=LOAD_DEADLINE_S)
    assert result.acknowledged == len(txs), (
        f"{result.acknowledged} of {len(txs)} puts acknowledged; errors: {result.errors[:5]}\n"
        f"{cluster.describe()}"
    )


def _status(cluster: Cluster, i: int) -> dict[str, Any]:
    status = cluster.status(i)
    assert status is not None, f"node {i} did not answer /status\n{tail(cluster.procs[i].log_file)}"
    return status


def _snapshots(cluster: Cluster, i: int) -> list[dict[str, Any]]:
    status, doc = http_get(cluster.procs[i].api_port, "/snapshots")
    return list(doc["snapshots"]) if status == 200 and isinstance(doc, dict) else []


def _get_status_code(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _kv(port: int, key: str, min_height: int) -> str | None:
    status, doc = http_get(port, f"/kv/{key}?min_height={min_height}")
    assert status in (200, 404), f"/kv/{key}: {status} {doc}"
    return None if status == 404 else str(doc["value"])


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_a_wiped_node_rejoins_a_pruned_cluster_by_state_sync(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4, state_sync=True)
    set_consensus(cluster, base_timeout_s=0.1, max_timeout_s=1.0)
    set_table(cluster, "storage", retain_blocks=RETAIN_BLOCKS, snapshot_interval=SNAPSHOT_INTERVAL)
    cluster.start_all()
    cluster.wait_up()
    others = [i for i in cluster.all if i != VICTIM]

    first, values = _puts("a", range(KEYS))
    _load(cluster, cluster.all, first)

    # Under load and idle, until every node has pruned height 1 and serves a snapshot.
    second, later = _puts("b", range(0, KEYS, 2))
    values.update(later)
    loader = threading.Thread(target=_load, args=(cluster, cluster.all, second), daemon=True)
    loader.start()

    def pruned_and_serving() -> list[int] | None:
        bases = [int(_status(cluster, i)["earliest_height"]) for i in cluster.all]
        served = [_snapshots(cluster, i) for i in cluster.all]
        return bases if min(bases) > 1 and all(served) else None

    bases = wait_until(
        pruned_and_serving, PRUNE_DEADLINE_S, "every node to prune height 1 and serve snapshots"
    )
    loader.join(LOAD_DEADLINE_S)
    assert not loader.is_alive(), "the second load did not finish"

    # Node 3 loses its disk. Block sync from genesis is impossible now: nobody holds block 1.
    cluster.kill([VICTIM])
    shutil.rmtree(cluster.procs[VICTIM].home / "data")
    for i in others:
        assert _get_status_code(cluster.procs[i].api_port, "/blocks/1") == 410, (
            f"node {i} still serves block 1"
        )
    snapshots = _snapshots(cluster, 0)
    assert all(s["chunks"] >= 2 for s in snapshots), f"the state spans several chunks: {snapshots}"

    # It joins by state sync, asking a liar first.
    liar = LyingApi(cluster.procs[1].api_port)
    try:
        honest = f"http://127.0.0.1:{cluster.procs[0].api_port}"
        cluster.start(VICTIM, state_sync=True, args=["--sync-from", f"{liar.url},{honest}"])
        cluster.wait_up([VICTIM], timeout_s=CATCH_UP_TIMEOUT_S)
    finally:
        liar.close()
    events = "\n".join(cluster.log_lines(VICTIM))
    for caught in ("state_sync_refused", "state_sync_block_refused", "state_sync_records_refused"):
        assert f"event={caught}" in events, f"the liar's lie was not caught: {caught}"
    assert "event=state_sync_chunk_refused" in events, "a flipped chunk byte was not caught"
    assert any(p.startswith("/snapshots/") and "/txs" not in p for p in liar.asked), "chunks were asked"
    output = cluster.procs[VICTIM].output_file.read_text()
    assert "restored height" in output, output
    mine = _status(cluster, VICTIM)
    assert mine["earliest_height"] > min(bases) - 1 - SNAPSHOT_INTERVAL, mine
    assert any("event=state_synced" in line for line in cluster.log_lines(VICTIM))

    third, last = _puts("c", range(1, KEYS, 3))
    values.update(last)
    _load(cluster, cluster.all, third)
    top = max(h for h in cluster.heights(cluster.all).values() if h is not None)
    cluster.wait_heights(cluster.all, top, CATCH_UP_TIMEOUT_S, "all four to reach the last load's height")

    for key, value in values.items():
        assert _kv(cluster.procs[VICTIM].api_port, key, top) == value, f"node {VICTIM}: {key}"
    assert _metric(cluster.procs[VICTIM].api_port, "bft_app_hash_mismatches_total") == 0
    start = int(mine["earliest_height"])
    assert_same_chain(cluster, cluster.all, range(start, top + 1, max(1, (top - start) // 40)))

    # Restarted without the flag, it resumes from the store it restored.
    cluster.kill([VICTIM])
    cluster.start(VICTIM)
    cluster.wait_heights([VICTIM], top + 5, CATCH_UP_TIMEOUT_S, "node 3 to commit on after a restart")
    assert _status(cluster, VICTIM)["earliest_height"] == start
