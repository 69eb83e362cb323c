"""How the node's SQLite stores open their file: the one place the durability pragmas and the
schema-version rule are written.

Owns: `create_schema`: refuse a file of another schema version untouched (except the older
versions a store says its schema upgrades in place: tables added, none changed), WAL mode and
`synchronous=FULL` on disk (a COMMIT that returned survives power loss: the node tells clients
and peers about what it wrote), then the schema and its version in one transaction.
May not: know any store's tables (callers pass their schema) or read rows.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bft.node.errors import StorageError


def create_schema(
    db: sqlite3.Connection,
    path: Path,
    *,
    kind: str,
    schema: str,
    version: int,
    on_disk: bool,
    other_version_hint: str,
    foreign_keys: bool = False,
    upgrades_from: tuple[int, ...] = (),
) -> int:
    """Set up `db` (autocommit mode) as the `kind` store at `path` with `schema` (statements
    separated by ';') at `version`. A file at a version in `upgrades_from` is brought to `version`
    by the same transaction (its `CREATE TABLE IF NOT EXISTS` statements add what it lacks).
    Returns the version found (0 for a new file). StorageError, the file left as it was, if it
    holds another version (`other_version_hint` says what to do) or is not a database."""
    try:
        # The version first: a store this node refuses is left exactly as it was.
        found = db.execute("PRAGMA user_version").fetchone()[0]
        if found not in (0, version, *upgrades_from):
            raise StorageError(
                f"{path}: {kind} schema version {found}, this node reads {version}: {other_version_hint}"
            )
        if on_disk:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{path}: cannot use WAL mode (got {mode!r})")
            # FULL, not WAL's usual NORMAL: a commit must survive power loss, not only a crash.
            db.execute("PRAGMA synchronous=FULL")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in schema.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: not a usable {kind}: {exc}") from exc
    return int(found)
