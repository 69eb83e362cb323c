"""The no-op application: an `Application` that accepts every transaction and executes none, so
that `bft bench --consensus-only` measures consensus, storage and the API without the ledger.

Owns: `NoopApplication`, its app hash chain, its state file, and `open_noop_app`, the factory a
node's `[app] factory` names (`NOOP_FACTORY`).
May not: import anything outside the standard library, look inside a transaction, or be called
concurrently: one owner calls it synchronously.

Semantics: `check_tx` admits any bytes; every transaction of a block gets `CODE_OK` with an empty
log and no data. `query` knows no path (`QUERY_UNKNOWN_PATH`, at the committed height).

App hash (a hash chain over the heights; deterministic and identical on every node, so the
app-hash claims of blocks still check that every node executed the same heights in order; the
transactions themselves are committed to by the block, not by this hash):

    app_hash(0) = GENESIS_APP_HASH
    app_hash(h) = sha256("bft-noop/v1" || app_hash(h-1) || u64(h) || u32(len(txs)))

Durability: `commit` writes (height, app hash) into one of two fixed slots of `noop-app.state`
(slot h mod 2) and syncs it: one `pwrite` and one `fdatasync` per block, no rename. The slot being
written never holds the previous height, so a crash in the middle of a write (a torn slot fails its
checksum) leaves the previous height readable, and replay re-executes the block with the same
hash, as the interface's contract requires. Opening reads the valid slot of the highest height.

State file: two slots of `SLOT_SIZE_BYTES`, each
`magic (8) || u64 height || app_hash (32) || u32 crc32 of the preceding 48 bytes`; a slot of zeros
was never written. A file of another size, or with no valid slot but not a lone torn first write,
is `StateCorrupt`.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    AppInfo,
    BlockResult,
    ClosesOnExit,
    OutOfOrder,
    QueryResult,
    StateCorrupt,
    TxCheck,
    TxResult,
)

# What `[app] factory` says to run this application (`bft bench --consensus-only` writes it).
NOOP_FACTORY: Final = "bft.app.noop:open_noop_app"
STATE_FILE_NAME: Final = "noop-app.state"

_HASH_DOMAIN: Final = b"bft-noop/v1"
_MAGIC: Final = b"bftnoop1"
_SLOT: Final = struct.Struct(">8sQ32s")
_CRC: Final = struct.Struct(">I")
SLOT_SIZE_BYTES: Final = _SLOT.size + _CRC.size
SLOTS: Final = 2
STATE_SIZE_BYTES: Final = SLOTS * SLOT_SIZE_BYTES

# One shared verdict and result: nothing about a transaction makes them differ.
_ADMITTED: Final = TxCheck(ok=True)
_OK: Final = TxResult(code=CODE_OK, log="")


def next_app_hash(previous: bytes, height: int, tx_count: int) -> bytes:
    """`app_hash(height)` from `app_hash(height - 1)` (see the module's header)."""
    return hashlib.sha256(_HASH_DOMAIN + previous + struct.pack(">QI", height, tx_count)).digest()


def encode_slot(height: int, app_hash: bytes) -> bytes:
    """The bytes of one slot holding `height` and `app_hash`."""
    body = _SLOT.pack(_MAGIC, height, app_hash)
    return body + _CRC.pack(zlib.crc32(body))


def decode_slot(raw: bytes) -> tuple[int, bytes] | None:
    """(height, app hash) of a valid slot; None for a slot that is torn, foreign or never written."""
    if len(raw) != SLOT_SIZE_BYTES:
        return None
    body, (crc,) = raw[: _SLOT.size], _CRC.unpack(raw[_SLOT.size :])
    if zlib.crc32(body) != crc:
        return None
    magic, height, app_hash = _SLOT.unpack(body)
    return (height, app_hash) if magic == _MAGIC and height > 0 else None


def read_state(raw: bytes, source: str) -> tuple[int, bytes]:
    """The committed (height, app hash) in the contents of a state file; StateCorrupt if they are
    not what `NoopApplication` writes."""
    if len(raw) != STATE_SIZE_BYTES:
        raise StateCorrupt(f"{source}: {len(raw)} bytes, a no-op application state is {STATE_SIZE_BYTES}")
    slots = [raw[i * SLOT_SIZE_BYTES : (i + 1) * SLOT_SIZE_BYTES] for i in range(SLOTS)]
    valid = [found for found in map(decode_slot, slots) if found is not None]
    if valid:
        return max(valid)
    blank = [slot == bytes(SLOT_SIZE_BYTES) for slot in slots]
    # No valid slot: only a crash in the very first write (height 1, slot 1) leaves the other blank.
    if blank[0]:
        return 0, GENESIS_APP_HASH
    raise StateCorrupt(f"{source}: no valid slot: not a no-op application state, or corrupt")


class NoopApplication(ClosesOnExit):
    """The no-op application over its state file. Implements `bft.app.interface.Application`.

    Opening creates the file (zeros, synced with its directory) when absent. `close()` discards
    any staged block."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        created = not self._path.exists()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if created or os.fstat(fd).st_size == 0:
                # Fixed size from the start, so that each commit's fdatasync has no metadata to write.
                os.pwrite(fd, bytes(STATE_SIZE_BYTES), 0)
                os.fsync(fd)
                _sync_directory(self._path.parent)
            self._height, self._app_hash = read_state(os.pread(fd, STATE_SIZE_BYTES + 1, 0), str(self._path))
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._staged: tuple[int, bytes] | None = None

    def _file(self) -> int:
        if self._fd is None:
            raise AppClosed(f"no-op application {self._path} is closed")
        return self._fd

    def close(self) -> None:
        """Close the state file. A staged, uncommitted block is discarded (as a crash would)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._staged = None

    def info(self) -> AppInfo:
        self._file()
        return AppInfo(last_height=self._height, app_hash=self._app_hash)

    def check_tx(self, tx: bytes) -> TxCheck:
        """Every transaction is admitted."""
        self._file()
        return _ADMITTED

    def execute_block(self, height: int, txs: Sequence[bytes]) -> BlockResult:
        self._file()
        if self._staged is not None:
            raise OutOfOrder(
                f"execute_block({height}): block {self._staged[0]} is executed but not committed"
            )
        if height != self._height + 1:
            raise OutOfOrder(f"execute_block({height}): expected height {self._height + 1}")
        app_hash = next_app_hash(self._app_hash, height, len(txs))
        self._staged = (height, app_hash)
        return BlockResult(height=height, results=(_OK,) * len(txs), app_hash=app_hash)

    def commit(self) -> bytes:
        fd = self._file()
        if self._staged is None:
            raise OutOfOrder(f"commit(): no block executed since height {self._height}")
        height, app_hash = self._staged
        os.pwrite(fd, encode_slot(height, app_hash), (height % SLOTS) * SLOT_SIZE_BYTES)
        _sync_data(fd)
        self._height, self._app_hash = height, app_hash
        self._staged = None
        return app_hash

    def query(self, path: str, data: bytes) -> QueryResult:
        """No path is known: there is no state to read."""
        self._file()
        return QueryResult(code=QUERY_UNKNOWN_PATH, value=None, height=self._height)


def open_noop_app(data_dir: Path) -> NoopApplication:
    """The `[app] factory` callable: the no-op application in `<data_dir>/noop-app.state`."""
    return NoopApplication(Path(data_dir) / STATE_FILE_NAME)


def _sync_data(fd: int) -> None:
    # fdatasync where there is one (Linux): the file's size never changes, so its data is enough.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)


def _sync_directory(directory: Path) -> None:
    # The new file's directory entry must be durable too, or a crash could lose the file.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
