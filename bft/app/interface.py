"""The application interface (ABCI-like): what the node asks of the replicated application.

Owns: the `Application` protocol, the value types it exchanges (`AppInfo`, `TxCheck`,
`TxResult`, `BlockResult`, `QueryResult`), the shared result and query codes, and the error
hierarchy (`AppError`).
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

Calling these out of order (wrong height, executing twice without a commit, committing nothing)
is a bug in the caller and raises `OutOfOrder`; an application never guesses what was meant.
"""

from __future__ import annotations

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
