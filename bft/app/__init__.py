"""The application interface (ABCI-like) and the built-in applications.

Owns: `bft.app.interface` (the `Application` contract and its snapshot extension
`SnapshotApplication`), `bft.app.kv` (`KeyValueLedger`) with `bft.app.kv_state` (its state's
limits and commitment) and `bft.app.kv_snapshots` (its snapshot files and restore checks),
`bft.app.noop` (`NoopApplication`, for measuring consensus without an application),
`bft.app.lthash` (`LtHash`, the key-value ledger's state commitment) and `bft.app.files` (the
durable-file primitives the applications share).
May not: import anything outside the standard library.
"""

from bft.app.interface import (
    GENESIS_APP_HASH,
    AppClosed,
    AppError,
    AppInfo,
    Application,
    ApplyResult,
    BlockResult,
    OfferResult,
    OutOfOrder,
    QueryResult,
    Snapshot,
    SnapshotApplication,
    StateCorrupt,
    TxCheck,
    TxResult,
)
from bft.app.kv import KeyValueLedger, open_kv_app
from bft.app.lthash import LtHash
from bft.app.noop import NoopApplication

__all__ = [
    "GENESIS_APP_HASH",
    "AppClosed",
    "AppError",
    "AppInfo",
    "Application",
    "ApplyResult",
    "BlockResult",
    "KeyValueLedger",
    "LtHash",
    "NoopApplication",
    "OfferResult",
    "OutOfOrder",
    "QueryResult",
    "Snapshot",
    "SnapshotApplication",
    "StateCorrupt",
    "TxCheck",
    "TxResult",
    "open_kv_app",
]
