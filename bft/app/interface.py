"""The application interface (ABCI-like): what the node asks of the replicated application.

Owns: the `Application` protocol and its snapshot extension `SnapshotApplication`, the value
types they exchange (`AppInfo`, `TxCheck`, `TxResult`, `BlockResult`, `QueryResult`, `Snapshot`,
`OfferResult`, `ApplyResult`), the shared result and query codes, the snapshot size limits, and
the error hierarchy (`AppError`).
May not: import anything outside the standard library, or know about consensus, the network or
the node's own storage. An application sees only ordered, committed blocks of opaque bytes.

The contract, in the order the node uses it:

1. On start the node calls `info()`. The application answers with the last height it made
   durable (0 and `GENESIS_APP_HASH` when new). The node then replays every committed block above
   that height, in order, through `execute_block` + `commit`: so each block is applied exactly
   once, even after a crash between the node committing a block and the application applying it.
2. `check_tx(tx)` admits transactions to the mempool. It is cheap and never mutates state; it may
   read committed state, but a transaction it admits can still fail at execution (e.g. a
   compare-and-set whose expectation a preceding transaction invalidated).
3. `execute_block(height, txs)` runs a committed block, with `height == info().last_height + 1`
   and no other block staged. It is deterministic: from the same previous state, height and
   transactions, every honest node gets the same results and app hash. A bad transaction gets a
   non-zero result code; it never stops the block. Effects are staged, not durable.
4. `commit()` makes the staged block durable, atomically with its height and app hash, and
   returns that app hash. This is the durable point: a crash before it leaves the previous block's
   state, and replay re-executes the block with the same outcome.
5. `query(path, data)` reads committed state (never staged state) and says at which height.

State sync (ABCI's snapshot calls), for applications that are also a `SnapshotApplication`:

6. `list_snapshots()` names the snapshots the application holds, newest first, at most as many as
   it keeps; `load_snapshot_chunk(height, format, index)` returns one chunk's bytes (at most
   `MAX_SNAPSHOT_CHUNK_BYTES`), or None when it does not hold it. A serving node passes these to
   peers; it never interprets them.
7. A restoring node, before it executes any block, calls `offer_snapshot(snapshot, app_hash)`
   with a snapshot a peer described and `app_hash`, the app hash at `snapshot.height` that a
   committed block certifies (the trusted value). `ACCEPT` starts a restore; `REJECT` says this
   snapshot is unusable (bad metadata, height 0 or not above the committed height, too many
   chunks, hash not that of the metadata) and `REJECT_FORMAT` that its format is unknown: offer
   another. A new offer abandons a restore in progress.
8. After `ACCEPT` the node calls `apply_snapshot_chunk(index, chunk)` for indices
   `0..snapshot.chunks-1`, in that order. Another index than the next expected one, or a call
   with no restore in progress, is a bug in the caller and raises `OutOfOrder`. `RETRY` means
   this chunk is bad (e.g. its hash is not the metadata's): nothing of it was kept, fetch the same
   index again, preferably from another peer. `REJECT_SNAPSHOT` means the snapshot cannot reach
   the trusted state: the restore is over, drop the snapshot (and distrust whoever sent it); state
   is unchanged. `ACCEPT` of the last chunk means the restore is done: the application's whole
   state was replaced, atomically and durably, by the snapshot's state at `snapshot.height` with
   the trusted app hash; `info()` now returns them (and an application that records app hashes
   per height holds that height's), and the node continues with block `snapshot.height + 1`.
   Until then the previous state stays in force: `REJECT_SNAPSHOT`, an abandoned restore (a new
   offer, or simply `execute_block`), a crash or `close()` in the middle of a restore leave it
   intact. `ABORT` (of either call) asks the node to give up state sync altogether; the built-in
   applications never answer it.

Bytes from a peer (a snapshot's metadata, its chunks) may be hostile: an application never raises
on them; it answers `REJECT`, `RETRY` or `REJECT_SNAPSHOT` and logs why (on the "bft.app"
logger), and it holds at most one chunk in memory while restoring.

Calling these out of order (wrong height, executing twice without a commit, committing nothing)
is a bug in the caller and raises `OutOfOrder`; an application never guesses what was meant.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Protocol, Self, runtime_checkable

APP_HASH_SIZE_BYTES: Final = 32
# The app hash at height 0, before any block, for applications that have no better one: a fixed
# value every node agrees on without configuration.
GENESIS_APP_HASH: Final = bytes(APP_HASH_SIZE_BYTES)

# Transaction result codes. 0 is success (as in ABCI); applications may define more non-zero codes.
CODE_OK: Final = 0
# Set by the node, never by an application (whose codes stay below it): the transaction's bytes
# committed earlier, so this occurrence was not executed (`bft.node.executor`).
CODE_REPEATED: Final = 1_000_000

# Snapshot limits. A chunk travels in one network message (4 MiB frames), with room to spare.
MAX_SNAPSHOT_CHUNK_BYTES: Final = 1024 * 1024
MAX_SNAPSHOT_METADATA_BYTES: Final = 256 * 1024
MAX_SNAPSHOT_CHUNKS: Final = 8192

# Query result codes.
QUERY_OK: Final = 0
QUERY_NOT_FOUND: Final = 1
QUERY_UNKNOWN_PATH: Final = 2
QUERY_BAD_REQUEST: Final = 3


class AppError(Exception):
    """Base of the application package's exceptions. Refused transactions are result values."""


class OutOfOrder(AppError):
    """The caller broke the call sequence (wrong height, double execute, commit without execute):
    a bug in the caller, never a peer's or client's fault."""


class StateCorrupt(AppError):
    """The application's durable state is not what this code wrote (unknown schema, bad hash)."""


class AppClosed(AppError):
    """The application was used after `close()`."""


@dataclass(frozen=True, slots=True)
class AppInfo:
    """What the application has durably applied: heights `1..last_height` and their app hash."""

    last_height: int
    app_hash: bytes


@dataclass(frozen=True, slots=True)
class TxCheck:
    """Admission verdict of `check_tx`: `error` says why when `ok` is false, else it is None."""

    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class TxResult:
    """Outcome of one transaction in a block. `code` 0 is success; `log` is for humans;
    `data` is application-defined bytes (e.g. the previous value)."""

    code: int
    log: str
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == CODE_OK


@dataclass(frozen=True, slots=True)
class BlockResult:
    """Outcome of `execute_block`: one result per transaction, in order, and the app hash that
    `commit` will make durable for this height."""

    height: int
    results: tuple[TxResult, ...]
    app_hash: bytes


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Answer of `query`: `value` is None unless `code` is `QUERY_OK`; `height` is the committed
    height the answer was read at."""

    code: int
    value: bytes | None
    height: int


class ClosesOnExit:
    """`with app:` closes the application on the way out (its `close` discards any staged
    block, as a crash would): the context-manager half the built-in applications share, and the
    node's stores (`with store:` closes its connection)."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@runtime_checkable
class Application(Protocol):
    """A deterministic replicated application. One owner calls it, never concurrently."""

    def info(self) -> AppInfo:
        """The last durably applied height and its app hash (0 and a fixed hash when new)."""
        ...

    def check_tx(self, tx: bytes) -> TxCheck:
        """Cheap admission check for the mempool; never mutates state."""
        ...

    def execute_block(self, height: int, txs: Sequence[bytes]) -> BlockResult:
        """Run a committed block deterministically and stage its effects. Raises `OutOfOrder`
        unless `height == info().last_height + 1` and no block is staged."""
        ...

    def commit(self) -> bytes:
        """Make the staged block durable with its height and app hash; return that app hash.
        Raises `OutOfOrder` when no block is staged."""
        ...

    def query(self, path: str, data: bytes) -> QueryResult:
        """Read committed state."""
        ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A snapshot of the application's state at a committed height, as a peer describes it.

    `hash` is the SHA-256 of `metadata` and identifies the snapshot; `metadata` is
    application-defined (e.g. each chunk's hash), at most `MAX_SNAPSHOT_METADATA_BYTES`;
    `chunks` is the number of chunks, at least 1 and at most `MAX_SNAPSHOT_CHUNKS`."""

    height: int
    format: int
    chunks: int
    hash: bytes
    metadata: bytes


class OfferResult(enum.Enum):
    """Answer of `offer_snapshot` (see the module's contract, step 7)."""

    ACCEPT = "accept"
    REJECT = "reject"
    REJECT_FORMAT = "reject_format"
    ABORT = "abort"


class ApplyResult(enum.Enum):
    """Answer of `apply_snapshot_chunk` (see the module's contract, step 8)."""

    ACCEPT = "accept"
    RETRY = "retry"
    REJECT_SNAPSHOT = "reject_snapshot"
    ABORT = "abort"


@runtime_checkable
class SnapshotApplication(Application, Protocol):
    """An application that serves and restores state snapshots (state sync)."""

    def list_snapshots(self) -> tuple[Snapshot, ...]:
        """The snapshots held, newest first, at most the number kept."""
        ...

    def load_snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        """Chunk `index` of the snapshot at `height` in `format`, or None when not held."""
        ...

    def offer_snapshot(self, snapshot: Snapshot, app_hash: bytes) -> OfferResult:
        """Start restoring `snapshot`, whose state must have `app_hash` (trusted) at its height."""
        ...

    def apply_snapshot_chunk(self, index: int, chunk: bytes) -> ApplyResult:
        """Apply the next chunk of the offered snapshot. Raises `OutOfOrder` for another index
        than the next expected one, or with no restore in progress."""
        ...
