"""The node's composition of its ports (`bft.node.compose.open_ports`), and its block store and
ledger over an open in-memory database (`BlockStore.over`, `KeyValueLedger.over`), which the
simulator uses: the same schema and transactions, a committed transaction kept by the database
across new store objects, an interrupted one rolled back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from core_helpers import GENESIS_BLOCK, MemoryStore
from test_node_executor import BLOCKS, COMMITS, Node, commit_of

from bft.app.kv import KeyValueLedger
from bft.core.batch_store import MemoryBatchStore
from bft.core.ports import PayloadSource
from bft.core.types import View
from bft.node.compose import open_ports
from bft.node.executor import Executor
from bft.node.storage import BlockStore


class NoPayload:
    def payload_for(self, view: View, exclude: object) -> tuple[bytes, ...]:
        return ()


class Interrupted(BaseException):
    """The process died at a COMMIT."""


class DiesAtCommit(sqlite3.Connection):
    armed = False

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.armed:
            self.armed = False
            raise Interrupted
        return super().execute(sql, parameters)  # type: ignore[arg-type]


def _memory() -> DiesAtCommit:
    db = sqlite3.connect(":memory:", factory=DiesAtCommit)
    assert isinstance(db, DiesAtCommit)
    return db


def test_open_ports_replays_the_executor_and_composes_the_nodes_ports(tmp_path: Path) -> None:
    reference = Node(tmp_path / "reference")
    for blocks in COMMITS:
        reference.commit(commit_of(blocks))
    node = Node(tmp_path / "node")
    node.executor.start()
    node.commit(commit_of(COMMITS[0]))
    node.store_only(commit_of(COMMITS[1]))
    payload: PayloadSource = NoPayload()
    executor = Executor(node.app, node.store)
    ports = open_ports(MemoryStore(), node.store, executor, payload, MemoryBatchStore())
    # The block the last process stored but did not apply was replayed: the ledger is where
    # the reference's was at that height.
    height = COMMITS[1][-1].height
    assert executor.executed() == (height, reference.executor.app_hash_at(height))
    assert ports.journal is node.store and ports.committed is node.store
    assert ports.executed is executor and ports.payload is payload


def test_a_store_over_an_open_database_keeps_commits_across_store_objects() -> None:
    db = _memory()
    store = BlockStore.over(db, "blocks", genesis_id=GENESIS_BLOCK.id)
    store.add([BLOCKS[0]])
    db.armed = True
    with pytest.raises(Interrupted):
        store.add([BLOCKS[1]])
    again = BlockStore.over(db, "blocks", genesis_id=GENESIS_BLOCK.id)
    assert [b.id for b in again.blocks()] == [BLOCKS[0].id]
    executor = Executor(KeyValueLedger.over(_memory(), "ledger"), again)
    executor.start()
    executor.on_commit(commit_of(COMMITS[0]))
    assert BlockStore.over(db, "blocks").height == COMMITS[0][-1].height


def test_a_ledger_over_an_open_database_rolls_back_an_interrupted_commit() -> None:
    db = _memory()
    ledger = KeyValueLedger.over(db, "ledger")
    ledger.execute_block(1, BLOCKS[0].txs)
    first = ledger.commit()
    ledger.execute_block(2, BLOCKS[1].txs)
    db.armed = True
    with pytest.raises(Interrupted):
        ledger.commit()
    again = KeyValueLedger.over(db, "ledger")
    assert (again.info().last_height, again.info().app_hash) == (1, first)
    assert again.app_hash_at(2) is None
