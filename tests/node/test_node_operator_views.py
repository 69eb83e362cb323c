"""What the runtime shows the operator endpoints (`Node.health`, `net_info`, `consensus_state`,
`unconfirmed_txs`), read from a real node's parts on a virtual clock, without its transport
running (the cluster test covers the connected case)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing

from bft.core.leader import leader_of
from bft.core.types import View
from bft.node.compose import open_ports
from bft.node.health import commit_window_s
from bft.node.mempool import tx_hash
from bft.node.runtime import UPCOMING_LEADERS, Node
from bft.node.testnet import write_testnet


def _started(home: Path) -> Node:
    node = Node(home)
    node._start_program(open_ports(node.safety_store, node.blocks, node.executor, node.mempool, node.batches))
    return node


def _follower_home(homes: list[Path]) -> Path:
    """A node that does not lead view 1, so that its first deadline is a timeout."""
    probe = Node(homes[0])
    try:
        first_leader = int(leader_of(probe.replica_config, View(1)))
    finally:
        probe.blocks.close()
    return homes[(first_leader + 1) % len(homes)]


async def test_consensus_state_of_a_fresh_replica_then_after_its_own_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    homes = write_testnet(4, tmp_path, 29800)
    node = _started(_follower_home(homes))
    try:
        program = node.program
        assert program is not None
        node._perform(program.on_timer(trio.current_time()))  # the start
        state = node.consensus_state()
        assert state.view == 1 and state.height == 0
        assert state.leader == leader_of(node.replica_config, View(1))
        assert state.upcoming_leaders == tuple(
            (v, int(leader_of(node.replica_config, View(v)))) for v in range(2, 2 + UPCOMING_LEADERS)
        )
        assert (state.high_qc.view, state.locked_qc.view, state.last_voted_view) == (0, 0, 0)
        assert state.last_tc is None
        assert (state.timeouts_seen, state.timeouts_sent, state.quorum) == ((), 0, 3)
        assert state.next_deadline_in_s == node.replica_config.base_timeout_s

        await trio.sleep(node.replica_config.base_timeout_s)
        node._perform(program.on_timer(trio.current_time()))
        state = node.consensus_state()
        assert (state.view, state.timeouts_seen, state.timeouts_sent) == (1, (int(node.me),), 1)
        assert state.time_in_view_s == node.replica_config.base_timeout_s
        deadline = program.next_deadline()
        assert deadline is not None
        await trio.sleep(deadline - trio.current_time())
        node._perform(program.on_timer(trio.current_time()))  # the re-send at the backed-off deadline
        assert node.consensus_state().timeouts_sent == 2
    finally:
        node.blocks.close()


async def test_health_of_a_node_alone_names_both_failures(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = _started(write_testnet(4, tmp_path, 29820)[0])
    try:
        window_s = commit_window_s(node.replica_config.base_timeout_s)
        health = node.health()
        assert (health.healthy, health.reason) == (False, "connected to 1 of 4 validators, a quorum is 3")
        assert (health.commit_window_s, health.height) == (window_s, 0)
        await trio.sleep(window_s + 1)
        health = node.health()
        assert health.reason is not None and health.reason.endswith(
            f"no commit since start for {window_s + 1:.1f} s (at most {window_s:.1f} s)"
        )
    finally:
        node.blocks.close()


async def test_net_info_lists_every_peer_and_unconfirmed_txs_the_oldest_first(tmp_path: Path) -> None:
    node = _started(write_testnet(4, tmp_path, 29840)[0])
    try:
        info = node.net_info()
        assert info.listening == (node.config.p2p_listen,)
        assert [p.index for p in info.peers] == [1, 2, 3]
        assert [p.address for p in info.peers] == [v.p2p for v in node.genesis.validators[1:]]
        assert info.n_peers == 0
        assert all(not p.connected and p.dialed_by is None and p.connected_for_s is None for p in info.peers)

        txs = [json.dumps({"op": "put", "key": f"k{i}", "value": "v"}).encode() for i in range(5)]
        for tx in txs:
            assert node.mempool.add(tx).ok
        pending = node.unconfirmed_txs(3)
        assert (pending.count, pending.size_bytes) == (5, sum(map(len, txs)))
        assert pending.hashes == tuple(tx_hash(tx) for tx in txs[:3])
        assert node.unconfirmed_txs(0).hashes == ()
    finally:
        node.blocks.close()
