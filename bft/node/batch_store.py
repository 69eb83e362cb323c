"""The quorum store's batches on disk: `SqliteBatchStore`, the node's `bft.core.ports.BatchStore`.

Owns: one SQLite file of its own (`batches.sqlite` in the data directory; ":memory:" for tests),
in WAL mode with `synchronous=FULL`, so a batch whose `put` returned survives power loss: the
node acknowledges a batch (promises its peers it holds the data) only once `put` returned. Also
the durable highest sequence of each author, which outlives its batches' removal, and an
in-memory index of what is stored, so a lookup of a batch the store does not hold costs no SQL.
May not: decide which batches to keep or drop (`bft.core.quorum_store` does; this module keeps
what it is given until told to remove it), depend on the wire encoding of a batch (it stores its
own layout below, so the file does not change when the wire format does), or be shared between
threads or tasks: one trio task owns a store and calls it synchronously.

Schema (version 1, in `PRAGMA user_version`):

    batches(digest BLOB PRIMARY KEY   -- Batch.digest, checked against the rebuilt batch on read
            author, sequence, expiry_height, tx_count, size_bytes INTEGER,
            txs BLOB)                 -- each transaction as a 4-byte big-endian length, then its bytes
    sequences(author INTEGER PRIMARY KEY, highest INTEGER)  -- never lowered, never deleted

Batches are keyed by digest, not by (author, sequence): a Byzantine author may number two
different batches alike, and which of them counts is the core's decision, not the store's.

Crash points: every COMMIT first calls `crash_point` with a description that starts with
BATCHES_COMMIT, as `bft.sim.storage.StorageContext.crash_point` expects; if it raises (the
simulator's SimCrash), the transaction rolls back and nothing of that write is kept, in the file
or in the index. The simulator may instead open the store `over` a connection of its own whose
COMMITs are crash points (as it does for the block store); then leave `crash_point` unset.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final, NamedTuple

from bft.app.interface import ClosesOnExit
from bft.core.batches import Batch
from bft.core.types import ValidatorIndex
from bft.node.errors import StorageError
from bft.node.sqlite_schema import create_schema
from bft.txframe import FrameRefusal, decode_binary_txs, encode_binary_txs

SCHEMA_VERSION: Final = 1
# The file's name in the node's data directory.
BATCH_STORE_FILE: Final = "batches.sqlite"
# How the store describes its commits to `crash_point` (the description starts with it), so a
# crash can be aimed at them.
BATCHES_COMMIT: Final = "batch store commit"

# SQLite integers are signed 64-bit; a batch field above this cannot be stored.
_MAX_INTEGER: Final = 2**63 - 1
_MEMORY: Final = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    digest BLOB PRIMARY KEY,
    author INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    expiry_height INTEGER NOT NULL,
    tx_count INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    txs BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_by_author ON batches (author, sequence);
CREATE TABLE IF NOT EXISTS sequences (
    author INTEGER PRIMARY KEY,
    highest INTEGER NOT NULL
);
"""

_INSERT_BATCH = (
    "INSERT OR IGNORE INTO batches (digest, author, sequence, expiry_height, tx_count, size_bytes, txs)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_RAISE_SEQUENCE = (
    "INSERT INTO sequences (author, highest) VALUES (?, ?)"
    " ON CONFLICT (author) DO UPDATE SET highest = max(highest, excluded.highest)"
)


class StoredBatch(NamedTuple):
    """What the index remembers of a stored batch: enough to answer without reading its data."""

    author: int
    sequence: int
    expiry_height: int
    size_bytes: int


def encode_txs(txs: Iterable[bytes]) -> bytes:
    """The `txs` column: the framing of `POST /txs`'s binary body (`bft.txframe`), each
    transaction's length (4 bytes, big-endian), then its bytes."""
    try:
        return encode_binary_txs(list(txs))
    except ValueError as exc:
        raise StorageError(f"refusing to store it: {exc}") from exc


def decode_txs(data: bytes, tx_count: int) -> tuple[bytes, ...] | str:
    """The transactions of a `txs` column that must hold `tx_count` of them, or why it does not
    (truncated, trailing bytes, another count)."""
    txs = decode_binary_txs(data, tx_count)
    if isinstance(txs, FrameRefusal):
        return txs.reason
    if len(txs) != tx_count:
        return f"{len(txs)} transactions where {tx_count} were stored"
    return tuple(txs)


class SqliteBatchStore(ClosesOnExit):
    """The quorum store's batches in one SQLite file. Implements `bft.core.ports.BatchStore`.

    Every write (`put`, `put_many`, `remove`) is one transaction, durable when it returns, and
    costs none when it has nothing to do (a batch already kept, a digest not kept). Reads of a
    batch rebuild it and check its digest; a row that does not rebuild to its digest raises
    StorageError ("corrupt batch record").
    """

    def __init__(self, path: Path | str, *, crash_point: Callable[[str], None] | None = None) -> None:
        memory = str(path) == _MEMORY
        try:
            # isolation_level=None: no implicit transactions; each write brackets its own.
            db = sqlite3.connect(_MEMORY if memory else Path(path), isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open batch store: {exc}") from exc
        self._open(db, Path(path), crash_point, on_disk=not memory)

    @classmethod
    def over(
        cls, db: sqlite3.Connection, name: str, *, crash_point: Callable[[str], None] | None = None
    ) -> SqliteBatchStore:
        """A batch store in the open database `db`, e.g. an in-memory one that outlives this
        object (the simulator keeps it across a simulated crash and opens a new store over it on
        restart, as a restarted node opens its file). The same schema, reads and transactions as
        on disk; only the WAL and `synchronous=FULL` pragmas are skipped. `close()` closes `db`."""
        store = cls.__new__(cls)
        db.isolation_level = None
        store._open(db, Path(name), crash_point, on_disk=False)
        return store

    def _open(
        self,
        db: sqlite3.Connection,
        path: Path,
        crash_point: Callable[[str], None] | None,
        *,
        on_disk: bool,
    ) -> None:
        self._path = path
        self._db = db
        self._crash_point = crash_point
        # Digest -> what is stored, exactly the committed rows: updated only after a COMMIT.
        self._index: dict[bytes, StoredBatch] = {}
        self._highest: dict[int, int] = {}
        self._size_bytes = 0
        try:
            self._setup(on_disk)
            self._load()
        except BaseException:
            self._db.close()
            raise

    def _setup(self, on_disk: bool) -> None:
        create_schema(
            self._db,
            self._path,
            kind="batch store",
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            on_disk=on_disk,
            other_version_hint=f"remove {self._path.name} (the batches are fetched again)",
        )

    def _load(self) -> None:
        """Fill the index and the highest sequences from the file (not the transactions: each
        read of a batch checks those)."""
        try:
            rows = self._db.execute(
                "SELECT digest, author, sequence, expiry_height, size_bytes FROM batches"
            ).fetchall()
            sequences = self._db.execute("SELECT author, highest FROM sequences").fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read the batch store: {exc}") from exc
        for digest, *fields in rows:
            if not isinstance(digest, bytes) or not all(isinstance(f, int) for f in fields):
                raise StorageError(f"{self._path}: corrupt batch record: a column of the wrong type")
            entry = StoredBatch(*fields)
            self._index[digest] = entry
            self._size_bytes += entry.size_bytes
        for author, highest in sequences:
            if not isinstance(author, int) or not isinstance(highest, int):
                raise StorageError(f"{self._path}: corrupt highest sequence record")
            self._highest[author] = highest
        for entry in self._index.values():
            if entry.sequence > self._highest.get(entry.author, 0):
                raise StorageError(
                    f"{self._path}: corrupt batch store: batch {entry.sequence} of validator "
                    f"{entry.author} is above its highest sequence {self._highest.get(entry.author, 0)}"
                )

    # A context manager (`ClosesOnExit`), so tests and short-lived tools cannot leak the connection.

    def close(self) -> None:
        self._db.close()

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, digest: object) -> bool:
        return digest in self._index

    @property
    def size_bytes(self) -> int:
        """Transaction bytes of every batch kept."""
        return self._size_bytes

    def stored(self, digest: bytes) -> StoredBatch | None:
        """What is kept of the batch with this digest, without reading its transactions."""
        return self._index.get(digest)

    # The port (bft.core.ports.BatchStore).

    def put(self, batch: Batch) -> None:
        """Keep `batch` durably and raise its author's highest sequence to its number, in one
        transaction; a batch already kept costs nothing."""
        self.put_many((batch,))

    def put_many(self, batches: Iterable[Batch]) -> None:
        """Keep all of `batches` (e.g. a fetch response's) in one transaction, one disk sync:
        all are durable when this returns, none is if it raises."""
        new: dict[bytes, Batch] = {}
        for batch in batches:
            if batch.digest not in self._index:
                new.setdefault(batch.digest, batch)
        if not new:
            return
        rows = [self._row(batch) for batch in new.values()]
        raised: dict[int, int] = {}
        for batch in new.values():
            raised[batch.author] = max(raised.get(batch.author, 0), batch.sequence)
        first = next(iter(new.values()))
        what = (
            f"store {len(rows)} batches"
            if len(rows) > 1
            else f"store batch {first.sequence} of validator {first.author}"
        )
        with self._transaction(what):
            self._db.executemany(_INSERT_BATCH, rows)
            self._db.executemany(_RAISE_SEQUENCE, list(raised.items()))
        for batch in new.values():
            self._index[batch.digest] = StoredBatch(
                batch.author, batch.sequence, batch.expiry_height, batch.size_bytes
            )
            self._size_bytes += batch.size_bytes
        for author, sequence in raised.items():
            self._highest[author] = max(self._highest.get(author, 0), sequence)

    def _row(self, batch: Batch) -> tuple[bytes, int, int, int, int, int, bytes]:
        for name, value in (
            ("author", batch.author),
            ("sequence", batch.sequence),
            ("expiry height", batch.expiry_height),
        ):
            if not 0 <= value <= _MAX_INTEGER:
                raise StorageError(f"refusing to store a batch with {name} {value}")
        return (
            batch.digest,
            int(batch.author),
            batch.sequence,
            batch.expiry_height,
            len(batch.txs),
            batch.size_bytes,
            encode_txs(batch.txs),
        )

    def get(self, digest: bytes) -> Batch | None:
        """The batch with this digest, if kept; a digest not kept costs no SQL."""
        if digest not in self._index:
            return None
        try:
            row = self._db.execute(
                "SELECT digest, author, sequence, expiry_height, tx_count, txs FROM batches WHERE digest = ?",
                (digest,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read batch {digest.hex()}: {exc}") from exc
        if row is None:
            raise StorageError(f"{self._path}: batch {digest.hex()} is indexed but not stored")
        return self._rebuild(row)

    def remove(self, digests: Iterable[bytes]) -> None:
        """Forget these batches in one transaction (digests not kept are skipped; none kept costs
        nothing); the highest sequences stay."""
        gone = list(dict.fromkeys(d for d in digests if d in self._index))
        if not gone:
            return
        with self._transaction(f"remove {len(gone)} batches"):
            self._db.executemany("DELETE FROM batches WHERE digest = ?", [(d,) for d in gone])
        for digest in gone:
            self._size_bytes -= self._index.pop(digest).size_bytes

    def batches(self) -> tuple[Batch, ...]:
        """Every batch kept, ordered by (author, sequence, digest)."""
        try:
            rows = self._db.execute(
                "SELECT digest, author, sequence, expiry_height, tx_count, txs FROM batches"
                " ORDER BY author, sequence, digest"
            ).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot read the batches: {exc}") from exc
        return tuple(self._rebuild(row) for row in rows)

    def highest_sequence(self, author: int) -> int:
        return self._highest.get(author, 0)

    def _rebuild(self, row: tuple[object, ...]) -> Batch:
        digest, author, sequence, expiry_height, tx_count, data = row
        if not (
            isinstance(digest, bytes)
            and isinstance(author, int)
            and isinstance(sequence, int)
            and isinstance(expiry_height, int)
            and isinstance(tx_count, int)
            and isinstance(data, bytes)
        ):
            raise StorageError(f"{self._path}: corrupt batch record: a column of the wrong type")
        txs = decode_txs(data, tx_count)
        if isinstance(txs, str):
            raise StorageError(f"{self._path}: corrupt batch record {digest.hex()}: {txs}")
        batch = Batch(ValidatorIndex(author), sequence, expiry_height, txs)
        if batch.digest != digest:
            raise StorageError(
                f"{self._path}: corrupt batch record {digest.hex()}: its contents hash to "
                f"{batch.digest.hex()}"
            )
        return batch

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction: committed if the body returns (after the crash point), rolled
        back if it or the crash point raises; SQLite errors become StorageError naming `what`."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                if self._crash_point is not None:
                    self._crash_point(f"{BATCHES_COMMIT}: {what}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot {what}: {exc}") from exc
