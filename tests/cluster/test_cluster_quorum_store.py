"""Four honest nodes as real processes with the quorum store (a genesis written by `bft testnet
--quorum-store`): 2,000 puts submitted over every node's API in batches with wait=commit all
commit; every node then holds the same chain, the same state and every value; the committed
blocks that carry transactions show them with their proofs of availability (batches authored by
several validators), and the Python client, given the genesis, proves them committed; and no
node gossiped a transaction (each would have refused and counted it: none did)."""

from __future__ import annotations

import base64
import http.client
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import Cluster, assert_same_chain
from ledger_load import JsonClient, put_tx, submit_all, tx_hash

from bft.client import Client
from bft.node.config import load_genesis

N_TXS = 2000
BATCH = 100
LOAD_DEADLINE_S = 180.0
CATCH_UP_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The cluster; at teardown every node is stopped (SIGTERM, SIGKILL past 10 s), and the test
    fails if one crashed, exited non-zero on SIGTERM or had to be killed."""
    made = Cluster(tmp_path / "cluster", 4, quorum_store=True)
    try:
        yield made
    finally:
        problems = made.close()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def _metrics(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
    try:
        connection.request("GET", "/metrics")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_quorum_store_cluster_commits_a_load_and_every_node_holds_the_same_ledger(
    cluster: Cluster,
) -> None:
    genesis = load_genesis(cluster.root / "genesis.json")
    assert genesis.quorum_store
    cluster.start_all()
    cluster.wait_up()
    cluster.wait(
        lambda: all((s := cluster.status(i)) is not None and s["peers"] == 3 for i in cluster.all),
        30.0,
        "every node to connect to its 3 peers",
    )

    values = {f"qs{i:05d}": f"v{i}" for i in range(N_TXS)}
    txs = [put_tx(key, value) for key, value in values.items()]
    ports = [p.api_port for p in cluster.procs]
    started = time.monotonic()
    result = submit_all(txs, ports, threads=8, batch=BATCH, deadline_s=LOAD_DEADLINE_S)
    elapsed = time.monotonic() - started
    cluster.check_alive()
    assert result.acknowledged == N_TXS, (
        f"{result.acknowledged}/{N_TXS} acknowledged in {elapsed:.0f} s; errors: {result.errors[:5]}; "
        f"{cluster.describe()}"
    )
    print(f"{N_TXS} puts committed in {elapsed:.1f} s ({result.retries} retried batches)")

    top = max(result.committed.values())
    cluster.wait_heights(cluster.all, top, CATCH_UP_S, f"every node to reach height {top}")
    ids = assert_same_chain(cluster, cluster.all, range(1, top + 1))

    clients = {i: JsonClient(cluster.procs[i].api_port, timeout_s=10.0) for i in cluster.all}
    try:
        # Every node's blocks: the same transactions, carried with their proofs.
        blocks: dict[int, dict[int, dict[str, Any]]] = {}
        for i in cluster.all:
            blocks[i] = {}
            for h in range(1, top + 1):
                status, block = clients[i].request("GET", f"/blocks/{h}")
                assert status == 200, f"node {i}: GET /blocks/{h} -> {status} {block}"
                blocks[i][h] = block
        first = blocks[0]
        for i in cluster.all[1:]:
            for h in range(1, top + 1):
                assert blocks[i][h]["txs"] == first[h]["txs"], f"node {i}: block {h}'s transactions differ"
                assert blocks[i][h]["app_hash"] == first[h]["app_hash"], f"node {i}: block {h}'s app hash"
        occurrences: Counter[bytes] = Counter()
        authors: set[int] = set()
        for h, block in first.items():
            block_txs = [base64.b64decode(t) for t in block["txs"]]
            occurrences.update(block_txs)
            proofs = block.get("batches", [])
            assert isinstance(proofs, list)
            # A block's transactions are exactly its batches' (txs without proofs: none).
            assert sum(p["tx_count"] for p in proofs) == len(block_txs), f"block {h}: {proofs}"
            authors.update(p["author"] for p in proofs)
        missing = [tx for tx in txs if occurrences[tx] == 0]
        assert not missing, f"{len(missing)} acknowledged puts are in no block, e.g. {missing[0]!r}"
        # Each acknowledged height holds the put it acknowledged, on every node.
        for h_tx, h in list(result.committed.items())[:: max(1, N_TXS // 100)]:
            for i in cluster.all:
                held = {tx_hash(base64.b64decode(t)) for t in blocks[i][h]["txs"]}
                assert h_tx in held, f"node {i}: block {h} does not show tx {h_tx} it committed"
        assert len(authors) >= 2, f"batches by {sorted(authors)} only, though every node took clients"
        # A retried batch may sit in two validators' batches: it is executed once (the ledger
        # skips a committed transaction), so every value is the one put.
        for i in cluster.all:
            for key, value in values.items():
                status, found = clients[i].request("GET", f"/kv/{key}")
                assert status == 200 and found["value"] == value, f"node {i}: /kv/{key} -> {status} {found}"
        twice = sum(1 for tx in txs if occurrences[tx] > 1)
        print(f"{top} blocks, batches by validators {sorted(authors)}, {twice} puts in two batches")
    finally:
        for client in clients.values():
            client.close()

    # The client, trusting no node, proves blocks with batches committed.
    with Client(f"http://127.0.0.1:{cluster.procs[1].api_port}", genesis=genesis, timeout_s=10.0) as prover:
        with_batches = [h for h, b in first.items() if b.get("batches")]
        assert with_batches
        for h in with_batches[:: max(1, len(with_batches) // 10)]:
            verified = prover.block(h)
            assert verified is not None and verified.id == ids[h] and verified.proven_committed, h
            assert verified.batches and len(verified.txs) == sum(p.info.tx_count for p in verified.batches)

    # No gossip: every node refuses and counts gossiped transactions under the quorum store, and
    # none counted any; nor did any log a refusal of gossip. Each runs the quorum store.
    for i in cluster.all:
        text = _metrics(cluster.procs[i].api_port)
        gossip = [line for line in text.splitlines() if 'what="gossiped transactions"' in line]
        assert not gossip, f"node {i} was gossiped to: {gossip}"
        assert _metric(text, "bft_app_hash_mismatches_total") == 0, f"node {i} saw app-hash claims differ"
        lines = cluster.log_lines(i)
        assert any("event=started" in line and "quorum_store=yes" in line for line in lines), f"node {i}"
        assert not [line for line in lines if "gossiped transactions" in line or "gossip-off" in line]
    cluster.check_alive()
