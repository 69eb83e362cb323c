"""The block store's transaction index, written in bulk: rows wait in memory up to a bound, a
restart re-indexes the heights above the indexed one from the stored blocks, and every answer
(`tx_location`, `has_tx`, `repeated_positions`) is the one an index written at every append gives.

The model test would have caught each of these mutations of `bft.node.storage` (each tried):
the re-index on open skipped (`_reindex` leaving the waiting rows empty), the waiting rows
dropped when the index is written (`new` instead of `self._unindexed | new`), lookups that
read only `txs` (the waiting rows unread), and repeats found only within the append."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from bft.core.blocktree import genesis
from bft.core.messages import Block, QuorumCert
from bft.core.types import ValidatorIndex, View
from bft.node import storage
from bft.node.errors import StorageError
from bft.node.storage import (
    MAX_UNINDEXED_HEIGHTS,
    MAX_UNINDEXED_TXS,
    SCHEMA_VERSION,
    BlockStore,
    schema_version_of,
)
from crypto.hashing import sha256

GENESIS, GENESIS_QC = genesis("tx-index-test")
# Low bounds, so that the model test writes the index dozens of times, by either bound.
BOUNDS = (300, 16)


def _qc(block: Block) -> QuorumCert:
    sigs = tuple((ValidatorIndex(i), bytes([i + 1]) * 64) for i in range(3))
    return QuorumCert(View(block.view), block.id, sigs)


class Chain:
    """Blocks of chosen transactions, each extending the last."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def next(self, txs: Sequence[bytes]) -> Block:
        parent, parent_qc = (self.blocks[-1], _qc(self.blocks[-1])) if self.blocks else (GENESIS, GENESIS_QC)
        block = Block(
            view=View(parent.view + 1),
            height=parent.height + 1,
            parent_id=parent.id,
            proposer=ValidatorIndex(0),
            qc=parent_qc,
            txs=tuple(txs),
        )
        self.blocks.append(block)
        return block


class Model:
    """The index as a dict written at every append: the first (height, position) of each tx."""

    def __init__(self) -> None:
        self.first: dict[bytes, tuple[int, int]] = {}
        self.repeats: dict[int, frozenset[int]] = {}

    def append(self, block: Block) -> None:
        repeated = set()
        for pos, tx in enumerate(block.txs):
            if tx in self.first:
                repeated.add(pos)
            else:
                self.first[tx] = (block.height, pos)
        self.repeats[block.height] = frozenset(repeated)


def _append(store: BlockStore, blocks: Sequence[Block]) -> None:
    store.append(list(blocks), [_qc(b) for b in blocks], _qc(blocks[-1]))


def _rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM txs").fetchone()[0])


def _check(store: BlockStore, model: Model, chain: Chain, pool: Sequence[bytes]) -> None:
    for tx in pool:
        assert store.tx_location(sha256(tx)) == model.first.get(tx)
        assert store.has_tx(tx) == (tx in model.first)
    for block in chain.blocks:
        assert store.repeated_positions(block) == model.repeats[block.height], block.height


@pytest.mark.parametrize("seed", range(4))
def test_matches_an_index_written_at_every_append_across_reopens(tmp_path: Path, seed: int) -> None:
    """Random blocks drawn from a pool (so transactions repeat, within a block and across
    blocks, on both sides of every index write), appended one to four at a time, with the store
    closed and reopened at random points: every answer equals the model's."""
    rng = random.Random(seed)
    pool = [b"tx-%d" % i for i in range(3000)]
    path = tmp_path / "blocks.sqlite"
    chain, model = Chain(), Model()
    store = BlockStore(path, index_bounds=BOUNDS)
    try:
        for _ in range(80):
            sizes = [rng.choice((0, 1, 5, 40, 200)) for _ in range(rng.randint(1, 4))]
            blocks = [chain.next(rng.choices(pool, k=k)) for k in sizes]
            _append(store, blocks)
            for block in blocks:
                model.append(block)
            if rng.random() < 0.3:
                store.close()
                store = BlockStore(path, index_bounds=BOUNDS)
        _check(store, model, chain, pool)
        store.close()
        store = BlockStore(path, index_bounds=BOUNDS)
        _check(store, model, chain, pool)
        # Every row is in the file exactly once after it is written.
        assert _rows(path) <= len(model.first)
    finally:
        store.close()


def test_rows_wait_until_the_bound_then_go_in_one_write(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    chain = Chain()
    per_block = 1000
    below = MAX_UNINDEXED_TXS // per_block
    with BlockStore(path) as store:
        blocks = [chain.next([b"%d-%d" % (h, i) for i in range(per_block)]) for h in range(below + 1)]
        _append(store, blocks[:below])
        assert _rows(path) == 0
        assert store.tx_location(sha256(b"3-7")) == (4, 7)
        _append(store, blocks[below:])
        assert _rows(path) == (below + 1) * per_block
        assert store.tx_location(sha256(b"3-7")) == (4, 7)


def test_empty_heights_write_the_indexed_height(tmp_path: Path) -> None:
    """An idle chain (empty blocks) still moves the indexed height, so a restart never walks a
    long run of blocks to re-index."""
    path = tmp_path / "blocks.sqlite"
    chain = Chain()
    with BlockStore(path) as store:
        _append(store, [chain.next([b"first"])])
        for _ in range(MAX_UNINDEXED_HEIGHTS):
            _append(store, [chain.next([])])
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT height FROM tx_index").fetchone()[0] == MAX_UNINDEXED_HEIGHTS
    assert _rows(path) == 1


def test_blocks_of_ten_thousand_transactions(tmp_path: Path) -> None:
    """The quorum store's block limit (10,000 transactions): the write happens inside the append
    that passes the bound, and a reopen in between re-indexes a whole block."""
    path = tmp_path / "blocks.sqlite"
    chain, model = Chain(), Model()
    pool: list[bytes] = []
    again = [b"big-0-%d" % i for i in range(0, 9_000, 97)]
    for h in range(3):
        txs = [b"big-%d-%d" % (h, i) for i in range(10_000 - len(again))] + again
        pool += txs
        block = chain.next(txs)
        model.append(block)
        with BlockStore(path) as store:
            _append(store, [block])
    # The second block passed the bound and wrote both blocks' rows; the third's wait.
    assert _rows(path) == 2 * (10_000 - len(again))
    with BlockStore(path) as store:
        _check(store, model, chain, pool[::7])
        assert len(store.repeated_positions(chain.blocks[2])) == len(again)


def test_a_rolled_back_batch_leaves_nothing_waiting(tmp_path: Path) -> None:
    chain = Chain()
    b1, b2 = chain.next([b"kept"]), chain.next([b"lost", b"kept"])
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        _append(store, [b1])
        with pytest.raises(RuntimeError), store.batch("commit"):
            _append(store, [b2])
            raise RuntimeError("crash inside the batch")
        assert store.height == 1
        assert store.tx_location(sha256(b"lost")) is None
        assert store.tx_location(sha256(b"kept")) == (1, 0)
        _append(store, [b2])
        assert store.tx_location(sha256(b"lost")) == (2, 0)
        assert store.repeated_positions(b2) == frozenset({1})


def test_opens_a_schema_5_store_indexed_at_every_append(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    chain = Chain()
    blocks = [chain.next([b"a-%d" % h, b"b-%d" % h]) for h in range(3)]
    with BlockStore(path) as store:
        _append(store, blocks)
    # What a version 5 store looks like: every row in txs, no tx_index.
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO txs (hash, height, position) VALUES (?, ?, ?)",
            [(sha256(tx), b.height, pos) for b in blocks for pos, tx in enumerate(b.txs)],
        )
        db.execute("DROP TABLE tx_index")
        db.execute("PRAGMA user_version = 5")
    with BlockStore(path) as store:
        assert store.tx_location(sha256(b"b-1")) == (2, 1)
        _append(store, [chain.next([b"a-1", b"new"])])
        assert store.repeated_positions(chain.blocks[-1]) == frozenset({0})
    assert schema_version_of(path) == SCHEMA_VERSION


def test_refuses_a_newer_schema_untouched(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    with BlockStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="schema version"):
        BlockStore(path)
    assert schema_version_of(path) == SCHEMA_VERSION + 1


def test_repeats_below_the_kept_heights_are_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`repeated_positions` remembers the heights near the tip (REPEATS_KEPT_HEIGHTS); older ones
    are answered by index lookups, which must give the same positions."""
    monkeypatch.setattr(storage, "REPEATS_KEPT_HEIGHTS", 3)
    chain, model = Chain(), Model()
    with BlockStore(tmp_path / "blocks.sqlite", index_bounds=BOUNDS) as store:
        for h in range(12):
            block = chain.next([b"again", b"new-%d" % h, b"again", b"new-%d" % (h // 2)])
            model.append(block)
            _append(store, [block])
        for block in chain.blocks:
            assert store.repeated_positions(block) == model.repeats[block.height], block.height
