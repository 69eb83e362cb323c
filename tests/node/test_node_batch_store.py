"""SqliteBatchStore: the quorum store's batches in SQLite, durable per write, checked on read."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlite_helpers import counting_db

from bft.core.batches import Batch
from bft.core.ports import BatchStore
from bft.core.types import ValidatorIndex
from bft.node.batch_store import (
    BATCH_STORE_FILE,
    BATCHES_COMMIT,
    SCHEMA_VERSION,
    SqliteBatchStore,
    StoredBatch,
    decode_txs,
    encode_txs,
)
from bft.node.errors import StorageError


class _Crash(Exception):
    """Stands in for the simulator's SimCrash."""


def _batch(author: int, sequence: int, txs: int = 3, tx_bytes: int = 16, expiry: int = 100) -> Batch:
    """A batch whose transactions are distinct across authors and sequences."""
    return Batch(
        ValidatorIndex(author),
        sequence,
        expiry,
        tuple(
            f"{author}:{sequence}:{i}:".encode().ljust(tx_bytes, b"x")[:tx_bytes] if tx_bytes >= 16 else b"t"
            for i in range(txs)
        ),
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / BATCH_STORE_FILE


@pytest.fixture
def store(path: Path) -> Iterator[SqliteBatchStore]:
    with SqliteBatchStore(path) as s:
        yield s


def _statements(db: sqlite3.Connection) -> list[str]:
    """Every SQL statement `db` runs from now on, appended as it runs."""
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    return seen


def test_it_is_a_batch_store_port(store: SqliteBatchStore) -> None:
    port: BatchStore = store
    assert port.batches() == ()
    assert port.highest_sequence(0) == 0


def test_round_trip_at_volume_survives_reopen(path: Path) -> None:
    batches = [_batch(i % 4, 1 + i // 4, txs=500, tx_bytes=256) for i in range(200)]
    with SqliteBatchStore(path) as store:
        start = time.perf_counter()
        for batch in batches:
            store.put(batch)
        put_s = time.perf_counter() - start
        start = time.perf_counter()
        for batch in batches:
            assert store.get(batch.digest) == batch
        get_s = time.perf_counter() - start
        assert len(store) == 200
        assert store.size_bytes == 200 * 500 * 256
    print(
        f"\nbatch of 500 x 256 B: put {put_s / len(batches) * 1e3:.2f} ms, "
        f"get {get_s / len(batches) * 1e3:.2f} ms per batch"
    )
    with SqliteBatchStore(path) as store:
        assert store.batches() == tuple(sorted(batches, key=lambda b: (b.author, b.sequence)))
        assert [store.highest_sequence(a) for a in range(4)] == [50, 50, 50, 50]


def test_a_large_batch_with_a_64_kib_transaction_round_trips(path: Path) -> None:
    big = bytes(range(256)) * 256
    txs = (big, *(bytes([i]) * 1024 for i in range(192)))
    batch = Batch(ValidatorIndex(2), 7, 9, txs)
    assert batch.size_bytes == 256 * 1024
    with SqliteBatchStore(path) as store:
        store.put(batch)
        assert store.get(batch.digest) == batch
    with SqliteBatchStore(path) as store:
        got = store.get(batch.digest)
        assert got is not None and got.txs == txs and got.digest == batch.digest


def test_empty_transactions_and_an_empty_batch_round_trip(path: Path) -> None:
    batches = [Batch(ValidatorIndex(0), 1, 5, ()), Batch(ValidatorIndex(0), 2, 5, (b"", b"a", b""))]
    with SqliteBatchStore(path) as store:
        store.put_many(batches)
    with SqliteBatchStore(path) as store:
        assert store.batches() == tuple(batches)


def test_put_is_idempotent_and_a_repeat_costs_no_transaction() -> None:
    db = counting_db()
    with SqliteBatchStore.over(db, "batches:test") as store:
        db.commits = 0
        batch = _batch(1, 1)
        store.put(batch)
        assert db.commits == 1
        store.put(batch)
        store.put_many([batch, batch])
        assert db.commits == 1
        assert store.batches() == (batch,)
        assert db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1


def test_put_many_is_one_transaction_and_skips_what_is_kept() -> None:
    db = counting_db()
    with SqliteBatchStore.over(db, "batches:test") as store:
        db.commits = 0
        kept = _batch(0, 1)
        store.put(kept)
        fetched = [kept, _batch(1, 4), _batch(1, 2), _batch(2, 1), _batch(1, 4)]
        store.put_many(fetched)
        assert db.commits == 2
        assert len(store) == 4
        assert store.highest_sequence(1) == 4
        assert store.highest_sequence(2) == 1
        store.put_many([])
        assert db.commits == 2


def test_get_of_a_missing_digest_runs_no_sql_and_of_a_kept_one_one_select() -> None:
    db = counting_db()
    with SqliteBatchStore.over(db, "batches:test") as store:
        batch = _batch(0, 1)
        store.put(batch)
        statements = _statements(db)
        assert store.get(b"\x00" * 32) is None
        assert statements == []
        assert store.get(batch.digest) == batch
        assert len(statements) == 1 and statements[0].startswith("SELECT")
        assert store.stored(batch.digest) == StoredBatch(0, 1, 100, batch.size_bytes)
        assert batch.digest in store and b"\x00" * 32 not in store


def test_highest_sequence_never_goes_down_and_survives_removal_and_reopen(path: Path) -> None:
    with SqliteBatchStore(path) as store:
        five, three = _batch(1, 5), _batch(1, 3)
        store.put(five)
        store.put(three)
        assert store.highest_sequence(1) == 5
        store.put_many([_batch(1, 2), _batch(1, 4)])
        assert store.highest_sequence(1) == 5
        store.remove([five.digest, three.digest])
        assert store.highest_sequence(1) == 5
        assert store.highest_sequence(0) == 0
    with SqliteBatchStore(path) as store:
        assert store.highest_sequence(1) == 5
        store.remove([b.digest for b in store.batches()])
        assert len(store) == 0
    with SqliteBatchStore(path) as store:
        assert store.batches() == ()
        assert store.highest_sequence(1) == 5
        store.put(_batch(1, 6))
        assert store.highest_sequence(1) == 6


def test_remove_then_get_is_none_and_batches_after_reopen_are_the_rest(path: Path) -> None:
    batches = [_batch(a, s) for a in (3, 0, 2) for s in (4, 1, 2)]
    removed = {batches[0].digest, batches[4].digest, batches[8].digest}
    with SqliteBatchStore(path) as store:
        store.put_many(batches[:5])
        for batch in batches[5:]:
            store.put(batch)
        store.remove(removed)
        for batch in batches:
            assert (store.get(batch.digest) is None) == (batch.digest in removed)
        assert store.size_bytes == sum(b.size_bytes for b in batches if b.digest not in removed)
    with SqliteBatchStore(path) as store:
        kept = sorted((b for b in batches if b.digest not in removed), key=lambda b: (b.author, b.sequence))
        assert store.batches() == tuple(kept)
        assert len(store) == len(kept)
        assert all(store.get(b.digest) is None for b in batches if b.digest in removed)


def test_remove_is_one_transaction_and_costs_none_for_digests_not_kept() -> None:
    db = counting_db()
    with SqliteBatchStore.over(db, "batches:test") as store:
        db.commits = 0
        store.put_many([_batch(0, s) for s in range(1, 6)])
        assert db.commits == 1
        store.remove([b"\x01" * 32, b"\x02" * 32])
        assert db.commits == 1
        store.remove([_batch(0, s).digest for s in (1, 2, 3)] + [_batch(0, 1).digest])
        assert db.commits == 2
        assert [b.sequence for b in store.batches()] == [4, 5]


def test_two_batches_of_one_author_and_sequence_are_both_kept(store: SqliteBatchStore) -> None:
    # A Byzantine author may number two batches alike; which counts is the core's decision.
    first, second = _batch(1, 1, txs=1), _batch(1, 1, txs=2)
    store.put_many([first, second])
    assert store.get(first.digest) == first
    assert store.get(second.digest) == second
    assert len(store.batches()) == 2


def _tamper(path: Path, sql: str, *args: object) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def test_a_tampered_transaction_is_refused_as_corrupt(path: Path) -> None:
    batch = _batch(0, 1)
    with SqliteBatchStore(path) as store:
        store.put(batch)
    data = bytearray(encode_txs(batch.txs))
    data[-1] ^= 0x01
    _tamper(path, "UPDATE batches SET txs = ?", bytes(data))
    with SqliteBatchStore(path) as store:
        with pytest.raises(StorageError, match=r"corrupt batch record .*hash to"):
            store.get(batch.digest)
        with pytest.raises(StorageError, match="corrupt batch record"):
            store.batches()


@pytest.mark.parametrize(
    ("sql", "value", "message"),
    [
        ("UPDATE batches SET txs = ?", lambda txs: txs[:-1], "but only .* follow its length prefix"),
        ("UPDATE batches SET txs = ?", lambda txs: txs + b"\x00", "more than 3 transactions"),
        ("UPDATE batches SET txs = ?", lambda txs: txs[4:], "declares .* bytes, but only"),
        ("UPDATE batches SET txs = ?", lambda txs: "text", "wrong type"),
        ("UPDATE batches SET tx_count = tx_count + ?", lambda txs: 1, "3 transactions where 4"),
        ("UPDATE batches SET expiry_height = expiry_height + ?", lambda txs: 1, "hash to"),
        ("UPDATE batches SET sequence = sequence - ?", lambda txs: 1, "hash to"),
    ],
)
def test_a_malformed_row_is_refused_as_corrupt(
    path: Path, sql: str, value: Callable[[bytes], object], message: str
) -> None:
    batch = _batch(0, 1)
    with SqliteBatchStore(path) as store:
        store.put(batch)
    _tamper(path, sql, value(encode_txs(batch.txs)))
    with SqliteBatchStore(path) as store, pytest.raises(StorageError, match=message):
        store.get(batch.digest)


def test_a_batch_above_its_authors_highest_sequence_is_refused_at_open(path: Path) -> None:
    with SqliteBatchStore(path) as store:
        store.put(_batch(0, 3))
    _tamper(path, "UPDATE sequences SET highest = 2")
    with pytest.raises(StorageError, match="above its highest sequence 2"):
        SqliteBatchStore(path)


def test_an_unknown_schema_version_is_refused_and_left_alone(path: Path) -> None:
    SqliteBatchStore(path).close()
    _tamper(path, "PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="schema version 99"):
        SqliteBatchStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    db.close()


def test_a_file_that_is_not_a_database_is_refused(path: Path) -> None:
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(StorageError, match="not a usable batch store"):
        SqliteBatchStore(path)


def test_the_file_uses_wal_and_the_current_schema(path: Path) -> None:
    SqliteBatchStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


class _CrashAt:
    """A crash point that raises at the `at`-th COMMIT (from 1), recording every description."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.seen: list[str] = []

    def __call__(self, what: str) -> None:
        self.seen.append(what)
        if len(self.seen) == self.at:
            raise _Crash(what)


def test_a_crash_before_commit_leaves_nothing_of_that_put(path: Path) -> None:
    kept, lost = _batch(0, 1), _batch(0, 2)
    crash = _CrashAt(2)
    with SqliteBatchStore(path, crash_point=crash) as store:
        store.put(kept)
        with pytest.raises(_Crash):
            store.put(lost)
        assert store.get(lost.digest) is None
        assert store.highest_sequence(0) == 1
    assert crash.seen == [f"{BATCHES_COMMIT}: store batch {s} of validator 0" for s in (1, 2)]
    with SqliteBatchStore(path) as store:
        assert store.batches() == (kept,)
        assert store.highest_sequence(0) == 1


def test_a_crash_before_commit_leaves_nothing_of_that_put_many(path: Path) -> None:
    fetched = [_batch(1, 3), _batch(2, 9), _batch(1, 5)]
    with SqliteBatchStore(path, crash_point=_CrashAt(1)) as store:
        with pytest.raises(_Crash):
            store.put_many(fetched)
        assert len(store) == 0 and store.size_bytes == 0
        assert store.highest_sequence(1) == store.highest_sequence(2) == 0
        store.put_many(fetched)
        assert len(store) == 3
    with SqliteBatchStore(path) as store:
        assert store.batches() == (fetched[0], fetched[2], fetched[1])
        assert (store.highest_sequence(1), store.highest_sequence(2)) == (5, 9)


def test_a_crash_before_commit_leaves_nothing_of_that_remove(path: Path) -> None:
    batches = [_batch(0, s) for s in (1, 2)]
    with SqliteBatchStore(path, crash_point=_CrashAt(2)) as store:
        store.put_many(batches)
        with pytest.raises(_Crash):
            store.remove([batches[0].digest])
        assert store.get(batches[0].digest) == batches[0]
    with SqliteBatchStore(path) as store:
        assert store.batches() == tuple(batches)


def test_a_store_over_an_outliving_database_sees_only_committed_writes() -> None:
    # As the simulator uses it: the database outlives a crashed store; a new one opens over it.
    db = sqlite3.connect(":memory:")
    crash = _CrashAt(2)
    kept, lost = _batch(0, 1), _batch(0, 2)
    crashed = SqliteBatchStore.over(db, "batches:0", crash_point=crash)
    crashed.put(kept)
    with pytest.raises(_Crash):
        crashed.put(lost)
    restarted = SqliteBatchStore.over(db, "batches:0")
    assert restarted.batches() == (kept,)
    assert restarted.highest_sequence(0) == 1
    restarted.close()


def test_memory_store_round_trips() -> None:
    with SqliteBatchStore(":memory:") as store:
        batch = _batch(3, 1)
        store.put(batch)
        assert store.get(batch.digest) == batch
        assert store.path == Path(":memory:")


def test_a_batch_whose_fields_do_not_fit_sqlite_is_refused(store: SqliteBatchStore) -> None:
    with pytest.raises(StorageError, match="sequence"):
        store.put(_batch(0, 2**63))
    assert len(store) == 0
    assert store.highest_sequence(0) == 0


def test_transaction_layout_parses_strictly() -> None:
    txs = (b"", b"a", b"\x00" * 300)
    data = encode_txs(txs)
    assert data[:4] == b"\x00\x00\x00\x00"
    assert decode_txs(data, 3) == txs
    assert decode_txs(data, 2) == "more than 2 transactions (the next starts at offset 9)"
    assert decode_txs(data[:-1], 3) == (
        "transaction 2 at offset 9 declares 300 bytes, but only 299 follow its length prefix"
    )
    assert decode_txs(data + b"\x00\x00", 3) == "more than 3 transactions (the next starts at offset 313)"
    assert decode_txs(data + b"\x00\x00", 4) == "truncated length prefix at offset 313: 2 of 4 bytes"
    assert decode_txs(b"", 0) == ()
    assert decode_txs(b"", 1) == "0 transactions where 1 were stored"
