"""Durable storage of the safety state, behind an injected filesystem.

Owns: the SafetyStore protocol and DurableFileStore, the one record-writing discipline
(write a temp file, fsync it, rename over the record, fsync the directory) shared by the
real node (an OS filesystem) and the simulator (a disk that loses unsynced writes on crash).
May not: touch the OS itself; the filesystem is passed in.
"""

from __future__ import annotations

from typing import Protocol

from bft.core.messages import SafetyState
from bft.core.wire import decode_safety_state, encode_safety_state


class SafetyStore(Protocol):
    def load(self) -> SafetyState | None:
        """The last state saved durably, or None if none was ever saved."""
        ...

    def save(self, state: SafetyState) -> None:
        """Return only once `state` is durable: a crash after this returns never loses it."""
        ...


class Filesystem(Protocol):
    """The few filesystem operations DurableFileStore needs, all within one directory."""

    def read(self, name: str) -> bytes | None: ...
    def write(self, name: str, data: bytes) -> None: ...
    def fsync(self, name: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def fsync_dir(self) -> None: ...


class DurableFileStore:
    """A SafetyStore writing one record file with the temp/fsync/rename/fsync-dir discipline."""

    RECORD = "safety_state.cbor"
    TEMP = "safety_state.cbor.tmp"

    def __init__(self, fs: Filesystem) -> None:
        self._fs = fs

    def load(self) -> SafetyState | None:
        data = self._fs.read(self.RECORD)
        return None if data is None else decode_safety_state(data)

    def save(self, state: SafetyState) -> None:
        self._fs.write(self.TEMP, encode_safety_state(state))
        self._fs.fsync(self.TEMP)
        self._fs.rename(self.TEMP, self.RECORD)
        self._fs.fsync_dir()
