"""The built-in key-value ledger: an `Application` whose state is a string-to-string map in SQLite.

Owns: `KeyValueLedger`, the transaction format and its validation (`parse_tx`), the one encoder
of transactions (`encode_tx`, with `put_tx`, `del_tx`, `cas_tx` and `canonical_tx` over it), the
result codes and `MAX_TX_BYTES`, the app hash (hash version 1: a chain; version 2: a chain and an
LtHash state commitment), the SQLite database (schema, transactions, a restore's staging and
installing) and `open_kv_app`, the factory a node's `[app] factory` may name (`KV_FACTORY`). The
key and value limits, `element(k, v)` and `app_hash_v2` are `bft.app.kv_state`'s, the snapshot
format and files `bft.app.kv_snapshots`'s; this module re-exports their public names (`__all__`),
so that callers import the ledger's whole surface from here.
May not: import anything outside the standard library, read or write snapshot files itself
(`bft.app.kv_snapshots` owns their format and directory), or be called concurrently: one owner
(e.g. one trio task, possibly through a worker thread) calls it synchronously.

Transactions are UTF-8 JSON objects (DESIGN.md, "Interfaces other programs rely on"):

    {"op": "put", "key": K, "value": V}
    {"op": "del", "key": K}
    {"op": "cas", "key": K, "expect": V_or_null, "value": V}

each with an optional "nonce" (a JSON string or integer) that only makes otherwise identical
operations distinct transactions. Keys are non-empty strings of at most `MAX_KEY_BYTES` UTF-8
bytes, values strings of at most `MAX_VALUE_BYTES`; the whole transaction is at most
`MAX_TX_BYTES`. Anything else (bad UTF-8, bad JSON, duplicate or missing or extra fields, NaN,
wrong types, lone surrogates) is refused with a non-zero code and leaves state unchanged.

Canonical form: what `encode_tx` writes, and so what `bft submit`, `bft.client` and `bft bench`
send: the object's fields sorted by name, no whitespace (separators "," and ":"), UTF-8 with no
escapes beyond JSON's required ones (`"`, `\\`, control characters), `"nonce"` only when given,
`"expect": null` for "absent". A transaction's identity is its bytes (its hash is their SHA-256),
so only the canonical form makes "the same operation from any of our tools is one transaction"
hold. The ledger accepts every spelling that parses (other clients write their own JSON), and
`canonical_tx` rewrites one into the canonical form.

Semantics: `put` sets; `del` removes, and deleting an absent key succeeds as a no-op; `cas` sets
`key` to `value` only if its current value equals `expect` (null = absent), else fails with
`CODE_CAS_MISMATCH`. A successful result's `data` is the JSON encoding of the previous value
(`null` if absent); a failed `cas` carries the current value the same way, so a client can retry
its read-modify-write without another query.

App hash (a hash chain, cheap and deterministic; it commits to the whole history, hence to the
state): `app_hash(0) = GENESIS_APP_HASH` (32 zero bytes) and

    app_hash(h) = sha256("bft-kv/v1" || app_hash(h-1) || u64(h) || u32(len(txs)) || entry...)
    entry       = sha256(tx) || u32(code) || write
    write       = 0x00                                          (no write: the tx failed)
                | 0x01 || u32(len(k)) || k || u32(len(v)) || v  (k set to v)
                | 0x02 || u32(len(k)) || k                      (k deleted)

with integers big-endian and k, v UTF-8. Logs are not hashed: they are for humans.

Hash version 2 (the `hash_version` option, fixed when the ledger is created and recorded in its
database; version 1 is the default and its bytes never change) adds a commitment to the state
itself, so that a snapshot of the state at height h can be checked against the app hash of h:

    chain(0)    = 32 zero bytes
    chain(h)    = sha256("bft-kv/v2/chain" || chain(h-1) || u64(h) || u32(len(txs)) || entry...)
    state(h)    = LtHash (`bft.app.lthash`) of the set { element(k, v) : k -> v committed at h }
    element     = u32(len(k)) || k || u32(len(v)) || v
    app_hash(0) = GENESIS_APP_HASH
    app_hash(h) = sha256("bft-kv/v2" || chain(h) || state(h).digest())     for h >= 1

with `entry` as in version 1. `execute_block` keeps state(h) incrementally: for every key the
block wrote whose final value differs from the committed one, it removes the old element (if
the key existed) and adds the new one (if the key exists after the block), about 8 us each.

Snapshots (hash version 2 only): with `snapshot_interval` N > 0, `commit()` of a height divisible
by N writes a snapshot of the state it just committed into `<snapshot dir>/<height>/`, keeping the
newest `snapshots_kept`. Their format (chunks of `element(k, v)` entries, metadata naming chain(h)
and each chunk's hash), their atomic writing and the checks of an offer and of its chunks are
`bft.app.kv_snapshots`'s (see its header). A failure to write a snapshot is logged and never fails
the commit, which is already durable.

Restoring stages the entries of each chunk that passes its checks into the `kv_restore` table,
accumulating state(h); after the last chunk one SQLite transaction swaps `kv_restore` in as `kv`
and sets the height, app hash, chain and lattice (and the height's `app_hashes` row). Until then
`kv` and `meta` are untouched, so a refused snapshot, an abandoned restore or a crash leaves the
previous state; a stale `kv_restore` is emptied on the next offer or open. Offers at or below the
committed height are refused: restoring catches a ledger up, it never takes it back.

Durability: `execute_block` reads the committed value of every key its block names in a few
batched queries, then executes the transactions in order against an in-memory overlay; `commit`
writes the overlay, the height and the app hash in one SQLite transaction (WAL,
`synchronous=FULL`), so a crash between the two leaves the previous block's state and replay
reproduces the same results and hash.

Schema (version 2, in `PRAGMA user_version`; a version-1 database is upgraded in place when
opened, recording hash version 1):

    kv(key BLOB PRIMARY KEY, value BLOB)          -- UTF-8 bytes, committed state only
    meta(one INTEGER PRIMARY KEY CHECK (one = 1), height INTEGER, app_hash BLOB,
         hash_version INTEGER,                    -- 1 or 2, fixed at creation
         chain BLOB, lattice BLOB)                -- version 2: chain(height), state(height) (2048 bytes)
    app_hashes(height INTEGER PRIMARY KEY, app_hash BLOB)  -- every committed (or restored) height's
    kv_restore(key BLOB PRIMARY KEY, value BLOB)  -- a restore's staged entries, else empty
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bft.app import kv_snapshots
from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    MAX_SNAPSHOT_CHUNK_BYTES,
    QUERY_BAD_REQUEST,
    QUERY_NOT_FOUND,
    QUERY_OK,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    AppInfo,
    ApplyResult,
    BlockResult,
    ClosesOnExit,
    OfferResult,
    OutOfOrder,
    QueryResult,
    Snapshot,
    StateCorrupt,
    TxCheck,
    TxResult,
)
from bft.app.kv_snapshots import (
    DEFAULT_SNAPSHOT_CHUNK_BYTES,
    DEFAULT_SNAPSHOTS_KEPT,
    MAX_ENTRY_BYTES,
    MAX_KV_SNAPSHOT_CHUNKS,
    SNAPSHOT_FORMAT,
)
from bft.app.kv_state import (
    CHAIN_SIZE_BYTES,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    app_hash_v2,
    kv_element,
    state_lthash,
)
from bft.app.lthash import SIZE_BYTES as LTHASH_SIZE_BYTES
from bft.app.lthash import LtHash

__all__ = [
    "APP_FILE_NAME",
    "CODE_CAS_MISMATCH",
    "CODE_MALFORMED",
    "CODE_TOO_LARGE",
    "DEFAULT_SNAPSHOTS_KEPT",
    "DEFAULT_SNAPSHOT_CHUNK_BYTES",
    "HASH_VERSIONS",
    "KV_FACTORY",
    "MAX_ENTRY_BYTES",
    "MAX_KEY_BYTES",
    "MAX_KV_SNAPSHOT_CHUNKS",
    "MAX_TX_BYTES",
    "MAX_VALUE_BYTES",
    "QUERY_PATH_KV",
    "SCHEMA_VERSION",
    "SNAPSHOT_DIR_NAME",
    "SNAPSHOT_FORMAT",
    "CompareAndSet",
    "Delete",
    "KeyValueLedger",
    "KvOp",
    "Put",
    "Rejection",
    "app_hash_v2",
    "canonical_tx",
    "cas_tx",
    "del_tx",
    "encode_tx",
    "kv_element",
    "open_kv_app",
    "parse_tx",
    "put_tx",
    "state_lthash",
]

log = logging.getLogger("bft.app")

# Room for a maximal key and value plus JSON quoting overhead of ordinary text.
MAX_TX_BYTES: Final = 70 * 1024

CODE_MALFORMED: Final = 1
CODE_TOO_LARGE: Final = 2
CODE_CAS_MISMATCH: Final = 3

QUERY_PATH_KV: Final = "/kv"

# What `[app] factory` names to run this ledger with explicit options (`open_kv_app`).
KV_FACTORY: Final = "bft.app.kv:open_kv_app"
APP_FILE_NAME: Final = "app.sqlite"
SNAPSHOT_DIR_NAME: Final = "snapshots"

HASH_VERSIONS: Final = (1, 2)

SCHEMA_VERSION: Final = 2
_HASH_DOMAIN: Final = b"bft-kv/v1"
_CHAIN_DOMAIN_V2: Final = b"bft-kv/v2/chain"
_ZERO_CHAIN: Final = bytes(CHAIN_SIZE_BYTES)
_KV_TABLE_SQL: Final = "(key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
_WRITE_NONE: Final = b"\x00"
_WRITE_SET: Final = b"\x01"
_WRITE_DELETE: Final = b"\x02"
# Keys per `IN (...)` read: well below SQLite's host-parameter limit (999 before 3.32, 32766 since).
_READ_CHUNK_KEYS: Final = 500

_FIELDS: Final[dict[str, frozenset[str]]] = {
    "put": frozenset({"op", "key", "value"}),
    "del": frozenset({"op", "key"}),
    "cas": frozenset({"op", "key", "expect", "value"}),
}


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class CompareAndSet:
    key: str
    expect: str | None
    value: str


KvOp = Put | Delete | CompareAndSet


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a transaction is not a valid key-value operation: an expected refusal, as a value."""

    code: int
    log: str


class _Malformed(Exception):
    """Raised inside JSON hooks; never escapes `parse_tx`."""


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads would silently keep the last duplicate; an ambiguous transaction is refused instead.
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            raise _Malformed(f"duplicate field {name!r}")
        result[name] = value
    return result


def _reject_constant(name: str) -> object:
    raise _Malformed(f"{name} is not valid JSON")


# The codecs of transactions and of result data, built once: `json.loads` and `json.dumps` with
# any non-default argument build a new decoder or encoder per call, which was a tenth of a
# transaction's execution. Each is exactly what that call would build.
_TX_DECODER: Final = json.JSONDecoder(object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
# allow_nan=False: no field can hold a float; a NaN reaching here is a bug, not a transaction.
_TX_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
)
_VALUE_ENCODER: Final = json.JSONEncoder(ensure_ascii=False)


def _check_text(field: str, value: object, limit_bytes: int) -> str | Rejection:
    if not isinstance(value, str):
        return Rejection(CODE_MALFORMED, f"{field!r} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return Rejection(CODE_MALFORMED, f"{field!r} is not valid Unicode (lone surrogate)")
    if size > limit_bytes:
        return Rejection(CODE_TOO_LARGE, f"{field!r} is {size} bytes, limit {limit_bytes}")
    return value


def parse_tx(tx: bytes) -> KvOp | Rejection:
    """Decode and validate one transaction. Pure: depends on the bytes alone."""
    parsed = _parse(tx)
    return parsed if isinstance(parsed, Rejection) else parsed[0]


def canonical_tx(tx: bytes) -> bytes | Rejection:
    """The canonical bytes of the operation `tx` spells (its nonce kept), or why it is none.

    A fixed point on canonical bytes: `canonical_tx(encode_tx(op, nonce)) == encode_tx(op, nonce)`.
    """
    parsed = _parse(tx)
    return parsed if isinstance(parsed, Rejection) else encode_tx(*parsed)


def _parse(tx: bytes) -> tuple[KvOp, str | int | None] | Rejection:
    if len(tx) > MAX_TX_BYTES:
        return Rejection(CODE_TOO_LARGE, f"tx is {len(tx)} bytes, limit {MAX_TX_BYTES}")
    try:
        text = bytes(tx).decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(CODE_MALFORMED, "tx is not valid UTF-8")
    try:
        doc = _TX_DECODER.decode(text)
    except _Malformed as exc:
        return Rejection(CODE_MALFORMED, f"tx is not valid JSON: {exc}")
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and over-long integers; RecursionError deep nesting.
        return Rejection(CODE_MALFORMED, f"tx is not valid JSON: {type(exc).__name__}: {exc}")
    if not isinstance(doc, dict):
        return Rejection(CODE_MALFORMED, f"tx must be a JSON object, not {type(doc).__name__}")
    op = doc.get("op")
    if "op" not in doc:
        return Rejection(CODE_MALFORMED, "missing field 'op'")
    if not isinstance(op, str) or op not in _FIELDS:
        return Rejection(CODE_MALFORMED, f"unknown op {op!r}; expected one of {sorted(_FIELDS)}")
    required = _FIELDS[op]
    present = set(doc) - {"nonce"}
    if missing := required - present:
        return Rejection(CODE_MALFORMED, f"{op}: missing field(s) {sorted(missing)}")
    if extra := present - required:
        return Rejection(CODE_MALFORMED, f"{op}: unexpected field(s) {sorted(extra)}")
    nonce: str | int | None = None
    if "nonce" in doc:
        nonce = doc["nonce"]
        # bool is an int subclass in Python but not a JSON integer.
        if isinstance(nonce, bool) or not isinstance(nonce, str | int):
            return Rejection(CODE_MALFORMED, f"'nonce' must be a string or integer, not {nonce!r}")
        if isinstance(nonce, str):
            checked_nonce = _check_text("nonce", nonce, MAX_TX_BYTES)
            if isinstance(checked_nonce, Rejection):
                return checked_nonce
    key = _check_text("key", doc["key"], MAX_KEY_BYTES)
    if isinstance(key, Rejection):
        return key
    if not key:
        return Rejection(CODE_MALFORMED, "'key' must not be empty")
    if op == "del":
        return Delete(key), nonce
    value = _check_text("value", doc["value"], MAX_VALUE_BYTES)
    if isinstance(value, Rejection):
        return value
    if op == "put":
        return Put(key, value), nonce
    if doc["expect"] is None:
        return CompareAndSet(key, None, value), nonce
    expect = _check_text("expect", doc["expect"], MAX_VALUE_BYTES)
    if isinstance(expect, Rejection):
        return expect
    return CompareAndSet(key, expect, value), nonce


def encode_tx(op: KvOp, nonce: str | int | None = None) -> bytes:
    """The canonical bytes of `op` (see the module's header): the only encoder of transactions."""
    doc: dict[str, object]
    if isinstance(op, Put):
        doc = {"op": "put", "key": op.key, "value": op.value}
    elif isinstance(op, Delete):
        doc = {"op": "del", "key": op.key}
    else:
        doc = {"op": "cas", "key": op.key, "expect": op.expect, "value": op.value}
    if nonce is not None:
        doc["nonce"] = nonce
    return _TX_ENCODER.encode(doc).encode("utf-8")


def put_tx(key: str, value: str, nonce: str | int | None = None) -> bytes:
    """Canonical bytes of a put transaction."""
    return encode_tx(Put(key, value), nonce)


def del_tx(key: str, nonce: str | int | None = None) -> bytes:
    """Canonical bytes of a delete transaction."""
    return encode_tx(Delete(key), nonce)


def cas_tx(key: str, expect: str | None, value: str, nonce: str | int | None = None) -> bytes:
    """Canonical bytes of a compare-and-set transaction (`expect=None`: the key must be absent)."""
    return encode_tx(CompareAndSet(key, expect, value), nonce)


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


def _json_value(value: str | None) -> bytes:
    return _VALUE_ENCODER.encode(value).encode("utf-8")


# One transaction's write: (key, new value), the value None for a deletion.
_Write = tuple[str, str | None]
# Reads the current value of a key: the block's overlay first, then committed state.
_Reader = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class _Staged:
    height: int
    app_hash: bytes
    # Final value per written key (None = deleted), in first-write order; what commit writes. Each
    # key appears once, so commit's deletes and upserts are disjoint and their order is immaterial.
    overlay: dict[str, str | None]
    # Hash version 2 only: chain(height) and state(height).
    chain: bytes | None
    lattice: LtHash | None


@dataclass(frozen=True, slots=True)
class _Meta:
    height: int
    app_hash: bytes
    hash_version: int
    chain: bytes | None
    lattice: LtHash | None


class KeyValueLedger(ClosesOnExit):
    """The key-value ledger over one SQLite file. Implements `bft.app.interface.Application` and
    `bft.app.interface.SnapshotApplication` (snapshots need `hash_version=2`).

    Opening creates the file and schema when absent. `close()` discards any staged block and
    any restore in progress. Options (ValueError when out of range):
    `hash_version` 1 or 2 (see the header; must match the database's);
    `snapshot_interval` heights between snapshots, 0 for none (> 0 needs version 2);
    `snapshots_kept` >= 1; `snapshot_chunk_bytes` between `MAX_ENTRY_BYTES` and
    `MAX_SNAPSHOT_CHUNK_BYTES`; `snapshot_dir`, default `<directory of path>/snapshots`, where
    snapshots are written and served from (its `*.tmp` leftovers are removed on open when
    snapshots are on).
    """

    def __init__(
        self,
        path: Path,
        *,
        hash_version: int = 1,
        snapshot_interval: int = 0,
        snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT,
        snapshot_chunk_bytes: int = DEFAULT_SNAPSHOT_CHUNK_BYTES,
        snapshot_dir: Path | None = None,
    ) -> None:
        path = Path(path)
        self._configure(
            hash_version,
            snapshot_interval,
            snapshots_kept,
            snapshot_chunk_bytes,
            path.parent / SNAPSHOT_DIR_NAME if snapshot_dir is None else Path(snapshot_dir),
        )
        # check_same_thread=False: the single owner may hand calls to a worker thread; calls are
        # never concurrent (module contract). isolation_level=None: transactions are explicit.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._open(conn, path, on_disk=True)

    @classmethod
    def over(
        cls,
        conn: sqlite3.Connection,
        name: str,
        *,
        hash_version: int = 1,
        snapshot_interval: int = 0,
        snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT,
        snapshot_chunk_bytes: int = DEFAULT_SNAPSHOT_CHUNK_BYTES,
        snapshot_dir: Path | None = None,
    ) -> KeyValueLedger:
        """The ledger in the open database `conn`, e.g. an in-memory one that outlives this object
        (the simulator keeps it across a simulated crash, and a restart opens a new ledger over
        it, which reads the committed state as a restarted node reads its file). The same schema
        and transactions; only the WAL and `synchronous=FULL` pragmas are skipped. `close()`
        closes `conn`. Writing snapshots needs an explicit `snapshot_dir`; restoring does not."""
        ledger = cls.__new__(cls)
        if snapshot_interval > 0 and snapshot_dir is None:
            raise ValueError("snapshot_interval > 0 needs a snapshot_dir for a ledger over a connection")
        ledger._configure(hash_version, snapshot_interval, snapshots_kept, snapshot_chunk_bytes, snapshot_dir)
        conn.isolation_level = None
        ledger._open(conn, Path(name), on_disk=False)
        return ledger

    def _configure(
        self,
        hash_version: int,
        snapshot_interval: int,
        snapshots_kept: int,
        snapshot_chunk_bytes: int,
        snapshot_dir: Path | None,
    ) -> None:
        if hash_version not in HASH_VERSIONS:
            raise ValueError(f"hash_version must be one of {HASH_VERSIONS}, not {hash_version!r}")
        if snapshot_interval < 0:
            raise ValueError(f"snapshot_interval must be >= 0, not {snapshot_interval}")
        if snapshot_interval > 0 and hash_version < 2:
            raise ValueError("snapshots need hash_version=2 (version 1 has no state commitment)")
        if snapshots_kept < 1:
            raise ValueError(f"snapshots_kept must be >= 1, not {snapshots_kept}")
        if not MAX_ENTRY_BYTES <= snapshot_chunk_bytes <= MAX_SNAPSHOT_CHUNK_BYTES:
            raise ValueError(
                f"snapshot_chunk_bytes must be between {MAX_ENTRY_BYTES} (one maximal entry) and"
                f" {MAX_SNAPSHOT_CHUNK_BYTES}, not {snapshot_chunk_bytes}"
            )
        self._hash_version = hash_version
        self._snapshot_interval = snapshot_interval
        self._snapshots_kept = snapshots_kept
        self._snapshot_chunk_bytes = snapshot_chunk_bytes
        self._snapshot_dir = snapshot_dir

    def _open(self, conn: sqlite3.Connection, path: Path, *, on_disk: bool) -> None:
        self._path = path
        try:
            if on_disk:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            meta = self._open_schema(conn, self._hash_version, str(path))
        except BaseException:
            conn.close()
            raise
        self._height, self._app_hash = meta.height, meta.app_hash
        self._chain, self._lattice = meta.chain, meta.lattice
        self._conn: sqlite3.Connection | None = conn
        self._staged: _Staged | None = None
        self._restore: kv_snapshots.Restore | None = None
        root = self._snapshots_on()
        if root is not None:
            kv_snapshots.remove_partial_snapshots(root)

    @staticmethod
    def _open_schema(conn: sqlite3.Connection, hash_version: int, source: str) -> _Meta:
        with _transaction(conn):
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:
                _create_schema(conn, hash_version)
            elif version == 1:
                _upgrade_schema_1(conn)
            elif version != SCHEMA_VERSION:
                raise StateCorrupt(f"unknown key-value ledger schema version {version}")
            row = conn.execute(
                "SELECT height, app_hash, hash_version, chain, lattice FROM meta WHERE one = 1"
            ).fetchone()
            meta = _check_meta(row, hash_version, source)
            # A restore that a crash or close() interrupted: its staged entries are of no use now.
            if conn.execute("SELECT 1 FROM kv_restore LIMIT 1").fetchone() is not None:
                conn.execute("DELETE FROM kv_restore")
        return meta

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AppClosed(f"key-value ledger {self._path} is closed")
        return self._conn

    @property
    def hash_version(self) -> int:
        return self._hash_version

    def close(self) -> None:
        """Close the database. A staged, uncommitted block is discarded (as a crash would), and so
        is a restore in progress (the previous state stays)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._staged = None
            self._restore = None

    def _committed(self, keys: Iterable[str]) -> dict[str, str]:
        """The committed values of those of `keys` that are present (valid UTF-8 keys only)."""
        conn = self._db()
        encoded = [key.encode("utf-8") for key in keys]
        values: dict[str, str] = {}
        for start in range(0, len(encoded), _READ_CHUNK_KEYS):
            chunk = encoded[start : start + _READ_CHUNK_KEYS]
            sql = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))})"
            for key, value in conn.execute(sql, chunk):
                values[bytes(key).decode("utf-8")] = bytes(value).decode("utf-8")
        return values

    def info(self) -> AppInfo:
        self._db()
        return AppInfo(last_height=self._height, app_hash=self._app_hash)

    def state_lthash(self) -> LtHash | None:
        """A copy of state(committed height) for hash version 2, None for version 1."""
        self._db()
        return None if self._lattice is None else self._lattice.copy()

    def check_tx(self, tx: bytes) -> TxCheck:
        """Stateless validation: a `cas` whose expectation fails now may succeed in its block."""
        self._db()
        parsed = parse_tx(tx)
        if isinstance(parsed, Rejection):
            return TxCheck(ok=False, error=parsed.log)
        return TxCheck(ok=True)

    def execute_block(self, height: int, txs: Sequence[bytes]) -> BlockResult:
        """As the interface says; it also abandons a restore in progress (the node chose blocks)."""
        self._db()
        if self._staged is not None:
            raise OutOfOrder(
                f"execute_block({height}): block {self._staged.height} is executed but not committed"
            )
        if height != self._height + 1:
            raise OutOfOrder(f"execute_block({height}): expected height {self._height + 1}")
        if self._restore is not None:
            self._drop_restore(f"execute_block({height}) abandons it")
        ops = [parse_tx(bytes(tx)) for tx in txs]
        # dict.fromkeys: distinct keys in first-touch order, so the reads are deterministic.
        committed = self._committed(dict.fromkeys(op.key for op in ops if not isinstance(op, Rejection)))
        overlay: dict[str, str | None] = {}

        def current(key: str) -> str | None:
            return overlay[key] if key in overlay else committed.get(key)

        hasher = hashlib.sha256()
        if self._chain is None:
            hasher.update(_HASH_DOMAIN)
            hasher.update(self._app_hash)
        else:
            hasher.update(_CHAIN_DOMAIN_V2)
            hasher.update(self._chain)
        hasher.update(struct.pack(">Q", height))
        hasher.update(_u32(len(txs)))
        results: list[TxResult] = []
        for tx, op in zip(txs, ops, strict=True):
            result, write = self._execute_op(op, current)
            if write is not None:
                overlay[write[0]] = write[1]
            hasher.update(hashlib.sha256(tx).digest())
            hasher.update(_u32(result.code))
            hasher.update(_hash_write(write))
            results.append(result)
        chain: bytes | None = None
        lattice: LtHash | None = None
        if self._lattice is None:
            app_hash = hasher.digest()
        else:
            chain = hasher.digest()
            lattice = _updated_lattice(self._lattice, committed, overlay)
            app_hash = app_hash_v2(chain, lattice)
        self._staged = _Staged(
            height=height, app_hash=app_hash, overlay=overlay, chain=chain, lattice=lattice
        )
        return BlockResult(height=height, results=tuple(results), app_hash=app_hash)

    @staticmethod
    def _execute_op(op: KvOp | Rejection, current: _Reader) -> tuple[TxResult, _Write | None]:
        if isinstance(op, Rejection):
            return TxResult(code=op.code, log=op.log), None
        previous = current(op.key)
        if isinstance(op, Put):
            return TxResult(CODE_OK, "put", _json_value(previous)), (op.key, op.value)
        if isinstance(op, Delete):
            log = "deleted" if previous is not None else "deleted (was absent)"
            return TxResult(CODE_OK, log, _json_value(previous)), (op.key, None)
        if previous != op.expect:
            log = "cas mismatch: " + ("key is absent" if previous is None else "current value differs")
            return TxResult(CODE_CAS_MISMATCH, log, _json_value(previous)), None
        return TxResult(CODE_OK, "cas", _json_value(previous)), (op.key, op.value)

    def commit(self) -> bytes:
        """As the interface says; at a height divisible by `snapshot_interval` it then writes a
        snapshot of the state it committed (a failure to write one is logged, not raised)."""
        conn = self._db()
        staged = self._staged
        if staged is None:
            raise OutOfOrder(f"commit(): no block executed since height {self._height}")
        deletes = [(key.encode("utf-8"),) for key, value in staged.overlay.items() if value is None]
        upserts = [
            (key.encode("utf-8"), value.encode("utf-8"))
            for key, value in staged.overlay.items()
            if value is not None
        ]
        lattice_bytes = None if staged.lattice is None else staged.lattice.to_bytes()
        with _transaction(conn):
            conn.executemany("DELETE FROM kv WHERE key = ?", deletes)
            conn.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                upserts,
            )
            conn.execute(
                "UPDATE meta SET height = ?, app_hash = ?, chain = ?, lattice = ? WHERE one = 1",
                (staged.height, staged.app_hash, staged.chain, lattice_bytes),
            )
            conn.execute("INSERT INTO app_hashes VALUES (?, ?)", (staged.height, staged.app_hash))
        self._height, self._app_hash = staged.height, staged.app_hash
        self._chain, self._lattice = staged.chain, staged.lattice
        self._staged = None
        if self._snapshot_interval > 0 and staged.height % self._snapshot_interval == 0:
            self._write_snapshot()
        return staged.app_hash

    def query(self, path: str, data: bytes) -> QueryResult:
        """`query("/kv", key_utf8)`: the committed value as UTF-8 bytes, at the committed height."""
        self._db()
        if path != QUERY_PATH_KV:
            return QueryResult(code=QUERY_UNKNOWN_PATH, value=None, height=self._height)
        try:
            key = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return QueryResult(code=QUERY_BAD_REQUEST, value=None, height=self._height)
        value, height = self.get(key)
        if value is None:
            return QueryResult(code=QUERY_NOT_FOUND, value=None, height=height)
        return QueryResult(code=QUERY_OK, value=value.encode("utf-8"), height=height)

    def get(self, key: str) -> tuple[str | None, int]:
        """The committed value of `key` (None if absent) and the committed height."""
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            # No stored key can contain a lone surrogate: validation refuses them.
            return None, self._height
        return self._committed([key]).get(key), self._height

    def app_hash_at(self, height: int) -> bytes | None:
        """The app hash committed at `height` (genesis at 0), or None above the committed height
        and for the heights a snapshot restore skipped."""
        if height == 0:
            return GENESIS_APP_HASH
        row = self._db().execute("SELECT app_hash FROM app_hashes WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])

    # Snapshots: writing and serving (the files are `kv_snapshots`'s).

    def _snapshots_on(self) -> Path | None:
        return self._snapshot_dir if self._snapshot_interval > 0 else None

    def _write_snapshot(self) -> None:
        root = self._snapshot_dir
        if root is None:
            return
        assert self._chain is not None, "snapshots are only on with hash version 2"
        kv_snapshots.write_snapshot(
            root,
            self._height,
            self._chain,
            self._db().execute("SELECT key, value FROM kv ORDER BY key"),
            chunk_bytes=self._snapshot_chunk_bytes,
            kept=self._snapshots_kept,
        )

    def list_snapshots(self) -> tuple[Snapshot, ...]:
        """The snapshots in the snapshot directory, newest first, at most `snapshots_kept`; none
        when snapshots are off. A snapshot that does not read back is skipped and logged."""
        self._db()
        root = self._snapshots_on()
        return () if root is None else kv_snapshots.list_snapshots(root, self._snapshots_kept)

    def load_snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        """Chunk `index` of the held snapshot at `height`, checked against its metadata; None when
        it is not held, or does not read back as written (logged)."""
        self._db()
        root = self._snapshots_on()
        return None if root is None else kv_snapshots.load_snapshot_chunk(root, height, format, index)

    # Snapshots: restoring (the checks are `kv_snapshots.Restore`'s, the SQLite writes these).

    def offer_snapshot(self, snapshot: Snapshot, app_hash: bytes) -> OfferResult:
        """Start restoring `snapshot` (see the interface). Raises `OutOfOrder` while a block is
        staged; a restore in progress is abandoned."""
        self._db()
        if self._staged is not None:
            raise OutOfOrder(f"offer_snapshot: block {self._staged.height} is executed but not committed")
        if self._restore is not None:
            self._drop_restore("a new snapshot was offered")
        if self._lattice is None:
            log.warning("refusing a snapshot: this ledger uses hash version 1, which has no state commitment")
            return OfferResult.REJECT
        restore = kv_snapshots.start_restore(snapshot, app_hash, self._height)
        if isinstance(restore, OfferResult):
            return restore
        self._empty_staging()
        self._restore = restore
        log.info("restoring the snapshot at height %d (%d chunks)", snapshot.height, snapshot.chunks)
        return OfferResult.ACCEPT

    def apply_snapshot_chunk(self, index: int, chunk: bytes) -> ApplyResult:
        """Apply chunk `index` of the offered snapshot (see the interface). Raises `OutOfOrder`
        with no restore in progress or for another index than the next expected one."""
        conn = self._db()
        restore = self._restore
        if restore is None:
            raise OutOfOrder(f"apply_snapshot_chunk({index}): no restore in progress")
        if index != restore.next_index:
            raise OutOfOrder(f"apply_snapshot_chunk({index}): expected chunk {restore.next_index}")
        checked = restore.check_chunk(chunk)
        if checked is ApplyResult.REJECT_SNAPSHOT:
            self._drop_restore(None)
        if isinstance(checked, ApplyResult):
            return checked
        with _transaction(conn):
            conn.executemany("INSERT INTO kv_restore (key, value) VALUES (?, ?)", checked.rows)
        restore.advance(checked)
        return self._finish_restore(restore) if restore.complete else ApplyResult.ACCEPT

    def _finish_restore(self, restore: kv_snapshots.Restore) -> ApplyResult:
        conn = self._db()
        height = restore.snapshot.height
        app_hash = restore.verified_app_hash()
        if app_hash is None:
            self._drop_restore(None)
            return ApplyResult.REJECT_SNAPSHOT
        with _transaction(conn):
            conn.execute("DROP TABLE kv")
            conn.execute("ALTER TABLE kv_restore RENAME TO kv")
            conn.execute(f"CREATE TABLE kv_restore {_KV_TABLE_SQL}")
            conn.execute(
                "UPDATE meta SET height = ?, app_hash = ?, chain = ?, lattice = ? WHERE one = 1",
                (height, app_hash, restore.chain, restore.lattice.to_bytes()),
            )
            conn.execute("DELETE FROM app_hashes WHERE height >= ?", (height,))
            conn.execute("INSERT INTO app_hashes VALUES (?, ?)", (height, app_hash))
        self._height, self._app_hash = height, app_hash
        self._chain, self._lattice = restore.chain, restore.lattice
        self._restore = None
        log.info("restored the snapshot at height %d: %d entries", height, restore.entries)
        return ApplyResult.ACCEPT

    def _drop_restore(self, why: str | None) -> None:
        """End the restore in progress and empty its staging table; the state is untouched."""
        restore, self._restore = self._restore, None
        if restore is not None and why is not None:
            log.info("abandoning the restore of the snapshot at height %d: %s", restore.snapshot.height, why)
        self._empty_staging()

    def _empty_staging(self) -> None:
        conn = self._db()
        with _transaction(conn):
            conn.execute("DELETE FROM kv_restore")


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One explicit SQLite write transaction: committed when the block ends, rolled back (and the
    exception re-raised) when it raises, the commit itself included."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_kv_app(
    data_dir: Path,
    *,
    hash_version: int = 1,
    snapshot_interval: int = 0,
    snapshots_kept: int = DEFAULT_SNAPSHOTS_KEPT,
    snapshot_chunk_bytes: int = DEFAULT_SNAPSHOT_CHUNK_BYTES,
) -> KeyValueLedger:
    """The `[app] factory` callable: the ledger in `<data_dir>/app.sqlite` (the node's default
    file), its snapshots in `<data_dir>/snapshots/`. Called with the directory alone it is the
    node's built-in ledger: hash version 1, no snapshots."""
    data_dir = Path(data_dir)
    return KeyValueLedger(
        data_dir / APP_FILE_NAME,
        hash_version=hash_version,
        snapshot_interval=snapshot_interval,
        snapshots_kept=snapshots_kept,
        snapshot_chunk_bytes=snapshot_chunk_bytes,
        snapshot_dir=data_dir / SNAPSHOT_DIR_NAME,
    )


def _create_schema(conn: sqlite3.Connection, hash_version: int) -> None:
    conn.execute(f"CREATE TABLE kv {_KV_TABLE_SQL}")
    conn.execute(
        "CREATE TABLE meta (one INTEGER PRIMARY KEY CHECK (one = 1),"
        " height INTEGER NOT NULL, app_hash BLOB NOT NULL,"
        " hash_version INTEGER NOT NULL DEFAULT 1, chain BLOB, lattice BLOB)"
    )
    conn.execute("CREATE TABLE app_hashes (height INTEGER PRIMARY KEY, app_hash BLOB NOT NULL)")
    conn.execute(f"CREATE TABLE kv_restore {_KV_TABLE_SQL}")
    v2 = hash_version >= 2
    conn.execute(
        "INSERT INTO meta VALUES (1, 0, ?, ?, ?, ?)",
        (
            GENESIS_APP_HASH,
            hash_version,
            _ZERO_CHAIN if v2 else None,
            LtHash().to_bytes() if v2 else None,
        ),
    )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _upgrade_schema_1(conn: sqlite3.Connection) -> None:
    # Schema 1 predates hash versions: its chain is hash version 1.
    conn.execute("ALTER TABLE meta ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1")
    conn.execute("ALTER TABLE meta ADD COLUMN chain BLOB")
    conn.execute("ALTER TABLE meta ADD COLUMN lattice BLOB")
    conn.execute(f"CREATE TABLE kv_restore {_KV_TABLE_SQL}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_meta(row: object, hash_version: int, source: str) -> _Meta:
    if not isinstance(row, tuple) or len(row) != 5:
        raise StateCorrupt(f"key-value ledger {source} has no valid meta row")
    height, app_hash, stored_version, chain, lattice_bytes = row
    if not isinstance(height, int) or not isinstance(app_hash, bytes):
        raise StateCorrupt(f"key-value ledger {source} has no valid meta row")
    if stored_version != hash_version:
        raise StateCorrupt(
            f"key-value ledger {source} uses hash version {stored_version}, but was opened with"
            f" hash_version={hash_version}: a ledger's hash version is fixed when it is created"
        )
    if hash_version == 1:
        return _Meta(height, app_hash, hash_version, None, None)
    if not isinstance(chain, bytes) or len(chain) != CHAIN_SIZE_BYTES:
        raise StateCorrupt(f"key-value ledger {source}: hash version 2 without a valid chain hash")
    if not isinstance(lattice_bytes, bytes) or len(lattice_bytes) != LTHASH_SIZE_BYTES:
        raise StateCorrupt(f"key-value ledger {source}: hash version 2 without a valid state lattice")
    lattice = LtHash.from_bytes(lattice_bytes)
    expected = GENESIS_APP_HASH if height == 0 else app_hash_v2(chain, lattice)
    if app_hash != expected:
        raise StateCorrupt(f"key-value ledger {source}: the app hash is not that of its chain and state")
    return _Meta(height, app_hash, hash_version, chain, lattice)


def _updated_lattice(lattice: LtHash, committed: dict[str, str], overlay: dict[str, str | None]) -> LtHash:
    """state(h) from state(h-1) `lattice` (left unchanged) and the block's final writes: for each
    key whose value changed, the old element out (if the key existed), the new one in (if it
    exists after the block)."""
    lattice = lattice.copy()
    for key, value in overlay.items():
        old = committed.get(key)
        if old == value:
            continue
        key_bytes = key.encode("utf-8")
        if old is not None:
            lattice.remove(kv_element(key_bytes, old.encode("utf-8")))
        if value is not None:
            lattice.add(kv_element(key_bytes, value.encode("utf-8")))
    return lattice


def _hash_write(write: _Write | None) -> bytes:
    if write is None:
        return _WRITE_NONE
    key, value = write
    key_bytes = key.encode("utf-8")
    if value is None:
        return _WRITE_DELETE + _u32(len(key_bytes)) + key_bytes
    value_bytes = value.encode("utf-8")
    return _WRITE_SET + _u32(len(key_bytes)) + key_bytes + _u32(len(value_bytes)) + value_bytes
