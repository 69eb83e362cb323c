"""Four honest nodes as real processes under the two-chain commit rule (a genesis written by
`bft testnet --commit-chain 2`): transactions submitted with wait=commit commit, every node has
the same chain, and the Python client, given the genesis, proves the blocks committed with
one-block commit proofs (b' of a two-chain b <- b'), which a three-chain client refuses."""

from __future__ import annotations

import dataclasses

import pytest
from cluster_helpers import MakeCluster, assert_same_chain

from bft.app.kv import put_tx
from bft.client import CertificateError, Client, tx_hash
from bft.node.config import load_genesis

TXS = 20
# The first put is sent once every node answers; each submission waits for its commit.
COMMIT_TIMEOUT_S = 20.0
START_TIMEOUT_S = 15.0


def test_a_two_chain_cluster_commits_and_the_client_verifies_its_blocks(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(4, commit_chain=2)
    genesis = load_genesis(cluster.root / "genesis.json")
    assert genesis.commit_chain == 2
    cluster.start_all()
    cluster.wait_up(timeout_s=START_TIMEOUT_S)

    url = f"http://127.0.0.1:{cluster.procs[0].api_port}"
    txs = [put_tx(f"two-chain-{i}", f"v{i}") for i in range(TXS)]
    with Client(url, genesis, timeout_s=COMMIT_TIMEOUT_S) as client:
        results = client.submit(txs[: TXS // 2], wait="commit") + client.submit(
            txs[TXS // 2 :], wait="commit"
        )
        assert [r.status for r in results] == ["committed"] * TXS, results
        tx_heights = {r.height for r in results if r.height is not None}
        assert len(tx_heights) >= 2, tx_heights  # two submissions, one after the other's commit
        top = client.status()["height"]
        heights = sorted({1, 2, *tx_heights, top})
        verified = {h: client.block(h) for h in heights}
    for h, block in verified.items():
        assert block is not None and block.height == h and block.proven_committed, h
    for r in results:
        held = verified[r.height or 0]
        assert held is not None and r.hash in {tx_hash(tx) for tx in held.txs}, r
    # With views following each other, the two-chain b <- b' is the shortest proof: one block.
    one_block = [h for h, b in verified.items() if b is not None and len(b.commit_proof) == 1]
    assert one_block, {h: len(b.commit_proof) for h, b in verified.items() if b is not None}
    three_chain = dataclasses.replace(genesis, commit_chain=3)
    with (
        Client(url, three_chain, timeout_s=COMMIT_TIMEOUT_S) as strict,
        pytest.raises(CertificateError, match=r"need at least 2 \(b' and b'' of a three-chain\)"),
    ):
        strict.block(one_block[0])
    cluster.wait_heights(cluster.all, top, COMMIT_TIMEOUT_S, f"every node to reach height {top}")
    assert_same_chain(cluster, cluster.all, range(1, top + 1))
