"""The simulated node's storage is the node's own (`bft.campaign.NodeSimStorage`: BlockStore,
Executor and KeyValueLedger on in-memory SQLite, composed by `bft.node.compose.open_ports`):
a crash at a COMMIT rolls that transaction back, a restart replays what the application had not
applied, and campaigns that crash nodes between the block store's append and the ledger's
commit end with every honest ledger at the same app hashes."""

from __future__ import annotations

import sqlite3

import pytest

from bft.app import kv
from bft.app.interface import GENESIS_APP_HASH
from bft.app.kv import KeyValueLedger
from bft.campaign import FACTORIES, NodeSimStorage
from bft.core.actions import Commit
from bft.core.blocktree import genesis
from bft.core.messages import Block, QuorumCert, SafetyState
from bft.core.ports import Ports
from bft.core.safety_store import DurableFileStore
from bft.core.types import ValidatorIndex, View
from bft.sim import SimCrash, SimDisk, SimSpec, StorageContext, run_schedule
from bft.sim.node import SimPayload
from bft.sim.storage import ObservedExecuted
from bft.sim.world import TraceEntry

CHAIN_ID = "sim"
GENESIS_BLOCK, GENESIS_QC = genesis(CHAIN_ID)


def _chain(length: int) -> list[Block]:
    """Blocks 1..length in consecutive views, each with two key-value transactions."""
    blocks: list[Block] = []
    parent, qc = GENESIS_BLOCK, GENESIS_QC
    for height in range(1, length + 1):
        txs = (kv.put_tx("k", f"v{height}", nonce=height), kv.cas_tx("k", f"v{height}", "x", nonce=height))
        block = Block(View(height), height, parent.id, ValidatorIndex(0), qc, txs, 0, GENESIS_APP_HASH)
        parent, qc = block, QuorumCert(block.view, block.id, ())
        blocks.append(block)
    return blocks


BLOCKS = _chain(6)


def _commit(first: int, last: int) -> Commit:
    """The commit of heights first..last (1-based), with the two blocks above as its proof."""
    blocks = tuple(BLOCKS[first - 1 : last])
    qcs = tuple(QuorumCert(b.view, b.id, ()) for b in blocks)
    proof = (BLOCKS[last], BLOCKS[last + 1]) if last + 1 < len(BLOCKS) else ()
    return Commit(blocks, qcs, QuorumCert(View(last + 2), blocks[-1].id, ()), proof)


class Node:
    """One simulated machine's disk and storage, opened the way SimNode opens them."""

    def __init__(self) -> None:
        self.disk = SimDisk()
        self.storage = NodeSimStorage(StorageContext("0", CHAIN_ID, self.disk.commit_point))
        self.heard: list[Commit] = []

    def open(self) -> Ports:
        ports = self.storage.open(DurableFileStore(self.disk), SimPayload())
        return Ports(
            ports.safety_store,
            ports.journal,
            ObservedExecuted(ports.executed, self.storage, self.heard.append),
            ports.committed,
            ports.payload,
            ports.batches,
        )

    def crash(self) -> None:
        self.disk.crash()


def _reference_hashes() -> list[bytes | None]:
    node = Node()
    ports = node.open()
    ports.executed.on_commit(_commit(1, 2))
    ports.executed.on_commit(_commit(3, 4))
    return [node.storage.app_hash_at(h) for h in range(5)]


def test_the_ledger_executes_the_transactions_and_its_app_hashes_are_the_executors() -> None:
    node = Node()
    ports = node.open()
    ports.executed.on_commit(_commit(1, 2))
    hashes = [node.storage.app_hash_at(h) for h in range(3)]
    assert hashes[0] == GENESIS_APP_HASH and None not in hashes and len(set(hashes)) == 3
    assert [ports.executed.app_hash_at(h) for h in range(3)] == hashes
    assert node.storage.height == 2 and ports.committed.has_tx(BLOCKS[1].txs[0])
    assert node.heard == [_commit(1, 2)]


# The durable steps of the commit of heights 3 and 4 after arming: 1 the block store's one
# transaction (the append, height 3's execution record and the journal's prune: group commit),
# 2 the ledger's commit of height 3, 3 height 4's execution record, 4 the ledger's commit of
# height 4. A crash on any but 1 falls between the append and an application commit.
@pytest.mark.parametrize("crash_at", [2, 3, 4])
def test_a_crash_between_append_and_app_commit_is_replayed_on_restart(crash_at: int) -> None:
    reference = _reference_hashes()
    node = Node()
    ports = node.open()
    ports.executed.on_commit(_commit(1, 2))
    node.disk.crash_after_ops(crash_at)
    with pytest.raises(SimCrash):
        ports.executed.on_commit(_commit(3, 4))
    node.crash()
    # The commit is durable (the block store has it), so the simulator heard of it; the ledger
    # is behind it until the restart's info handshake replays it.
    assert node.storage.height == 4
    assert node.heard == [_commit(1, 2), _commit(3, 4)]
    assert node.storage.app_hash_at(4) is None
    ports = node.open()
    assert [node.storage.app_hash_at(h) for h in range(5)] == reference
    assert [ports.executed.app_hash_at(h) for h in range(5)] == reference
    # Each block applied once: the ledger's state is the reference's (k was cas'ed to "x").
    assert node.storage.app_hash_at(4) == reference[4]


def test_a_crash_at_the_append_loses_the_commit_and_nothing_is_heard() -> None:
    node = Node()
    ports = node.open()
    ports.executed.on_commit(_commit(1, 2))
    node.disk.crash_after_ops(1)
    with pytest.raises(SimCrash):
        ports.executed.on_commit(_commit(3, 4))
    node.crash()
    assert node.storage.height == 2 and node.heard == [_commit(1, 2)]
    ports = node.open()
    assert ports.committed.tip() == (BLOCKS[1], QuorumCert(BLOCKS[1].view, BLOCKS[1].id, ()))
    ports.executed.on_commit(_commit(3, 4))
    assert [node.storage.app_hash_at(h) for h in range(5)] == _reference_hashes()


def test_a_crash_at_a_journal_write_loses_it_and_a_committed_one_survives() -> None:
    node = Node()
    ports = node.open()
    ports.journal.add([BLOCKS[0]])
    node.disk.crash_after_ops(1)
    with pytest.raises(SimCrash):
        ports.journal.add([BLOCKS[1]])
    node.crash()
    assert [b.id for b in node.open().journal.blocks()] == [BLOCKS[0].id]


def test_the_safety_store_stays_on_the_simulated_disk() -> None:
    node = Node()
    ports = node.open()
    state = SafetyState(View(3), GENESIS_QC, View(0), None, None)
    ports.safety_store.save(state)
    node.crash()
    assert node.open().safety_store.load() == state


def test_the_app_hash_is_the_key_value_ledgers() -> None:
    node = Node()
    node.open().executed.on_commit(_commit(1, 1))
    with KeyValueLedger.over(sqlite3.connect(":memory:"), "reference") as ledger:
        ledger.execute_block(1, BLOCKS[0].txs)
        assert node.storage.app_hash_at(1) == ledger.commit()
        # The cas in block 1 matched the put before it.
        assert ledger.get("k") == ("x", 1)


def test_campaigns_crash_between_append_and_ledger_commit_and_the_ledgers_agree() -> None:
    """Some crashes are aimed at the ledger's commit, after the block store's append: those nodes
    restart, replay the block, and every honest ledger agrees at every height (the app-state
    invariant), with no violation."""
    spec = SimSpec(nodes=4)
    hits = 0
    for seed in range(60):
        trace: list[TraceEntry] = []
        result = run_schedule(spec, seed, FACTORIES, trace=trace)
        assert result.ok, result.failure_report()
        crashed = [who for _, who, what in trace if "injected crash at application commit" in what]
        if crashed:
            hits += 1
            assert any(w == crashed[0] and "incarnation 2" in what for _, w, what in trace)
        if hits >= 2:
            return
    pytest.fail(f"only {hits} schedules in seeds 0..59 crashed between append and ledger commit")
