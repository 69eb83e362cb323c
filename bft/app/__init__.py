"""The application interface (ABCI-like) and the built-in applications.

Owns: `bft.app.interface` (the `Application` contract), `bft.app.kv` (`KeyValueLedger`) and
`bft.app.noop` (`NoopApplication`, for measuring consensus without an application).
May not: import anything outside the standard library.
"""

from bft.app.interface import (
    GENESIS_APP_HASH,
    AppClosed,
    AppError,
    AppInfo,
    Application,
    BlockResult,
    OutOfOrder,
    QueryResult,
    StateCorrupt,
    TxCheck,
    TxResult,
)
from bft.app.kv import KeyValueLedger
from bft.app.noop import NoopApplication

__all__ = [
    "GENESIS_APP_HASH",
    "AppClosed",
    "AppError",
    "AppInfo",
    "Application",
    "BlockResult",
    "KeyValueLedger",
    "NoopApplication",
    "OutOfOrder",
    "QueryResult",
    "StateCorrupt",
    "TxCheck",
    "TxResult",
]
