"""The node's own gates on what a validator can make it hold: requests from a peer that does not
read its answers are refused unread, and a peer's gossip fills only its share of the mempool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_helpers import Recording

from bft.core import wire
from bft.core.blocktree import genesis
from bft.core.messages import BlockRequest, SyncInfo, SyncRequest
from bft.node.compose import open_ports
from bft.node.gossip import Transactions, encode_transactions
from bft.node.runtime import Node
from bft.node.testnet import write_testnet


def _node(tmp_path: Path, port: int) -> Node:
    node = Node(write_testnet(4, tmp_path, port)[0])
    node._start_program(open_ports(node.safety_store, node.blocks, node.executor, node.mempool, node.batches))
    return node


def _refusals(node: Node, what: str, reason: str) -> float:
    prefix = f'bft_refusals_total{{reason="{reason}",what="{what}"}} '
    lines = [line for line in node.render_metrics().decode().splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


async def test_requests_from_a_peer_that_does_not_read_are_refused_unread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node(tmp_path, 29800)
    program = Recording()
    # What the transport reports queued per peer (`Transport.queued_bytes`).
    queued = {1: 0, 2: 0, 3: 0}
    node._queued_bytes = queued.__getitem__
    limit = wire.response_budget_bytes(4)
    tip = genesis(node.genesis.chain_id)[0].id
    sync, fetch = wire.encode(SyncRequest(1, 256)), wire.encode(BlockRequest(tip, 32))
    queued[3] = limit - 1  # just under one full answer: it still reads
    node._on_frame(program, 3, sync, 1.0)
    assert [m for _, m in program.messages] == [SyncRequest(1, 256)]
    queued[3] = limit
    with caplog.at_level("INFO", logger="bft.node"):
        for _ in range(10_000):
            node._on_frame(program, 3, sync, 1.0)
            node._on_frame(program, 3, fetch, 1.0)
    assert len(program.messages) == 1, "nothing from a peer that does not read reached the program"
    assert _refusals(node, "sync request", "peer-not-reading") == 10_000
    assert _refusals(node, "block request", "peer-not-reading") == 10_000
    lines = [r.getMessage() for r in caplog.records if "reason=peer-not-reading" in r.getMessage()]
    assert len(lines) == 2, "logged once per kind, thinned; counted exactly"
    assert all("peer=3" in line and f"limit {limit}" in line for line in lines)
    # Other peers, and other messages from the same peer, are not affected.
    node._on_frame(program, 2, sync, 1.0)
    node._on_frame(program, 3, wire.encode(SyncInfo(genesis(node.genesis.chain_id)[1], None)), 1.0)
    assert [s for s, _ in program.messages] == [3, 2, 3]
    node.blocks.close()


def _put(i: int, who: str) -> bytes:
    return json.dumps({"op": "put", "key": f"{who}-{i}", "value": "v"}).encode()


async def test_a_peer_gossiping_a_mempools_worth_fills_only_its_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node(tmp_path, 29820)
    program = Recording()
    share_txs, _ = node.config.mempool.peer_shares(4)
    assert share_txs == node.config.mempool.max_txs // 4
    flood = [_put(i, "flood") for i in range(node.config.mempool.max_txs)]
    with caplog.at_level("INFO", logger="bft.node"):
        for start in range(0, len(flood), 1000):
            frame = encode_transactions(Transactions(tuple(flood[start : start + 1000])))
            node._on_frame(program, 3, frame, 1.0)
    assert len(node.mempool) == share_txs
    assert node.mempool.share_of(3)[0] == share_txs
    messages_over = (len(flood) - share_txs) // 1000
    assert _refusals(node, "gossiped transactions", "peer-share-full") == messages_over
    lines = [r.getMessage() for r in caplog.records if "reason=peer-share-full" in r.getMessage()]
    assert len(lines) == 1 and "peer=3" in lines[0]
    # Clients and the other peers still get in.
    results, full = await node.submit([_put(i, "client") for i in range(1000)], wait_commit=False)
    assert not full and {r["status"] for r in results} == {"accepted"}
    other = Transactions(tuple(_put(i, "p1") for i in range(1000)))
    node._on_frame(program, 1, encode_transactions(other), 1.0)
    assert node.mempool.share_of(1)[0] == 1000
    assert len(node.mempool) == share_txs + 2000
    node.blocks.close()


async def test_gossip_from_a_peer_whose_share_is_full_is_refused_without_reading_it(tmp_path: Path) -> None:
    node = _node(tmp_path, 29830)
    program = Recording()
    share_txs, _ = node.config.mempool.peer_shares(4)
    fill = [_put(i, "fill") for i in range(share_txs)]
    for start in range(0, len(fill), 1000):
        node._on_frame(program, 3, encode_transactions(Transactions(tuple(fill[start : start + 1000]))), 1.0)
    assert node.mempool.share_full(3)
    looked_up: list[bytes] = []

    def committed(tx: bytes) -> bool:
        looked_up.append(tx)
        return False

    node.mempool._committed = committed
    over = Transactions(tuple(_put(i, "over") for i in range(1000)))
    node._on_frame(program, 3, encode_transactions(over), 1.0)
    # Not one transaction of the message was looked up in the block store, or even admitted
    # one by one (the pool counts every transaction it is offered).
    assert looked_up == []
    assert node.mempool.stats().share_full == 0
    assert len(node.mempool) == share_txs
    assert _refusals(node, "gossiped transactions", "peer-share-full") == 1
    node.blocks.close()


async def test_a_peer_whose_transactions_keep_committing_is_held_to_its_gossip_rate(tmp_path: Path) -> None:
    node = _node(tmp_path, 29840)
    program = Recording()
    share_txs, _ = node.config.mempool.peer_shares(4)
    sent = [_put(i, "fast") for i in range(3 * share_txs)]
    chunks = [sent[i : i + 1000] for i in range(0, len(sent), 1000)]
    per_second = share_txs // 1000

    def gossip(chunk: list[bytes], now: float) -> None:
        node._on_frame(program, 3, encode_transactions(Transactions(tuple(chunk))), now)

    for chunk in chunks[:per_second]:
        gossip(chunk, 1.0)
    assert node.mempool.share_of(3)[0] == share_txs
    node.mempool.remove_committed(sent[:share_txs])  # its share empties as they commit
    gossip(chunks[per_second], 1.0)  # the same second: over its rate, refused whole
    assert node.mempool.share_of(3)[0] == 0
    assert _refusals(node, "gossiped transactions", "gossip-rate") == 1
    gossip(chunks[per_second], 2.0)  # a second later the budget has refilled
    assert node.mempool.share_of(3)[0] == 1000
    node.blocks.close()
