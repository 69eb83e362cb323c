"""A SQLite connection that counts its COMMITs, for tests of how many transactions (and so disk
syncs) a store's operations cost.

Owns: `CountingConnection` and `counting_db`. May not: change what the connection does.
"""

from __future__ import annotations

import sqlite3


class CountingConnection(sqlite3.Connection):
    commits = 0

    def execute(self, sql: str, parameters: object = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.commits += 1
        return super().execute(sql, parameters)  # type: ignore[arg-type]


def counting_db() -> CountingConnection:
    """An in-memory database without implicit transactions whose COMMITs are counted."""
    db = sqlite3.connect(":memory:", isolation_level=None, factory=CountingConnection)
    assert isinstance(db, CountingConnection)
    return db
