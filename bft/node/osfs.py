"""The real filesystem behind `bft.core.safety_store.DurableFileStore`.

Owns: `OsFilesystem`, the `Filesystem` protocol implemented with plain os calls inside one
existing directory.
May not: decide the write discipline (temp file, fsync, rename, fsync directory is the store's),
or reach outside its directory: names are bare file names, never paths.

OS failures propagate as `OSError`: a node that cannot make its safety state durable must stop,
not carry on voting.
"""

from __future__ import annotations

import os
from pathlib import Path

from bft.node.errors import StorageError

# Readers only ever need the owner; the record says how this node voted.
_FILE_MODE = 0o600


class OsFilesystem:
    """Files named by bare names inside `directory`, which must already exist."""

    __slots__ = ("_directory",)

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise StorageError(f"{directory}: not a directory")
        self._directory = directory

    @property
    def directory(self) -> Path:
        return self._directory

    def _path(self, name: str) -> str:
        # A bad name is a bug in the caller, never input from outside: raise, do not refuse.
        if (
            not name
            or name in (".", "..")
            or "/" in name
            or "\0" in name
            or (os.altsep is not None and os.altsep in name)
            or os.sep in name
        ):
            raise ValueError(f"not a plain file name: {name!r}")
        return os.path.join(self._directory, name)

    def read(self, name: str) -> bytes | None:
        """The whole file, or None if it does not exist."""
        try:
            with open(self._path(name), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        """Create or truncate `name` with mode 0600 and write all of `data` (not yet durable)."""
        fd = os.open(self._path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            # O_CREAT's mode does not apply to a file that already existed; make it 0600 anyway.
            os.fchmod(fd, _FILE_MODE)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)

    def fsync(self, name: str) -> None:
        """Make the contents of `name` durable."""
        fd = os.open(self._path(name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        """Atomically replace `dst` with `src` (durable only after `fsync_dir`)."""
        os.replace(self._path(src), self._path(dst))

    def fsync_dir(self) -> None:
        """Make the directory's entries (creations, renames) durable."""
        fd = os.open(self._directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
