"""The file primitives the built-in applications share to make their writes durable and their reads
bounded.

Owns: `write_synced` (a new file, written whole and synced), `sync_directory` (a directory's
entries made durable) and `read_bounded` (a file read only up to a size limit).
May not: import anything outside the standard library, know any application's format, or log:
a failure is the caller's to judge (the writes raise `OSError`, `read_bounded` answers None).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_synced(path: Path, data: bytes | bytearray) -> None:
    """Create `path` (it must not exist), write all of `data` and sync it before returning; its
    directory entry is durable only once the caller syncs the directory (`sync_directory`)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Sync `directory`: the entries created, renamed or removed in it survive a crash."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bounded(path: Path, limit_bytes: int) -> bytes | None:
    """The file's bytes if it exists and holds at most `limit_bytes`, else None (reading at most one
    byte over the limit, whatever the file's size)."""
    try:
        with path.open("rb") as file:
            raw = file.read(limit_bytes + 1)
    except OSError:
        return None
    return raw if len(raw) <= limit_bytes else None
