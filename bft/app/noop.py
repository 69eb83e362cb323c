"""The no-op application: an `Application` that accepts every transaction and executes none, so
that `bft bench --consensus-only` measures consensus, storage and the API without the ledger.

Owns: `NoopApplication`, its app hash chain, its state file, its snapshots, and `open_noop_app`,
the factory a node's `[app] factory` names (`NOOP_FACTORY`).
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
(the one not holding the committed height: slot h mod 2 when heights run up from genesis) and
syncs it: one `pwrite` and one `fdatasync` per block, no rename. The slot being written never
holds the previous height, so a crash in the middle of a write (a torn slot fails its checksum)
leaves the previous height readable, and replay re-executes the block with the same hash, as the
interface's contract requires. Opening reads the valid slot of the highest height.

Snapshots (`SnapshotApplication`): the whole state is one slot, so a snapshot is format 1, one
chunk (`encode_slot(height, app_hash)`), empty metadata. With `snapshot_interval` N > 0, `commit()`
of a height divisible by N records (height, app hash) among the newest `snapshots_kept` in
`<state file>.snapshots` (their slots, newest first; written to a temporary file, synced, renamed).
Restoring checks that the chunk is a valid slot of the offered height holding the trusted app
hash; anything else is a bad chunk (`RETRY`: no snapshot of this application can be wrong in any
other way), and the accepted slot is written like a commit, into the slot not holding the
committed height, so a crash or a refusal leaves the previous height.

State file: two slots of `SLOT_SIZE_BYTES`, each
`magic (8) || u64 height || app_hash (32) || u32 crc32 of the preceding 48 bytes`; a slot of zeros
was never written. A file of another size, or with no valid slot but not a lone torn first write,
is `StateCorrupt`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bft.app.files import sync_directory
from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    AppInfo,
    ApplyResult,
    BlockResult,
    ClosesOnExit,
    OfferResult,
    OutOfOrder,
    QueryResult,
    Snapshot,
    StateCorrupt,
    TxCheck,
    TxResult,
)

log = logging.getLogger("bft.app")

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

SNAPSHOT_FORMAT: Final = 1
SNAPSHOTS_SUFFIX: Final = ".snapshots"
_EMPTY_METADATA_HASH: Final = hashlib.sha256(b"").digest()

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
    height, app_hash, _slot = _read_slots(raw, source)
    return height, app_hash


def _read_slots(raw: bytes, source: str) -> tuple[int, bytes, int]:
    """(height, app hash, index of the slot holding them: 0 for genesis)."""
    if len(raw) != STATE_SIZE_BYTES:
        raise StateCorrupt(f"{source}: {len(raw)} bytes, a no-op application state is {STATE_SIZE_BYTES}")
    slots = [raw[i * SLOT_SIZE_BYTES : (i + 1) * SLOT_SIZE_BYTES] for i in range(SLOTS)]
    valid = [(*found, index) for index, found in enumerate(map(decode_slot, slots)) if found is not None]
    if valid:
        return max(valid)
    blank = [slot == bytes(SLOT_SIZE_BYTES) for slot in slots]
    # No valid slot: only a crash in the very first write (height 1, slot 1) leaves the other blank.
    if blank[0]:
        return 0, GENESIS_APP_HASH, 0
    raise StateCorrupt(f"{source}: no valid slot: not a no-op application state, or corrupt")


class NoopApplication(ClosesOnExit):
    """The no-op application over its state file. Implements `bft.app.interface.Application` and
    `bft.app.interface.SnapshotApplication`.

    Opening creates the file (zeros, synced with its directory) when absent. `close()` discards
    any staged block and any restore in progress. `snapshot_interval` (heights, 0 for none) and
    `snapshots_kept` (>= 1) as in the module's header; ValueError when out of range."""

    def __init__(self, path: Path, *, snapshot_interval: int = 0, snapshots_kept: int = 2) -> None:
        if snapshot_interval < 0 or snapshots_kept < 1:
            raise ValueError(
                f"snapshot_interval must be >= 0 and snapshots_kept >= 1,"
                f" not {snapshot_interval} and {snapshots_kept}"
            )
        self._snapshot_interval = snapshot_interval
        self._snapshots_kept = snapshots_kept
        self._path = Path(path)
        created = not self._path.exists()
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if created or os.fstat(fd).st_size == 0:
                # Fixed size from the start, so that each commit's fdatasync has no metadata to write.
                os.pwrite(fd, bytes(STATE_SIZE_BYTES), 0)
                os.fsync(fd)
                sync_directory(self._path.parent)
            raw = os.pread(fd, STATE_SIZE_BYTES + 1, 0)
            self._height, self._app_hash, self._slot = _read_slots(raw, str(self._path))
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._staged: tuple[int, bytes] | None = None
        # The offered (height, trusted app hash) while a restore is in progress.
        self._restore: tuple[int, bytes] | None = None
        self._snapshots_path = self._path.with_name(self._path.name + SNAPSHOTS_SUFFIX)
        self._snapshots = self._read_snapshots() if snapshot_interval > 0 else []

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
            self._restore = None

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
        self._restore = None  # executing blocks abandons a restore in progress
        app_hash = next_app_hash(self._app_hash, height, len(txs))
        self._staged = (height, app_hash)
        return BlockResult(height=height, results=(_OK,) * len(txs), app_hash=app_hash)

    def commit(self) -> bytes:
        fd = self._file()
        if self._staged is None:
            raise OutOfOrder(f"commit(): no block executed since height {self._height}")
        height, app_hash = self._staged
        self._write_slot(fd, height, app_hash)
        self._staged = None
        if self._snapshot_interval > 0 and height % self._snapshot_interval == 0:
            self._record_snapshot(height, app_hash)
        return app_hash

    def _write_slot(self, fd: int, height: int, app_hash: bytes) -> None:
        # Never the slot of the committed height: a torn write must leave that one readable.
        slot = 1 - self._slot
        os.pwrite(fd, encode_slot(height, app_hash), slot * SLOT_SIZE_BYTES)
        _sync_data(fd)
        self._height, self._app_hash, self._slot = height, app_hash, slot

    def query(self, path: str, data: bytes) -> QueryResult:
        """No path is known: there is no state to read."""
        self._file()
        return QueryResult(code=QUERY_UNKNOWN_PATH, value=None, height=self._height)

    def _read_snapshots(self) -> list[tuple[int, bytes]]:
        try:
            raw = self._snapshots_path.read_bytes()[: self._snapshots_kept * SLOT_SIZE_BYTES]
        except FileNotFoundError:
            return []
        slots = [decode_slot(raw[i : i + SLOT_SIZE_BYTES]) for i in range(0, len(raw), SLOT_SIZE_BYTES)]
        if None in slots:
            log.warning("%s: skipping the snapshot records that do not decode", self._snapshots_path)
        return [found for found in slots if found is not None]

    def _record_snapshot(self, height: int, app_hash: bytes) -> None:
        self._snapshots = [(height, app_hash), *self._snapshots][: self._snapshots_kept]
        tmp = self._snapshots_path.with_name(self._snapshots_path.name + ".tmp")
        try:
            tmp.write_bytes(b"".join(encode_slot(*found) for found in self._snapshots))
            with tmp.open("rb") as file:
                os.fsync(file.fileno())
            tmp.replace(self._snapshots_path)
            sync_directory(self._path.parent)
        except OSError:
            # The block is committed already; a lost snapshot record only means one fewer to serve.
            log.exception("could not record the snapshot at height %d in %s", height, self._snapshots_path)

    def list_snapshots(self) -> tuple[Snapshot, ...]:
        """The recorded snapshots, newest first (none when snapshots are off)."""
        self._file()
        return tuple(
            Snapshot(height=height, format=SNAPSHOT_FORMAT, chunks=1, hash=_EMPTY_METADATA_HASH, metadata=b"")
            for height, _app_hash in self._snapshots
        )

    def load_snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        """The one chunk of a recorded snapshot: its slot."""
        self._file()
        if format != SNAPSHOT_FORMAT or index != 0:
            return None
        for found in self._snapshots:
            if found[0] == height:
                return encode_slot(*found)
        return None

    def offer_snapshot(self, snapshot: Snapshot, app_hash: bytes) -> OfferResult:
        """Start restoring `snapshot`; a restore in progress is abandoned. Raises `OutOfOrder`
        while a block is staged."""
        self._file()
        if self._staged is not None:
            raise OutOfOrder(f"offer_snapshot: block {self._staged[0]} is executed but not committed")
        self._restore = None
        if snapshot.format != SNAPSHOT_FORMAT:
            log.warning("refusing a snapshot: unknown format %r", snapshot.format)
            return OfferResult.REJECT_FORMAT
        height = snapshot.height
        refusal = None
        if not isinstance(height, int) or isinstance(height, bool) or height < 1:
            refusal = "its height is not a positive integer"
        elif height <= self._height:
            refusal = f"it is not above the committed height {self._height}"
        elif snapshot.chunks != 1 or snapshot.metadata != b"" or snapshot.hash != _EMPTY_METADATA_HASH:
            refusal = "it is not one chunk with empty metadata"
        elif not isinstance(app_hash, bytes) or len(app_hash) != len(GENESIS_APP_HASH):
            refusal = "the trusted app hash is not 32 bytes"
        if refusal is not None:
            log.warning("refusing the snapshot at height %r: %s", height, refusal)
            return OfferResult.REJECT
        self._restore = (height, app_hash)
        return OfferResult.ACCEPT

    def apply_snapshot_chunk(self, index: int, chunk: bytes) -> ApplyResult:
        """Apply the one chunk. Raises `OutOfOrder` with no restore in progress or for an index
        other than 0."""
        fd = self._file()
        if self._restore is None or index != 0:
            raise OutOfOrder(f"apply_snapshot_chunk({index}): no restore in progress, or not chunk 0")
        found = decode_slot(bytes(chunk)) if isinstance(chunk, bytes | bytearray) else None
        if found != self._restore:
            log.warning(
                "snapshot %d, chunk 0: not a slot holding that height and the trusted app hash;"
                " fetch it again",
                self._restore[0],
            )
            return ApplyResult.RETRY
        height, app_hash = self._restore
        self._restore = None
        self._write_slot(fd, height, app_hash)
        log.info("restored the snapshot at height %d", height)
        return ApplyResult.ACCEPT


def open_noop_app(data_dir: Path, *, snapshot_interval: int = 0, snapshots_kept: int = 2) -> NoopApplication:
    """The `[app] factory` callable: the no-op application in `<data_dir>/noop-app.state`."""
    return NoopApplication(
        Path(data_dir) / STATE_FILE_NAME, snapshot_interval=snapshot_interval, snapshots_kept=snapshots_kept
    )


def _sync_data(fd: int) -> None:
    # fdatasync where there is one (Linux): the file's size never changes, so its data is enough.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
