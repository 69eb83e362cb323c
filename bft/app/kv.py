"""The built-in key-value ledger: an `Application` whose state is a string-to-string map in SQLite.

Owns: `KeyValueLedger`, the transaction format and its validation (`parse_tx`), the one encoder
of transactions (`encode_tx`, with `put_tx`, `del_tx`, `cas_tx` and `canonical_tx` over it), the
result codes and size limits, and the app hash chain.
May not: import anything outside the standard library, or be called concurrently: one owner
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

Durability: `execute_block` reads the committed value of every key its block names in a few
batched queries, then executes the transactions in order against an in-memory overlay; `commit`
writes the overlay, the height and the app hash in one SQLite transaction (WAL,
`synchronous=FULL`), so a crash between the two leaves the previous block's state and replay
reproduces the same results and hash.

Schema (version 1, in `PRAGMA user_version`):

    kv(key BLOB PRIMARY KEY, value BLOB)          -- UTF-8 bytes, committed state only
    meta(one INTEGER PRIMARY KEY CHECK (one = 1), height INTEGER, app_hash BLOB)
    app_hashes(height INTEGER PRIMARY KEY, app_hash BLOB)  -- every committed height's app hash
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    QUERY_BAD_REQUEST,
    QUERY_NOT_FOUND,
    QUERY_OK,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    AppInfo,
    BlockResult,
    ClosesOnExit,
    OutOfOrder,
    QueryResult,
    StateCorrupt,
    TxCheck,
    TxResult,
)

MAX_KEY_BYTES: Final = 1024
MAX_VALUE_BYTES: Final = 64 * 1024
# Room for a maximal key and value plus JSON quoting overhead of ordinary text.
MAX_TX_BYTES: Final = 70 * 1024

CODE_MALFORMED: Final = 1
CODE_TOO_LARGE: Final = 2
CODE_CAS_MISMATCH: Final = 3

QUERY_PATH_KV: Final = "/kv"

SCHEMA_VERSION: Final = 1
_HASH_DOMAIN: Final = b"bft-kv/v1"
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


class KeyValueLedger(ClosesOnExit):
    """The key-value ledger over one SQLite file. Implements `bft.app.interface.Application`.

    Opening creates the file and schema when absent. `close()` discards any staged block.
    """

    def __init__(self, path: Path) -> None:
        # check_same_thread=False: the single owner may hand calls to a worker thread; calls are
        # never concurrent (module contract). isolation_level=None: transactions are explicit.
        conn = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False)
        self._open(conn, Path(path), on_disk=True)

    @classmethod
    def over(cls, conn: sqlite3.Connection, name: str) -> KeyValueLedger:
        """The ledger in the open database `conn`, e.g. an in-memory one that outlives this object
        (the simulator keeps it across a simulated crash, and a restart opens a new ledger over
        it, which reads the committed state as a restarted node reads its file). The same schema
        and transactions; only the WAL and `synchronous=FULL` pragmas are skipped. `close()`
        closes `conn`."""
        ledger = cls.__new__(cls)
        conn.isolation_level = None
        ledger._open(conn, Path(name), on_disk=False)
        return ledger

    def _open(self, conn: sqlite3.Connection, path: Path, *, on_disk: bool) -> None:
        self._path = path
        try:
            if on_disk:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            self._height, self._app_hash = self._open_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn
        self._staged: _Staged | None = None

    @staticmethod
    def _open_schema(conn: sqlite3.Connection) -> tuple[int, bytes]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version == 0:
                conn.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
                conn.execute(
                    "CREATE TABLE meta (one INTEGER PRIMARY KEY CHECK (one = 1),"
                    " height INTEGER NOT NULL, app_hash BLOB NOT NULL)"
                )
                conn.execute("CREATE TABLE app_hashes (height INTEGER PRIMARY KEY, app_hash BLOB NOT NULL)")
                conn.execute("INSERT INTO meta VALUES (1, 0, ?)", (GENESIS_APP_HASH,))
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StateCorrupt(f"unknown key-value ledger schema version {version}")
            row = conn.execute("SELECT height, app_hash FROM meta WHERE one = 1").fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if row is None or not isinstance(row[0], int) or not isinstance(row[1], bytes):
            raise StateCorrupt("key-value ledger has no valid meta row")
        return row[0], row[1]

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise AppClosed(f"key-value ledger {self._path} is closed")
        return self._conn

    def close(self) -> None:
        """Close the database. A staged, uncommitted block is discarded (as a crash would)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._staged = None

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

    def check_tx(self, tx: bytes) -> TxCheck:
        """Stateless validation: a `cas` whose expectation fails now may succeed in its block."""
        self._db()
        parsed = parse_tx(tx)
        if isinstance(parsed, Rejection):
            return TxCheck(ok=False, error=parsed.log)
        return TxCheck(ok=True)

    def execute_block(self, height: int, txs: Sequence[bytes]) -> BlockResult:
        self._db()
        if self._staged is not None:
            raise OutOfOrder(
                f"execute_block({height}): block {self._staged.height} is executed but not committed"
            )
        if height != self._height + 1:
            raise OutOfOrder(f"execute_block({height}): expected height {self._height + 1}")
        ops = [parse_tx(bytes(tx)) for tx in txs]
        # dict.fromkeys: distinct keys in first-touch order, so the reads are deterministic.
        committed = self._committed(dict.fromkeys(op.key for op in ops if not isinstance(op, Rejection)))
        overlay: dict[str, str | None] = {}

        def current(key: str) -> str | None:
            return overlay[key] if key in overlay else committed.get(key)

        hasher = hashlib.sha256()
        hasher.update(_HASH_DOMAIN)
        hasher.update(self._app_hash)
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
        app_hash = hasher.digest()
        self._staged = _Staged(height=height, app_hash=app_hash, overlay=overlay)
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
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM kv WHERE key = ?", deletes)
            conn.executemany(
                "INSERT INTO kv (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                upserts,
            )
            conn.execute(
                "UPDATE meta SET height = ?, app_hash = ? WHERE one = 1", (staged.height, staged.app_hash)
            )
            conn.execute("INSERT INTO app_hashes VALUES (?, ?)", (staged.height, staged.app_hash))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._height, self._app_hash = staged.height, staged.app_hash
        self._staged = None
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
        """The app hash committed at `height` (genesis at 0), or None above the committed height."""
        if height == 0:
            return GENESIS_APP_HASH
        row = self._db().execute("SELECT app_hash FROM app_hashes WHERE height = ?", (height,)).fetchone()
        return None if row is None else bytes(row[0])


def _hash_write(write: _Write | None) -> bytes:
    if write is None:
        return _WRITE_NONE
    key, value = write
    key_bytes = key.encode("utf-8")
    if value is None:
        return _WRITE_DELETE + _u32(len(key_bytes)) + key_bytes
    value_bytes = value.encode("utf-8")
    return _WRITE_SET + _u32(len(key_bytes)) + key_bytes + _u32(len(value_bytes)) + value_bytes
