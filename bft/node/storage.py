"""The committed chain on disk: blocks by height, their certificates, and a transaction index.

Owns: `BlockStore` (one SQLite file in WAL mode with `synchronous=FULL`, so a commit that
returned survives power loss), `StoredBlock` and `StoredEvidence`.
May not: decide what is committed (the core's commit rule does; this module only refuses
writes that would not continue the stored chain), or be shared between threads or tasks: one
trio task owns a store and calls it synchronously.

Also the block journal (`bft.core.journal`): uncommitted blocks, journaled before the node votes
for them and pruned as commits pass them, so a cluster that lost every process still has its
locked blocks.

Also the execution record (`bft.node.executor`): per executed height, the app hash after it
and each transaction's result, written before the application commits that height, so replay
after a crash rewrites the same record.

Also the transaction index: where each committed transaction first committed (`tx_location`),
written in bulk. Its rows wait in memory until MAX_UNINDEXED_TXS of them are waiting or
MAX_UNINDEXED_HEIGHTS heights passed, then go into `txs` sorted by hash, in the transaction of
the append that reached the bound, with the height they reach (`tx_index`). A restart re-indexes
the heights above that height from their stored blocks, so nothing is lost with the process: the
index is derived from the blocks, which are durable first. Lookups read the waiting rows, then
`txs`; the two never hold the same hash (a row waits only if neither had it).

Why in bulk: an index keyed by a random 32-byte hash puts every row on a different B-tree page,
so each commit of a 200-transaction block wrote about 200 pages to the WAL, and that COMMIT was
the hottest line of a saturated node (15% of its samples, issue 12). Measured alone on this
machine: 2.73 ms per such commit against 0.74 ms with sequential keys and 0.41 ms without the
index. Thousands of rows inserted at once in hash order share their pages.

Also the evidence of equivocation (`bft.core.actions.Evidence`): both signed messages, one row
per (validator, view, kind), at most MAX_EVIDENCE_PER_VALIDATOR rows per validator (the oldest
go first), so a validator that equivocates in every view cannot grow the file without bound.

Also what state sync reads and writes (`bft.node.statesync`): on a state-sync chain the
transaction set (`bft.node.tx_set`: an LtHash of every first occurrence's location, kept with
each append, and its digest per height), the application's own app hash per executed height
beside the claim, a snapshot's transaction records by pages (`tx_records`), and an empty store's
start from a snapshot (`add_tx_records`, then `install_anchor`: the anchor blocks as committed,
the base below them).

Also pruning (`prune_below`, `keep_latest`): the blocks, commit records, execution records and
results below a height go, the transaction index stays (identical bytes are one transaction for as long as the
chain lives, so the executor must still find where every transaction first committed), and the
lowest height held rises (`base`: the store holds heights `base + 1 .. height`; 0 until pruned).

Schema (version 7, in `PRAGMA user_version`; a version 5 file, indexed at every append, gains
`tx_index` on open, and a version 5 or 6 file gains `chain_base`):

    blocks(height INTEGER PRIMARY KEY, id BLOB UNIQUE, view, parent_id BLOB,
           block BLOB  -- wire.encode_block
           qc BLOB     -- wire.encode_qc of the QC certifying this block
           commit_height INTEGER  -- key of the commit that included this block, in commits)
    commits(height INTEGER PRIMARY KEY  -- height of the last block of that commit
            commit_qc BLOB              -- wire.encode_qc of the QC that committed it
            proof BLOB)                 -- the commit chain's blocks above b: (b', b'') or (b',)
    txs(hash BLOB PRIMARY KEY  -- sha256(tx)
        height, position)      -- the first committed occurrence of the tx
    tx_index(one = 1, height)  -- every first occurrence at or below it is in txs
    journal(id BLOB PRIMARY KEY, height, block BLOB)  -- uncommitted blocks
    high_tc(one = 1, tc BLOB)                          -- the highest TC seen
    executed(height INTEGER PRIMARY KEY, app_hash BLOB)  -- from height 0 (the app's initial hash)
    results(height, position, code, log TEXT, data BLOB)  -- each committed tx's result
    chain_base(one = 1, height)  -- heights at or below it are not held (pruned); absent: 0
    tx_set(one = 1, lattice BLOB)          -- on a state-sync chain: `bft.node.tx_set.TxSet` of
    tx_sets(height PRIMARY KEY, digest)    -- every first occurrence to the tip, and per height
    app_hashes(height PRIMARY KEY, app_hash)  -- there, the application's own app hash per executed
                                              -- height (`executed` holds the state claim)
    evidence(seq INTEGER PRIMARY KEY  -- order of arrival, the API's cursor
             validator, view, kind TEXT,    -- UNIQUE (validator, view, kind)
             first BLOB, second BLOB)       -- wire.encode of the two signed messages

Heights start at 1 (genesis, height 0, is never stored), or above the base once pruned, and have
no gaps.

Commit proofs follow the genesis' commit rule (`bft.core.commit_rule`), which the store is told:
a commit chain b <- b' <- b'' of consecutive views (three-chain) or b <- b' (two-chain), with the
QC for its last block.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bft.app.interface import ClosesOnExit
from bft.core import wire
from bft.core.actions import Evidence
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN, check_commit_chain
from bft.core.errors import DecodeError
from bft.core.messages import Block, BlockResponse, QuorumCert, TimeoutCert
from bft.core.types import BlockId
from bft.node.errors import StorageError
from bft.node.sqlite_schema import create_schema
from bft.node.tx_filter import CommittedTxFilter
from bft.node.tx_set import EMPTY_TX_SET_DIGEST, TxSet
from crypto.hashing import sha256

# The block store's file in a node's data directory.
BLOCKS_FILE: Final = "blocks.sqlite"
SCHEMA_VERSION: Final = 7
# Versions this one opens and upgrades in place (tables added, none changed).
UPGRADES_FROM: Final = (5, 6)
# The transaction index's rows are written when this many wait, or this many heights passed
# since the last write (which bounds the blocks a restart re-indexes).
MAX_UNINDEXED_TXS: Final = 16_384
MAX_UNINDEXED_HEIGHTS: Final = 256
# The repeated positions of the heights appended or re-indexed in this process are remembered
# this far below the tip (`repeated_positions`; older heights are looked up).
REPEATS_KEPT_HEIGHTS: Final = 4096
# Evidence rows kept per validator; and the most one read returns.
MAX_EVIDENCE_PER_VALIDATOR: Final = 64
MAX_EVIDENCE_PAGE: Final = 100
# Under a retention the oldest blocks go this many heights at a time (`keep_latest`), in one short
# transaction, once that many are past the retention.
PRUNE_STEP_HEIGHTS: Final = 64
# A block's commit proof (the blocks up to the last of a commit chain above it) is served up to
# this length.
MAX_COMMIT_PROOF_BLOCKS: Final = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    view INTEGER NOT NULL,
    parent_id BLOB NOT NULL,
    block BLOB NOT NULL,
    qc BLOB NOT NULL,
    commit_height INTEGER NOT NULL REFERENCES commits(height)
);
CREATE TABLE IF NOT EXISTS commits (
    height INTEGER PRIMARY KEY,
    commit_qc BLOB NOT NULL,
    proof BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tx_index (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    block BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS high_tc (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    tc BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS executed (
    height INTEGER PRIMARY KEY,
    app_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    height INTEGER NOT NULL,
    position INTEGER NOT NULL,
    code INTEGER NOT NULL,
    log TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (height, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chain_base (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    height INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tx_set (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    lattice BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tx_sets (
    height INTEGER PRIMARY KEY,
    digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS app_hashes (
    height INTEGER PRIMARY KEY,
    app_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    seq INTEGER PRIMARY KEY,
    validator INTEGER NOT NULL,
    view INTEGER NOT NULL,
    kind TEXT NOT NULL,
    first BLOB NOT NULL,
    second BLOB NOT NULL,
    UNIQUE (validator, view, kind)
);
"""


def schema_version_of(path: Path) -> int | None:
    """The schema version of the block store at `path`, read without changing the file; None if
    there is no file. StorageError if it is not an SQLite database."""
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: not a block store: {exc}") from exc


def committed_height(path: Path) -> int:
    """The committed height of the block store at `path`, read without changing it; 0 if there
    is no file or no block."""
    if not path.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT MAX(height) FROM blocks").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: not a block store: {exc}") from exc
    return 0 if row is None or row[0] is None else int(row[0])


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A committed transaction's execution result, as the application returned it."""

    code: int
    log: str
    data: bytes


@dataclass(frozen=True, slots=True)
class StoredEvidence:
    """A stored equivocation: `first` and `second` are the `wire.encode` bytes of the two signed
    messages (votes or proposals, by `kind`); `seq` orders rows by arrival."""

    seq: int
    kind: str
    validator: int
    view: int
    first: bytes
    second: bytes


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A committed block, the QC certifying it, and the proof that it is committed: the blocks
    above it, oldest first, up to the last block of a commit chain (b <- b' <- b'' under the
    three-chain rule, b <- b' under the two-chain: direct parents in consecutive views, b the
    block itself or a descendant), and `commit_qc` certifying that last block. `commit_proof` is
    empty when no proof of at most MAX_COMMIT_PROOF_BLOCKS blocks exists (a rare long commit)."""

    block: Block
    qc: QuorumCert
    commit_qc: QuorumCert
    commit_proof: tuple[Block, ...] = ()

    @property
    def height(self) -> int:
        return self.block.height


class BlockStore(ClosesOnExit):
    """The committed chain in one SQLite file. Appends are atomic; every read sees whole commits.

    If `genesis_id` is given, the first block ever stored must have it as its parent.
    `commit_chain` is the genesis' commit rule (3 or 2, ValueError otherwise): the length of the
    commit chains `block_at` proves commits with. `index_bounds` are the transaction index's
    (rows, heights) bounds (the simulator lowers them, so that its schedules write and re-index
    the index often).
    """

    def __init__(
        self,
        path: Path,
        *,
        genesis_id: BlockId | None = None,
        commit_chain: int = DEFAULT_COMMIT_CHAIN,
        index_bounds: tuple[int, int] = (MAX_UNINDEXED_TXS, MAX_UNINDEXED_HEIGHTS),
        tx_set: bool = False,
    ) -> None:
        check_commit_chain(commit_chain)
        try:
            # isolation_level=None: no implicit transactions; append() brackets its own.
            db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"{path}: cannot open block store: {exc}") from exc
        self._open(db, path, genesis_id, commit_chain, index_bounds, on_disk=True, tx_set=tx_set)

    @classmethod
    def over(
        cls,
        db: sqlite3.Connection,
        name: str,
        *,
        genesis_id: BlockId | None = None,
        commit_chain: int = DEFAULT_COMMIT_CHAIN,
        index_bounds: tuple[int, int] = (MAX_UNINDEXED_TXS, MAX_UNINDEXED_HEIGHTS),
        tx_set: bool = False,
    ) -> BlockStore:
        """A block store in the open database `db`, e.g. an in-memory one that outlives this object
        (the simulator keeps it across a simulated crash and opens a new store over it on restart,
        as a restarted node opens its file). The same schema, reads and transactions as on disk;
        only the WAL and `synchronous=FULL` pragmas, which mean nothing in memory, are skipped: a
        transaction is kept once its COMMIT returned, and one that did not commit is rolled back.
        `close()` closes `db`."""
        check_commit_chain(commit_chain)
        store = cls.__new__(cls)
        db.isolation_level = None
        store._open(db, Path(name), genesis_id, commit_chain, index_bounds, on_disk=False, tx_set=tx_set)
        return store

    def _open(
        self,
        db: sqlite3.Connection,
        path: Path,
        genesis_id: BlockId | None,
        commit_chain: int,
        index_bounds: tuple[int, int],
        *,
        on_disk: bool,
        tx_set: bool,
    ) -> None:
        self._path = path
        self._keeps_tx_set = tx_set
        self._tx_set: TxSet | None = None
        self._genesis_id = genesis_id
        self._commit_chain = commit_chain
        self._db = db
        # Inside `batch`: nested writes join its transaction.
        self._batch_depth = 0
        # The journal holds no block at or below this height (`prune_to` skips a prune that
        # has nothing to do; -1: not known yet).
        self._pruned_to = -1
        # Every committed transaction's hash, so that a transaction never committed (nearly
        # every one asked about) costs no index lookup (`bft.node.tx_filter`).
        self._committed_txs = CommittedTxFilter()
        self._max_unindexed_txs, self._max_unindexed_heights = index_bounds
        # The transaction index's rows not written yet: hash -> (height, position).
        self._unindexed: dict[bytes, tuple[int, int]] = {}
        self._indexed_height = 0
        # The positions that repeat an earlier transaction, for the heights that have any, of
        # every height from `_repeats_from` to the tip.
        self._repeats: dict[int, frozenset[int]] = {}
        self._repeats_from = 1
        try:
            self._setup(on_disk)
            self._tip_height, self._tip_id = self._load_tip()
            self._base = self._load_base()
            self._tx_set = self._load_tx_set()
            for (tx_hash,) in self._db.execute("SELECT hash FROM txs"):
                self._committed_txs.add(bytes(tx_hash))
            self._reindex()
        except BaseException:
            self._db.close()
            raise

    def _setup(self, on_disk: bool) -> None:
        create_schema(
            self._db,
            self._path,
            kind="block store",
            schema=_SCHEMA,
            version=SCHEMA_VERSION,
            on_disk=on_disk,
            other_version_hint="an older chain's data cannot be read: remove the data directory",
            foreign_keys=True,
            upgrades_from=UPGRADES_FROM,
        )

    def _reindex(self) -> None:
        """Rebuild the index's in-memory half from the file: the rows of the heights above the
        indexed height, from their stored blocks (lost with the process, or never written)."""
        row = self._db.execute("SELECT height FROM tx_index").fetchone()
        if row is None:
            # A new store, or one of schema 5 (which indexed every append): indexed to its tip.
            self._write(
                "record the indexed height",
                "INSERT INTO tx_index (one, height) VALUES (1, ?)",
                [(self._tip_height,)],
            )
            row = (self._tip_height,)
        self._indexed_height = int(row[0])
        self._unindexed, self._repeats = {}, {}
        self._repeats_from = self._indexed_height + 1
        for (data,) in self._db.execute(
            "SELECT block FROM blocks WHERE height > ? ORDER BY height", (self._indexed_height,)
        ):
            block = self._decode_block(data)
            new, repeats = self._first_occurrences((block,))
            for tx_hash in new:
                self._committed_txs.add(tx_hash)
            self._unindexed.update(new)
            self._repeats.update(repeats)

    def _first_occurrences(
        self, blocks: Sequence[Block]
    ) -> tuple[dict[bytes, tuple[int, int]], dict[int, frozenset[int]]]:
        """The transactions of `blocks` (consecutive, above every indexed or waiting row) that
        commit there first, hash -> (height, position); and per height that has any, the
        positions that repeat one committed earlier (in an earlier block or earlier in it)."""
        new: dict[bytes, tuple[int, int]] = {}
        repeats: dict[int, frozenset[int]] = {}
        for block in blocks:
            repeated: list[int] = []
            for pos, tx in enumerate(block.txs):
                tx_hash = sha256(tx)
                if tx_hash in new or self._committed_location(tx_hash) is not None:
                    repeated.append(pos)
                else:
                    new[tx_hash] = (block.height, pos)
            if repeated:
                repeats[block.height] = frozenset(repeated)
        return new, repeats

    def _load_tip(self) -> tuple[int, BlockId | None]:
        row = self._db.execute("SELECT height, id FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            return 0, None
        return int(row[0]), BlockId(bytes(row[1]))

    def _load_tx_set(self) -> TxSet | None:
        if not self._keeps_tx_set:
            return None
        row = self._db.execute("SELECT lattice FROM tx_set").fetchone()
        if row is not None:
            return TxSet.from_bytes(bytes(row[0]))
        if self._tip_height > 0:
            raise StorageError(
                f"{self._path}: this block store holds {self._tip_height} blocks but no transaction "
                "set: it was written for a chain without state sync"
            )
        return TxSet()

    def _load_base(self) -> int:
        row = self._db.execute("SELECT height FROM chain_base").fetchone()
        return 0 if row is None else int(row[0])

    def _decode_block(self, data: bytes) -> Block:
        try:
            return wire.decode_block(bytes(data))
        except DecodeError as exc:
            raise StorageError(f"{self._path}: corrupt block record: {exc}") from exc

    def _decode_qc(self, data: bytes) -> QuorumCert:
        try:
            return wire.decode_qc(bytes(data))
        except DecodeError as exc:
            raise StorageError(f"{self._path}: corrupt QC record: {exc}") from exc

    # A context manager (`ClosesOnExit`), so tests and short-lived tools cannot leak the connection.

    def close(self) -> None:
        self._db.close()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def height(self) -> int:
        """Height of the last committed block stored; 0 when empty (genesis)."""
        return self._tip_height

    @property
    def base(self) -> int:
        """Heights at or below this are not held (pruned): 0 until `prune_below` ran."""
        return self._base

    def append(
        self,
        blocks: Sequence[Block],
        qcs: Sequence[QuorumCert],
        commit_qc: QuorumCert,
        proof: Sequence[Block] = (),
    ) -> None:
        """Store one commit: `blocks` oldest first, `qcs[i]` certifying `blocks[i]`, the QC that
        committed them and the commit chain's blocks above the last of them (`Commit.proof`:
        (b', b'') or (b',)), in one transaction.

        Raises StorageError, storing nothing, unless the blocks continue the stored chain (first
        height is the tip's + 1, each parent is the block before, heights consecutive) and each
        QC certifies its block.
        """
        self._check_continues(blocks, qcs)
        last_height = blocks[-1].height
        new, repeats = self._first_occurrences(blocks)
        write_index = (
            len(self._unindexed) + len(new) >= self._max_unindexed_txs
            or last_height - self._indexed_height >= self._max_unindexed_heights
        )
        with self._transaction(f"store blocks {blocks[0].height}..{last_height}"):
            self._insert_commit(blocks, qcs, commit_qc, proof)
            tx_set = self._grow_tx_set(blocks, new)
            if write_index:
                # A tx committed twice (in two batches under the quorum store, or re-proposed by
                # a faulty leader) has one row, where it first committed, which is where its
                # effect happened; the executor skips it elsewhere (`repeated_positions`).
                rows = sorted((h, height, pos) for h, (height, pos) in (self._unindexed | new).items())
                self._db.executemany("INSERT INTO txs (hash, height, position) VALUES (?, ?, ?)", rows)
                self._db.execute("UPDATE tx_index SET height = ?", (last_height,))
        # Within a `batch` the transaction may still roll back: the batch then re-reads all of
        # this from the file. Should the filter keep a hash that never committed, that costs a
        # lookup, never a wrong answer.
        for tx_hash in new:
            self._committed_txs.add(tx_hash)
        if tx_set is not None:
            self._tx_set = tx_set
        if write_index:
            self._unindexed, self._indexed_height = {}, last_height
        else:
            self._unindexed.update(new)
        self._repeats.update(repeats)
        floor = last_height - REPEATS_KEPT_HEIGHTS
        if self._repeats_from <= floor:
            self._repeats_from = floor + 1
            self._repeats = {h: p for h, p in self._repeats.items() if h > floor}
        self._tip_height, self._tip_id = last_height, blocks[-1].id

    def _insert_commit(
        self,
        blocks: Sequence[Block],
        qcs: Sequence[QuorumCert],
        commit_qc: QuorumCert,
        proof: Sequence[Block],
    ) -> None:
        """The rows of one commit (its record, keyed by its last block's height, and its blocks),
        inside the caller's transaction."""
        last_height = blocks[-1].height
        self._db.execute(
            "INSERT INTO commits (height, commit_qc, proof) VALUES (?, ?, ?)",
            (last_height, wire.encode_qc(commit_qc), wire.encode(BlockResponse(tuple(proof)))),
        )
        self._db.executemany(
            "INSERT INTO blocks (height, id, view, parent_id, block, qc, commit_height)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (b.height, b.id, b.view, b.parent_id, wire.encode_block(b), wire.encode_qc(qc), last_height)
                for b, qc in zip(blocks, qcs, strict=True)
            ],
        )

    def _grow_tx_set(self, blocks: Sequence[Block], new: dict[bytes, tuple[int, int]]) -> TxSet | None:
        """On a state-sync chain, write the transaction set after each of `blocks` (their first
        occurrences `new` added) inside the append's transaction; the set after the last."""
        if self._tx_set is None:
            return None
        tx_set = self._tx_set.copy()
        by_height: dict[int, list[tuple[bytes, int]]] = {}
        for tx_hash, (height, pos) in new.items():
            by_height.setdefault(height, []).append((tx_hash, pos))
        rows = []
        for block in blocks:
            for tx_hash, pos in by_height.get(block.height, ()):
                tx_set.add(tx_hash, block.height, pos)
            rows.append((block.height, tx_set.digest()))
        self._db.executemany("INSERT INTO tx_sets (height, digest) VALUES (?, ?)", rows)
        self._db.execute("INSERT OR REPLACE INTO tx_set (one, lattice) VALUES (1, ?)", (tx_set.to_bytes(),))
        return tx_set

    def tx_set_digest_at(self, height: int) -> bytes | None:
        """The transaction set's digest after `height` on a state-sync chain (`bft.node.tx_set`);
        None if not held (pruned, above the tip, or a chain without state sync)."""
        if self._tx_set is None:
            return None
        if height == 0:
            return EMPTY_TX_SET_DIGEST
        row = self._db.execute("SELECT digest FROM tx_sets WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def tx_records(self, at_height: int, after: bytes, limit: int) -> list[tuple[bytes, int, int]]:
        """The (hash, height, position) locations of the transactions first committed at or
        below `at_height`, in hash order, those with a hash above `after` (b"" for the first
        page), at most `limit`: a snapshot's transaction set, served by pages. The index's rows
        and the rows still waiting in memory, merged."""
        rows = self._db.execute(
            "SELECT hash, height, position FROM txs WHERE hash > ? AND height <= ? ORDER BY hash LIMIT ?",
            (bytes(after), at_height, limit),
        ).fetchall()
        stored = [(bytes(r[0]), int(r[1]), int(r[2])) for r in rows]
        waiting = sorted(
            (h, height, pos)
            for h, (height, pos) in self._unindexed.items()
            if height <= at_height and h > after
        )
        return sorted(stored + waiting[:limit])[:limit]

    def _check_continues(self, blocks: Sequence[Block], qcs: Sequence[QuorumCert]) -> None:
        if not blocks:
            raise StorageError("refusing to store a commit of no blocks")
        if len(qcs) != len(blocks):
            raise StorageError(f"refusing to store {len(blocks)} blocks with {len(qcs)} QCs")
        expected_parent = self._tip_id if self._tip_id is not None else self._genesis_id
        for offset, (block, qc) in enumerate(zip(blocks, qcs, strict=True)):
            expected_height = self._tip_height + 1 + offset
            if block.height != expected_height:
                raise StorageError(
                    f"refusing to store block at height {block.height}: expected height {expected_height}"
                )
            if expected_parent is not None and block.parent_id != expected_parent:
                raise StorageError(
                    f"refusing to store block at height {block.height}: parent {block.parent_id.hex()} "
                    f"is not the block below it ({expected_parent.hex()})"
                )
            if qc.block_id != block.id:
                raise StorageError(
                    f"refusing to store block at height {block.height}: its QC certifies "
                    f"{qc.block_id.hex()}, not {block.id.hex()}"
                )
            expected_parent = block.id

    def tip(self) -> tuple[Block, QuorumCert] | None:
        """The last committed block and the QC certifying it; None when empty."""
        row = self._db.execute("SELECT block, qc FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return self._decode_block(row[0]), self._decode_qc(row[1])

    def block_at(self, height: int) -> StoredBlock | None:
        """The committed block at `height` with its certificates and commit proof; None above the
        tip or below 1."""
        row = self._db.execute(
            "SELECT b.block, b.qc, c.height, c.commit_qc, c.proof FROM blocks AS b"
            " JOIN commits AS c ON c.height = b.commit_height WHERE b.height = ?",
            (height,),
        ).fetchone()
        if row is None:
            return None
        block, qc = self._decode_block(row[0]), self._decode_qc(row[1])
        proof = self._stored_commit_chain(height)
        if proof is None:
            proof = self._commit_record_proof(height, int(row[2]), row[3], row[4])
        if proof is None:
            return StoredBlock(block, qc, self._decode_qc(row[3]))
        return StoredBlock(block, qc, proof[1], proof[0])

    def _stored_commit_chain(self, height: int) -> tuple[tuple[Block, ...], QuorumCert] | None:
        """The shortest proof from committed blocks alone: the lowest k >= height where the
        commit chain's blocks k .. k+L-1 (L = the commit chain length) are stored with consecutive
        views; the proof is height+1 .. k+L-1 and k+L-1's QC, at most MAX_COMMIT_PROOF_BLOCKS
        blocks. (Under the two-chain rule k and k+1, even when k is `height`: a proof of one block.)"""
        links = self._commit_chain - 1
        views = dict(
            self._db.execute(
                "SELECT height, view FROM blocks WHERE height BETWEEN ? AND ?",
                (height, height + MAX_COMMIT_PROOF_BLOCKS),
            ).fetchall()
        )
        for k in range(height, height + MAX_COMMIT_PROOF_BLOCKS - links + 1):
            top = k + links
            if top not in views:
                return None
            if all(views[h + 1] == views[h] + 1 for h in range(k, top)):
                rows = self._db.execute(
                    "SELECT block, qc FROM blocks WHERE height > ? AND height <= ? ORDER BY height",
                    (height, top),
                ).fetchall()
                return tuple(self._decode_block(r[0]) for r in rows), self._decode_qc(rows[-1][1])
        return None

    def _commit_record_proof(
        self, height: int, commit_height: int, commit_qc: bytes, proof: bytes
    ) -> tuple[tuple[Block, ...], QuorumCert] | None:
        """The proof the commit that included `height` was made with: the blocks up to its last
        one, then the commit chain's blocks above it ((b', b'') or (b',)); None if that is longer
        than MAX_COMMIT_PROOF_BLOCKS, or the record is not of this store's commit rule."""
        links = self._commit_chain - 1
        if commit_height - height + links > MAX_COMMIT_PROOF_BLOCKS:
            return None
        try:
            above = wire.decode(bytes(proof))
        except DecodeError as exc:
            raise StorageError(f"{self._path}: corrupt commit proof record: {exc}") from exc
        if not isinstance(above, BlockResponse) or len(above.blocks) != links:
            return None
        rows = self._db.execute(
            "SELECT block FROM blocks WHERE height > ? AND height <= ? ORDER BY height",
            (height, commit_height),
        ).fetchall()
        chain = tuple(self._decode_block(r[0]) for r in rows) + above.blocks
        return chain, self._decode_qc(commit_qc)

    def committed_range(
        self, start_height: int, max_blocks: int, max_bytes: int
    ) -> tuple[tuple[Block, ...], QuorumCert | None]:
        """Committed blocks from `start_height` on, oldest first: at most `max_blocks`, no more
        than `max_bytes` of encoded blocks but at least one if any; with the QC certifying the
        last (`bft.core.chain.CommittedChain`). Sizes come from the stored encodings, so blocks
        past the budget are never read."""
        rows = self._db.execute(
            "SELECT height, length(block) FROM blocks WHERE height >= ? ORDER BY height LIMIT ?",
            (max(start_height, 1), max_blocks),
        ).fetchall()
        if not rows or rows[0][0] != start_height:
            return (), None
        count, size = 0, 0
        for _, length in rows:
            size += int(length)
            if count and size > max_bytes:
                break
            count += 1
        picked = self._db.execute(
            "SELECT block, qc FROM blocks WHERE height >= ? AND height < ? ORDER BY height",
            (start_height, start_height + count),
        ).fetchall()
        return tuple(self._decode_block(r[0]) for r in picked), self._decode_qc(picked[-1][1])

    def block_by_id(self, block_id: BlockId) -> Block | None:
        """The committed block with id `block_id`, if stored."""
        row = self._db.execute("SELECT block FROM blocks WHERE id = ?", (bytes(block_id),)).fetchone()
        return None if row is None else self._decode_block(row[0])

    def repeated_positions(self, block: Block) -> frozenset[int]:
        """The positions of committed `block`'s transactions that committed earlier (in an
        earlier block, or earlier in this one): the executor skips them, since identical bytes
        are one transaction. Free for the blocks of the last append when none repeats (it
        found them as it indexed them, as did the re-index on open); otherwise one index lookup
        per transaction."""
        if self._repeats_from <= block.height <= self._tip_height:
            return self._repeats.get(block.height, frozenset())
        repeated: list[int] = []
        for pos, tx in enumerate(block.txs):
            if self.tx_location(sha256(tx)) != (block.height, pos):
                repeated.append(pos)
        return frozenset(repeated)

    def has_tx(self, tx: bytes) -> bool:
        """Whether `tx` (by its SHA-256) is in a committed block: the filter's "no" is final,
        its "maybe" is checked in the index."""
        return self._committed_location(sha256(tx)) is not None

    def _committed_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """`tx_location`, with the filter's "no" first."""
        return self.tx_location(tx_hash) if self._committed_txs.might_contain(tx_hash) else None

    def committed_tx_filter(self) -> dict[str, int]:
        """The committed-transaction filter's size (`CommittedTxFilter.statistics`)."""
        return self._committed_txs.statistics()

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, position in the block) where the tx with this hash first committed, if it did."""
        waiting = self._unindexed.get(bytes(tx_hash))
        if waiting is not None:
            return waiting
        row = self._db.execute(
            "SELECT height, position FROM txs WHERE hash = ?", (bytes(tx_hash),)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    # The execution record.

    def record_execution(
        self,
        height: int,
        app_hash: bytes,
        results: Sequence[StoredResult],
        own_app_hash: bytes | None = None,
    ) -> None:
        """Record that `height` executed to `app_hash` (what blocks claim) with these
        per-transaction results, in one transaction; writing the same height again replaces it
        (replay writes identical values). On a state-sync chain `app_hash` is the state claim and
        `own_app_hash` the application's app hash inside it (`own_app_hash_at`)."""
        if height > self._tip_height:
            raise StorageError(f"refusing to record execution of height {height} above the tip")
        with self._transaction(f"record execution of height {height}"):
            self._db.execute(
                "INSERT OR REPLACE INTO executed (height, app_hash) VALUES (?, ?)", (height, app_hash)
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO results (height, position, code, log, data) VALUES (?, ?, ?, ?, ?)",
                [(height, pos, r.code, r.log, r.data) for pos, r in enumerate(results)],
            )
            if own_app_hash is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO app_hashes (height, app_hash) VALUES (?, ?)",
                    (height, own_app_hash),
                )

    def last_executed(self) -> tuple[int, bytes] | None:
        """The highest executed height and its app hash; None before the first record."""
        row = self._db.execute(
            "SELECT height, app_hash FROM executed ORDER BY height DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def app_hash_at(self, height: int) -> bytes | None:
        row = self._db.execute("SELECT app_hash FROM executed WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def own_app_hash_at(self, height: int) -> bytes | None:
        """The application's own app hash after `height`, on a state-sync chain (None elsewhere,
        or if not executed or pruned)."""
        row = self._db.execute("SELECT app_hash FROM app_hashes WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    def tx_result(self, height: int, position: int) -> StoredResult | None:
        row = self._db.execute(
            "SELECT code, log, data FROM results WHERE height = ? AND position = ?", (height, position)
        ).fetchone()
        return None if row is None else StoredResult(int(row[0]), str(row[1]), bytes(row[2]))

    # Starting from a snapshot (`bft.node.statesync`).

    def add_tx_records(self, records: Sequence[tuple[bytes, int, int]]) -> None:
        """Before `install_anchor`, into an empty store: index these (hash, height, position)
        records of transactions committed below the anchor and add them to the transaction set,
        in one transaction. StorageError if the store holds blocks, or a hash is already indexed
        (each transaction has one first occurrence)."""
        if self._tip_height or self._tx_set is None:
            raise StorageError("transaction records go into an empty block store of a state-sync chain")
        tx_set = self._tx_set.copy()
        for tx_hash, height, pos in records:
            tx_set.add(tx_hash, height, pos)
        with self._transaction(f"index {len(records)} transaction records"):
            self._db.executemany("INSERT INTO txs (hash, height, position) VALUES (?, ?, ?)", records)
            self._db.execute(
                "INSERT OR REPLACE INTO tx_set (one, lattice) VALUES (1, ?)", (tx_set.to_bytes(),)
            )
        self._tx_set = tx_set
        for tx_hash, _, _ in records:
            self._committed_txs.add(tx_hash)

    def tx_set_digest(self) -> bytes | None:
        """The transaction set's digest over everything indexed so far (state-sync chains)."""
        return None if self._tx_set is None else self._tx_set.digest()

    def install_anchor(
        self,
        blocks: Sequence[Block],
        qcs: Sequence[QuorumCert],
        commit_qc: QuorumCert,
        proof: Sequence[Block],
        claim: bytes,
        own_app_hash: bytes,
    ) -> None:
        """Make an empty store (its transaction records added) start at a snapshot's height:
        `blocks` (consecutive, the last at the snapshot's height A, `qcs[i]` certifying
        `blocks[i]`) as committed, with `commit_qc` and `proof` proving A committed
        (`StoredBlock`), `claim` as A's execution record, and the base below the first block, in
        one transaction. The caller verified all of it (`bft.node.statesync`)."""
        if self._tip_height or not blocks:
            raise StorageError("an anchor goes into an empty block store, with at least one block")
        first, last = blocks[0], blocks[-1]
        self._tip_height, self._tip_id = first.height - 1, first.parent_id
        try:
            self._check_continues(blocks, qcs)
        finally:
            self._tip_height, self._tip_id = 0, None
        digest = self.tx_set_digest()
        with self._transaction(f"install blocks {first.height}..{last.height} from a snapshot"):
            self._insert_commit(blocks, qcs, commit_qc, proof)
            self._db.execute("INSERT OR REPLACE INTO tx_index (one, height) VALUES (1, ?)", (last.height,))
            if self._tx_set is not None and digest is not None:
                self._db.execute("INSERT INTO tx_sets (height, digest) VALUES (?, ?)", (last.height, digest))
                self._db.execute(
                    "INSERT OR REPLACE INTO tx_set (one, lattice) VALUES (1, ?)", (self._tx_set.to_bytes(),)
                )
            self._db.execute("INSERT INTO executed (height, app_hash) VALUES (?, ?)", (last.height, claim))
            self._db.execute(
                "INSERT INTO app_hashes (height, app_hash) VALUES (?, ?)", (last.height, own_app_hash)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO chain_base (one, height) VALUES (1, ?)", (first.height - 1,)
            )
        self._tip_height, self._tip_id = last.height, last.id
        self._base = first.height - 1
        self._indexed_height = last.height
        self._unindexed, self._repeats = {}, {}
        self._repeats_from = last.height + 1

    # Pruning.

    def prune_below(self, height: int, max_heights: int | None = None) -> int:
        """Let go of the committed blocks below `height` (at most `max_heights` of them, the
        oldest, if given), with their commit records, execution records and results, in one
        transaction; the transaction index stays. Returns the new base. StorageError, pruning
        nothing, if `height` is above the last executed height: a block the application has not
        applied must stay for replay, and so must the tip, which the replica's tree grows from."""
        executed = self.last_executed()
        executed_height = executed[0] if executed is not None else 0
        if height > min(executed_height, self._tip_height):
            raise StorageError(
                f"refusing to prune below height {height}: executed to {executed_height}, "
                f"tip {self._tip_height} (the tip and unexecuted blocks stay)"
            )
        new_base = height - 1 if max_heights is None else min(height - 1, self._base + max_heights)
        if new_base <= self._base:
            return self._base
        with self._transaction(f"prune blocks {self._base + 1}..{new_base}"):
            # A commit record's height is its last block's: one at or below the new base is
            # referenced by no block that stays.
            for table in ("blocks", "commits", "results"):
                self._db.execute(f"DELETE FROM {table} WHERE height <= ?", (new_base,))
            self._db.execute("DELETE FROM executed WHERE height < ?", (new_base,))
            self._db.execute("DELETE FROM tx_sets WHERE height < ?", (new_base,))
            self._db.execute("DELETE FROM app_hashes WHERE height < ?", (new_base,))
            self._db.execute("INSERT OR REPLACE INTO chain_base (one, height) VALUES (1, ?)", (new_base,))
        self._base = new_base
        return new_base

    def keep_latest(self, retain_blocks: int, executed_height: int, step: int = PRUNE_STEP_HEIGHTS) -> bool:
        """The retention rule the node and the simulator both run after their commits: keep the
        latest `retain_blocks` executed heights (0 keeps everything), pruning `step` heights at
        a time once that many are past it (the simulator's chains are short: it prunes in
        smaller steps); whether it pruned. A store that starts with a long chain under a new
        retention catches up one step per call."""
        if retain_blocks <= 0:
            return False
        keep_from = executed_height - retain_blocks + 1
        if keep_from - 1 - self._base < step:
            return False
        self.prune_below(keep_from, step)
        return True

    # Evidence of equivocation.

    def add_evidence(self, evidence: Evidence) -> bool:
        """Keep `evidence` unless its (validator, view, kind) is already kept; True if it is new.
        Then drop the validator's oldest rows past MAX_EVIDENCE_PER_VALIDATOR, in the same
        transaction."""
        row = (
            int(evidence.validator),
            int(evidence.view),
            evidence.kind.value,
            wire.encode(evidence.first),
            wire.encode(evidence.second),
        )
        with self._transaction("store evidence"):
            added = self._db.execute(
                "INSERT OR IGNORE INTO evidence (validator, view, kind, first, second)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            ).rowcount
            self._db.execute(
                "DELETE FROM evidence WHERE validator = ? AND seq NOT IN"
                " (SELECT seq FROM evidence WHERE validator = ? ORDER BY seq DESC LIMIT ?)",
                (row[0], row[0], MAX_EVIDENCE_PER_VALIDATOR),
            )
        return added == 1

    def evidence(self, limit: int = MAX_EVIDENCE_PAGE, before: int | None = None) -> list[StoredEvidence]:
        """Kept evidence, newest first: at most `limit` (capped at MAX_EVIDENCE_PAGE) rows, only
        those with `seq` below `before` if given (the last `seq` of a page asks for the next)."""
        limit = max(0, min(limit, MAX_EVIDENCE_PAGE))
        rows = self._db.execute(
            "SELECT seq, kind, validator, view, first, second FROM evidence WHERE seq < ?"
            " ORDER BY seq DESC LIMIT ?",
            (before if before is not None else 2**63 - 1, limit),
        ).fetchall()
        return [
            StoredEvidence(int(r[0]), str(r[1]), int(r[2]), int(r[3]), bytes(r[4]), bytes(r[5])) for r in rows
        ]

    # The block journal (bft.core.journal.BlockJournal).

    def add(self, blocks: Sequence[Block]) -> None:
        """Journal uncommitted blocks in one transaction; durable when this returns."""
        rows = [(bytes(b.id), b.height, wire.encode_block(b)) for b in blocks]
        if blocks:
            self._pruned_to = min(self._pruned_to, min(b.height for b in blocks) - 1)
        self._write(
            "journal blocks", "INSERT OR IGNORE INTO journal (id, height, block) VALUES (?, ?, ?)", rows
        )

    def blocks(self) -> list[Block]:
        return [self._decode_block(row[0]) for row in self._db.execute("SELECT block FROM journal")]

    def prune_to(self, height: int) -> None:
        """Let go of journaled blocks at or below `height`; durable when this returns. A prune
        already done (`Executor.on_commit` prunes in the commit's own transaction) costs no
        transaction of its own."""
        if height <= self._pruned_to:
            return
        self._write("prune the journal", "DELETE FROM journal WHERE height <= ?", [(height,)])
        self._pruned_to = height

    def save_tc(self, tc: TimeoutCert) -> None:
        """Keep the highest TC seen; durable when this returns."""
        self._write(
            "save the TC", "INSERT OR REPLACE INTO high_tc (one, tc) VALUES (1, ?)", [(wire.encode_tc(tc),)]
        )

    def high_tc(self) -> TimeoutCert | None:
        row = self._db.execute("SELECT tc FROM high_tc").fetchone()
        if row is None:
            return None
        try:
            return wire.decode_tc(row[0])
        except DecodeError as exc:
            raise StorageError(f"{self._path}: corrupt TC record: {exc}") from exc

    def _write(self, what: str, statement: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._transaction(what):
            self._db.executemany(statement, rows)

    @contextlib.contextmanager
    def batch(self, what: str) -> Iterator[None]:
        """Group the writes made inside (appends, execution records, journal prunes) into one
        transaction: one COMMIT, one disk sync. All of them are durable when it returns; none is
        if it raises (then the store reloads its tip). Batches inside a batch join it.

        Why: each COMMIT is a synchronous disk sync, several of them on the critical path of
        every view (`Executor.on_commit`)."""
        if self._batch_depth:
            yield
            return
        try:
            with self._transaction(what):
                self._batch_depth = 1
                try:
                    yield
                finally:
                    self._batch_depth = 0
        except BaseException:
            self._tip_height, self._tip_id = self._load_tip()
            self._base = self._load_base()
            self._tx_set = self._load_tx_set()
            self._pruned_to = -1
            self._reindex()
            raise

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction: committed if the body returns, rolled back if it raises; SQLite
        errors become StorageError naming `what`. Inside a `batch`, part of the batch's."""
        if self._batch_depth:
            try:
                yield
            except sqlite3.Error as exc:
                raise StorageError(f"{self._path}: cannot {what}: {exc}") from exc
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"{self._path}: cannot {what}: {exc}") from exc
