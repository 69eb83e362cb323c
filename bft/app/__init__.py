"""The application interface (ABCI-like) and the built-in key-value ledger.

Owns: `bft.app.interface` (the `Application` contract) and `bft.app.kv` (`KeyValueLedger`).
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

__all__ = [
    "GENESIS_APP_HASH",
    "AppClosed",
    "AppError",
    "AppInfo",
    "Application",
    "BlockResult",
    "KeyValueLedger",
    "OutOfOrder",
    "QueryResult",
    "StateCorrupt",
    "TxCheck",
    "TxResult",
]
