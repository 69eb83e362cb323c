"""Pruning the block store below a retention height: blocks, commit records, execution records and
results go, the transaction index stays (identical bytes stay one transaction for the chain's
whole life), the base survives a reopen, and nothing not yet executed can be pruned.

Volume: 3,000 committed blocks of 20 transactions each, pruned in steps as the node prunes them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from core_helpers import GENESIS_BLOCK, make_block, qc_for

from bft.app.kv import KeyValueLedger, put_tx
from bft.core.messages import Block
from bft.node.config import (
    MIN_RETAIN_BLOCKS,
    GenesisValidator,
    StorageSettings,
    load_genesis,
    load_node_config,
)
from bft.node.errors import ConfigError, StorageError
from bft.node.executor import Executor
from bft.node.runtime import check_retention
from bft.node.storage import PRUNE_STEP_HEIGHTS, BlockStore, StoredResult
from bft.node.testnet import write_testnet
from crypto.hashing import sha256
from crypto.keys import PrivateKey

HEIGHTS = 3000
TXS_PER_BLOCK = 20


def _chain(count: int, parent: Block = GENESIS_BLOCK, tag: str = "") -> list[Block]:
    blocks = []
    for _ in range(count):
        h = parent.height + 1
        txs = tuple(put_tx(f"k{h % 97}", f"v{h}-{i}{tag}", nonce=i) for i in range(TXS_PER_BLOCK))
        parent = make_block(parent, parent.view + 1, txs=txs)
        blocks.append(parent)
    return blocks


BLOCKS = _chain(HEIGHTS)


def _store_all(store: BlockStore, blocks: list[Block]) -> None:
    """Commit `blocks` three at a time, each height recorded as executed."""
    for start in range(0, len(blocks), 3):
        run = blocks[start : start + 3]
        store.append(run, [qc_for(b) for b in run], qc_for(run[-1]))
        for b in run:
            store.record_execution(b.height, sha256(b.id), [StoredResult(0, "", b"")] * len(b.txs))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pruning") / "blocks.sqlite"
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        _store_all(store, BLOCKS)
    return path


def _copy(stored: Path, tmp_path: Path) -> Path:
    target = tmp_path / "blocks.sqlite"
    source = sqlite3.connect(stored)
    dest = sqlite3.connect(target)
    source.backup(dest)
    source.close()
    dest.close()
    return target


def test_pruning_in_steps_keeps_the_index_and_everything_above_the_base(stored: Path, tmp_path: Path) -> None:
    path = _copy(stored, tmp_path)
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        assert store.base == 0
        steps = 0
        while store.base < 1999:
            store.prune_below(2000, max_heights=64)
            steps += 1
        assert steps == -(-1999 // 64), "each step moves the base at most 64 heights"
        assert store.base == 1999 and store.height == HEIGHTS
        assert store.block_at(1999) is None and store.block_at(1) is None
        kept = store.block_at(2000)
        assert kept is not None and kept.block == BLOCKS[1999] and kept.commit_proof, "proofs above stay"
        assert store.committed_range(1999, 10, 10**9) == ((), None)
        run, qc = store.committed_range(2000, 10, 10**9)
        assert [b.height for b in run] == list(range(2000, 2010)) and qc is not None
        # The index still answers for transactions of pruned heights; their results are gone.
        first = BLOCKS[0].txs[3]
        assert store.has_tx(first) and store.tx_location(sha256(first)) == (1, 3)
        assert store.tx_result(1, 3) is None and store.tx_result(2500, 3) is not None
        assert store.app_hash_at(1998) is None and store.app_hash_at(1999) == sha256(BLOCKS[1998].id)
        # Pruning to where it is, or lower, is a no-op.
        assert store.prune_below(1500) == 1999
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as reopened:
        assert reopened.base == 1999 and reopened.height == HEIGHTS
        assert reopened.tip() is not None
        # A transaction whose bytes first committed in a pruned block still repeats.
        again = make_block(BLOCKS[-1], BLOCKS[-1].view + 1, txs=(BLOCKS[0].txs[0], b"fresh"))
        reopened.append([again], [qc_for(again)], qc_for(again))
        assert reopened.repeated_positions(again) == frozenset({0})
    db = sqlite3.connect(path)
    try:
        tables = ("blocks", "results", "txs")
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        db.close()
    assert counts["blocks"] == HEIGHTS + 1 - 1999
    assert counts["results"] == (HEIGHTS - 1999) * TXS_PER_BLOCK
    assert counts["txs"] >= HEIGHTS * TXS_PER_BLOCK - 4096, "the index is pruned of nothing"


def test_what_is_not_executed_is_never_pruned(stored: Path, tmp_path: Path) -> None:
    path = _copy(stored, tmp_path)
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        more = _chain(3, BLOCKS[-1], tag="-late")
        store.append(more, [qc_for(b) for b in more], qc_for(more[-1]))
        with pytest.raises(StorageError, match="executed to 3000"):
            store.prune_below(3002)
        assert store.base == 0 and store.block_at(1) is not None, "a refused prune removes nothing"
        assert store.prune_below(3000) == 2999, "up to the last executed height is allowed"
        tip = store.tip()
        assert tip is not None and tip[0] == more[-1]


def test_an_application_behind_the_base_is_refused_with_what_to_do(stored: Path, tmp_path: Path) -> None:
    path = _copy(stored, tmp_path)
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        store.prune_below(1001)
        with (
            KeyValueLedger(tmp_path / "app.sqlite") as app,
            pytest.raises(StorageError, match="above 1000 only") as refused,
        ):
            Executor(app, store).start()
    assert "state sync" in str(refused.value)


def test_a_version_6_store_gains_the_base_and_keeps_its_blocks(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        _store_all(store, BLOCKS[:30])
    db = sqlite3.connect(path)
    db.execute("DROP TABLE chain_base")
    db.execute("PRAGMA user_version=6")
    db.commit()
    db.close()
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        assert store.base == 0 and store.height == 30
        assert store.prune_below(11) == 10
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        assert store.base == 10


def test_keep_latest_prunes_in_steps_behind_the_retention(stored: Path, tmp_path: Path) -> None:
    path = _copy(stored, tmp_path)
    with BlockStore(path, genesis_id=GENESIS_BLOCK.id) as store:
        assert not store.keep_latest(0, HEIGHTS), "0 keeps everything"
        assert not store.keep_latest(HEIGHTS - PRUNE_STEP_HEIGHTS + 1, HEIGHTS), "less than a step past it"
        assert store.keep_latest(HEIGHTS - PRUNE_STEP_HEIGHTS, HEIGHTS)
        assert store.base == PRUNE_STEP_HEIGHTS
        calls = 0
        while store.keep_latest(1000, HEIGHTS):
            calls += 1
        assert HEIGHTS - 1000 - PRUNE_STEP_HEIGHTS < store.base <= HEIGHTS - 1000
        assert calls == -(-(store.base - PRUNE_STEP_HEIGHTS) // PRUNE_STEP_HEIGHTS)


def test_a_retention_is_read_from_config_toml_and_bounded(tmp_path: Path) -> None:
    write_testnet(4, tmp_path, 29950, leader_reputation=True)
    home = tmp_path / "node0"
    assert load_node_config(home).storage == StorageSettings(0)
    with (home / "config.toml").open("a") as f:
        f.write("\n[storage]\nretain_blocks = 300\n")
    config = load_node_config(home)
    assert config.storage.retain_blocks == 300
    check_retention(config, load_genesis(config.genesis_file))
    for bad in (1, MIN_RETAIN_BLOCKS - 1, -5):
        with pytest.raises(ConfigError, match="retain_blocks"):
            StorageSettings(bad)
    # Leader reputation reads 10 blocks per validator below the tip: 30 validators need 364.
    big = replace(load_genesis(config.genesis_file), validators=_validators(30))
    with pytest.raises(ConfigError, match="below the 364 blocks that leader"):
        check_retention(config, big)


def _validators(n: int) -> tuple[GenesisValidator, ...]:
    return tuple(
        GenesisValidator(
            i, PrivateKey.generate().public_key, f"127.0.0.1:{30000 + 2 * i}", f"127.0.0.1:{30001 + 2 * i}"
        )
        for i in range(n)
    )
