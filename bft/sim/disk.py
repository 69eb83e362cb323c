"""A simulated disk for one node that loses what was not synced when the node crashes.

Owns: `SimDisk` (a `bft.core.safety_store.Filesystem`) and `SimCrash`.

Model (strict, in the spirit of ALICE/CrashMonkey): files are inodes named by directory entries.
`write` replaces a file's content (creating the inode and an entry if the name is new); content
becomes durable only by `fsync(name)`; directory changes (creations and renames) become durable
only by `fsync_dir()`. `crash()` reverts the directory to its last durable entries and every
file to its last durable content (an entry whose inode was never fsynced reads as empty).

Crash points: `crash_at_next(prefix)` makes the next operation so described raise SimCrash, and
`crash_after_ops(k)` makes the k-th following operation (reads included, and the
commits of the node's SQLite stores, `commit_point`) raise
`SimCrash` before it takes effect; every later operation raises too until `crash()` is called,
as a dead process does nothing more.
May not: touch the real filesystem.
"""

from __future__ import annotations


class SimCrash(BaseException):
    """The simulated process died at an injected crash point.

    A BaseException so that a program's `except Exception` cannot swallow its own death.
    Only the simulator's harness catches it.
    """


class SimDisk:
    """One node's directory. Implements the `Filesystem` protocol of `bft.core.safety_store`."""

    __slots__ = (
        "_countdown",
        "_crash_on",
        "_data",
        "_dead",
        "_dir",
        "_durable_data",
        "_durable_dir",
        "_next_inode",
        "ops",
    )

    def __init__(self) -> None:
        self._next_inode = 0
        self._dir: dict[str, int] = {}
        self._durable_dir: dict[str, int] = {}
        self._data: dict[int, bytes] = {}
        self._durable_data: dict[int, bytes] = {}
        self._countdown: int | None = None
        self._crash_on: str | None = None
        self._dead = False
        self.ops = 0

    # -- crash control -----------------------------------------------------------------------

    def crash_after_ops(self, k: int) -> None:
        """Make the k-th following operation (k >= 1) raise SimCrash instead of taking effect."""
        if k < 1:
            raise ValueError("k must be at least 1")
        self._countdown = k

    def crash_at_next(self, prefix: str) -> None:
        """Make the next operation whose description starts with `prefix` raise SimCrash instead
        of taking effect (e.g. the application's next commit, `bft.sim.storage.APP_COMMIT`)."""
        self._crash_on = prefix

    def cancel_crash(self) -> None:
        """Disarm a pending `crash_after_ops` or `crash_at_next`."""
        self._countdown = None
        self._crash_on = None

    @property
    def crash_armed(self) -> bool:
        return self._countdown is not None or self._crash_on is not None

    def crash(self) -> None:
        """Lose everything not durable: the process died and the machine lost power."""
        self._dir = dict(self._durable_dir)
        live = set(self._dir.values())
        self._data = {ino: self._durable_data.get(ino, b"") for ino in live}
        self._durable_data = {ino: d for ino, d in self._durable_data.items() if ino in live}
        self._countdown = None
        self._crash_on = None
        self._dead = False

    def commit_point(self, what: str) -> None:
        """Another durable store on this machine is about to commit a transaction (`what`): one
        operation, and so a crash point like any other (`bft.sim.storage`)."""
        self._op(what)

    def durable_read(self, name: str) -> bytes | None:
        """What `read(name)` would return after a crash now; not an operation (no crash point)."""
        ino = self._durable_dir.get(name)
        if ino is None:
            return None
        return self._durable_data.get(ino, b"")

    # -- Filesystem --------------------------------------------------------------------------

    def _op(self, what: str) -> None:
        self.ops += 1
        if self._dead:
            raise SimCrash(f"disk used after an injected crash ({what})")
        if self._crash_on is not None and what.startswith(self._crash_on):
            self._crash_on = None
            self._dead = True
            raise SimCrash(f"injected crash at {what}")
        if self._countdown is not None:
            self._countdown -= 1
            if self._countdown == 0:
                self._countdown = None
                self._dead = True
                raise SimCrash(f"injected crash at {what}")

    def read(self, name: str) -> bytes | None:
        self._op(f"read {name}")
        ino = self._dir.get(name)
        return None if ino is None else self._data[ino]

    def write(self, name: str, data: bytes) -> None:
        self._op(f"write {name}")
        ino = self._dir.get(name)
        if ino is None:
            ino = self._next_inode
            self._next_inode += 1
            self._dir[name] = ino
        self._data[ino] = bytes(data)

    def fsync(self, name: str) -> None:
        self._op(f"fsync {name}")
        ino = self._dir.get(name)
        if ino is None:
            raise FileNotFoundError(name)
        self._durable_data[ino] = self._data[ino]

    def rename(self, src: str, dst: str) -> None:
        self._op(f"rename {src} -> {dst}")
        ino = self._dir.pop(src, None)
        if ino is None:
            raise FileNotFoundError(src)
        self._dir[dst] = ino

    def fsync_dir(self) -> None:
        self._op("fsync_dir")
        self._durable_dir = dict(self._dir)
