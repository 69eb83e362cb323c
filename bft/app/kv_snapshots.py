"""The key-value ledger's snapshot files and the checks of a snapshot being restored.

Owns: snapshot format 1 (its chunk and metadata encodings, their parsing and validation), the
snapshot directory (writing a snapshot atomically, listing and reading snapshots, pruning old
ones, removing leftovers), and `Restore`, a restore's progress and the checks of its offer and of
each chunk; the format's constants (`SNAPSHOT_FORMAT`, `DEFAULT_SNAPSHOTS_KEPT`,
`DEFAULT_SNAPSHOT_CHUNK_BYTES`, `MAX_ENTRY_BYTES`, `MAX_KV_SNAPSHOT_CHUNKS`), which `bft.app.kv`
re-exports.
May not: import anything outside the standard library, touch SQLite (the ledger, `bft.app.kv`,
reads its state for a snapshot and stages and installs a restore's rows in its own transactions),
raise `OSError` out of writing a snapshot (the commit it follows is durable already), or be called
concurrently (the ledger's single owner calls it).

Format 1: the entries `element(k, v)` (`bft.app.kv_state.kv_element`) of the state at height h
in ascending byte order of k, packed into chunks of at most `snapshot_chunk_bytes` (an entry
never splits; at least one chunk, empty when the state is), and

    metadata = chain(h) || u32(chunk count) || sha256(chunk 0) || sha256(chunk 1) || ...

(u32 big-endian), so that restoring recomputes state(h) from the entries and checks
sha256("bft-kv/v2" || chain(h) || state(h).digest()) against the trusted app hash of h. A state
needing more chunks than the metadata limit allows (`MAX_KV_SNAPSHOT_CHUNKS`) gets no snapshot,
and says so in the log.

Files: `<snapshot dir>/<height>/` holds `metadata` and `chunk-00000`, `chunk-00001`, .... Each
file is written and synced inside `<height>.tmp/`, which is then renamed (and its parent synced):
a crash leaves a `.tmp` directory, removed when the ledger opens (`remove_partial_snapshots`).
After each write only the newest `snapshots_kept` directories stay. A failure to write a snapshot
is logged and never raised. Reading checks what it serves: a listed snapshot's metadata parses
and its chunk files exist; a served chunk matches its hash in the metadata.

Restoring (`start_restore`, then `Restore.check_chunk` per chunk): an offer is refused unless it
is format 1, above the committed height, with a 32-byte trusted app hash, a chunk count between 1
and `MAX_KV_SNAPSHOT_CHUNKS`, metadata whose SHA-256 is the snapshot's hash and that names that
many chunks. A chunk that is not bytes, is over the interface's size limit or does not match its
hash in the metadata is to be fetched again (`RETRY`); one that matches but does not parse (a
truncated entry, a key or value outside the ledger's limits or not UTF-8, keys not strictly
ascending across the whole snapshot) condemns the snapshot (`REJECT_SNAPSHOT`). After the last
chunk, the state(h) of all the entries must give the trusted app hash (`Restore.verified_app_hash`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bft.app.files import read_bounded, sync_directory, write_synced
from bft.app.interface import (
    GENESIS_APP_HASH,
    MAX_SNAPSHOT_CHUNK_BYTES,
    MAX_SNAPSHOT_CHUNKS,
    MAX_SNAPSHOT_METADATA_BYTES,
    ApplyResult,
    OfferResult,
    Snapshot,
)
from bft.app.kv_state import CHAIN_SIZE_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, app_hash_v2, kv_element
from bft.app.lthash import LtHash

log = logging.getLogger("bft.app")

SNAPSHOT_FORMAT: Final = 1
DEFAULT_SNAPSHOTS_KEPT: Final = 2
DEFAULT_SNAPSHOT_CHUNK_BYTES: Final = 512 * 1024
# The largest snapshot entry: a chunk must hold at least one, since an entry never splits.
MAX_ENTRY_BYTES: Final = 4 + MAX_KEY_BYTES + 4 + MAX_VALUE_BYTES
_HASH_BYTES: Final = 32
_METADATA_HEADER_BYTES: Final = CHAIN_SIZE_BYTES + 4
# What fits the interface's metadata limit (chain, count, a 32-byte hash per chunk): 8190.
MAX_KV_SNAPSHOT_CHUNKS: Final = min(
    MAX_SNAPSHOT_CHUNKS, (MAX_SNAPSHOT_METADATA_BYTES - _METADATA_HEADER_BYTES) // _HASH_BYTES
)
_METADATA_FILE: Final = "metadata"
_TMP_SUFFIX: Final = ".tmp"
_U32: Final = struct.Struct(">I")

# A chunk's (key, value) rows, UTF-8 bytes, in ascending key order.
Rows = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class _Metadata:
    """Parsed format-1 metadata."""

    chain: bytes
    # The chunk hashes, 32 bytes each: chunk i's at [32 * i, 32 * i + 32).
    hashes: bytes

    @property
    def chunks(self) -> int:
        return len(self.hashes) // _HASH_BYTES

    def chunk_hash(self, index: int) -> bytes:
        return self.hashes[_HASH_BYTES * index : _HASH_BYTES * (index + 1)]


def _encode_metadata(chain: bytes, hashes: Sequence[bytes]) -> bytes:
    return chain + _U32.pack(len(hashes)) + b"".join(hashes)


def _parse_metadata(metadata: bytes) -> str | _Metadata:
    """Format-1 metadata, parsed, or why it does not parse."""
    if len(metadata) < _METADATA_HEADER_BYTES:
        return f"its metadata is {len(metadata)} bytes, shorter than its header"
    (count,) = _U32.unpack_from(metadata, CHAIN_SIZE_BYTES)
    if not 1 <= count <= MAX_KV_SNAPSHOT_CHUNKS:
        return f"its metadata names {count} chunks, not between 1 and {MAX_KV_SNAPSHOT_CHUNKS}"
    expected = _METADATA_HEADER_BYTES + _HASH_BYTES * count
    if len(metadata) != expected:
        return f"its metadata is {len(metadata)} bytes, not {expected} for {count} chunks"
    return _Metadata(metadata[:CHAIN_SIZE_BYTES], metadata[_METADATA_HEADER_BYTES:])


def _parse_chunk(chunk: bytes, last_key: bytes | None) -> str | tuple[Rows, list[int]]:
    """The (key, value) rows of a chunk and each entry's end offset, or why the chunk is bad:
    truncated, a key or value outside the ledger's limits or not UTF-8, keys not strictly ascending
    (after `last_key`, the previous chunk's last key)."""
    rows: Rows = []
    ends: list[int] = []
    pos = 0
    while pos < len(chunk):
        entry = _parse_entry(chunk, pos)
        if isinstance(entry, str):
            return entry
        key, value, pos = entry
        if last_key is not None and key <= last_key:
            return f"has keys out of order before byte {pos} (they must be strictly ascending)"
        last_key = key
        rows.append((key, value))
        ends.append(pos)
    return rows, ends


def _parse_entry(chunk: bytes, pos: int) -> str | tuple[bytes, bytes, int]:
    """The entry at `pos`: (key, value, its end offset), or why it is bad."""
    size = len(chunk)
    if size - pos < 4:
        return f"is truncated at byte {pos}"
    (key_len,) = _U32.unpack_from(chunk, pos)
    if not 1 <= key_len <= MAX_KEY_BYTES:
        return f"has a key of {key_len} bytes at byte {pos} (limit {MAX_KEY_BYTES}, never empty)"
    pos += 4
    if size - pos < key_len + 4:
        return f"is truncated at byte {pos}"
    key = chunk[pos : pos + key_len]
    pos += key_len
    (value_len,) = _U32.unpack_from(chunk, pos)
    if value_len > MAX_VALUE_BYTES:
        return f"has a value of {value_len} bytes at byte {pos} (limit {MAX_VALUE_BYTES})"
    pos += 4
    if size - pos < value_len:
        return f"is truncated at byte {pos}"
    value = chunk[pos : pos + value_len]
    pos += value_len
    try:
        key.decode("utf-8")
        value.decode("utf-8")
    except UnicodeDecodeError:
        return f"has a key or value that is not valid UTF-8 before byte {pos}"
    return key, value, pos


def _chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


# Writing.


def write_snapshot(
    root: Path,
    height: int,
    chain: bytes,
    entries: Iterable[tuple[bytes, bytes]],
    *,
    chunk_bytes: int,
    kept: int,
) -> None:
    """Write the snapshot at `height` (chain(height) `chain`, `entries` the state's (key, value)
    pairs in ascending key order) into `root/<height>/` atomically, then keep only the newest
    `kept` snapshots. Never raises `OSError`: a failure is logged and leaves no partial directory."""
    tmp = root / f"{height}{_TMP_SUFFIX}"
    try:
        started = time.perf_counter()
        written = _write_snapshot_files(tmp, height, chain, entries, chunk_bytes)
        if written is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        _publish(tmp, root / str(height))
        _prune_snapshots(root, kept)
    except OSError:
        log.exception("could not write the snapshot at height %d into %s", height, root)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    chunks, size_bytes, count = written
    log.info(
        "wrote the snapshot at height %d: %d entries, %d chunks, %d bytes in %.3f s",
        height,
        count,
        chunks,
        size_bytes,
        time.perf_counter() - started,
    )


def _write_snapshot_files(
    tmp: Path, height: int, chain: bytes, entries: Iterable[tuple[bytes, bytes]], chunk_bytes: int
) -> tuple[int, int, int] | None:
    """Chunk files and metadata in a fresh `tmp`, each synced; (chunks, bytes, entries), or None
    when the state needs more chunks than the metadata can name."""
    _fresh_directory(tmp)
    hashes: list[bytes] = []
    size_bytes = count = 0
    for chunk, chunk_entries in _pack_chunks(entries, chunk_bytes):
        if len(hashes) == MAX_KV_SNAPSHOT_CHUNKS:
            log.error(
                "no snapshot at height %d: the state needs more than %d chunks of %d bytes",
                height,
                MAX_KV_SNAPSHOT_CHUNKS,
                chunk_bytes,
            )
            return None
        write_synced(tmp / _chunk_name(len(hashes)), chunk)
        hashes.append(hashlib.sha256(chunk).digest())
        size_bytes += len(chunk)
        count += chunk_entries
    write_synced(tmp / _METADATA_FILE, _encode_metadata(chain, hashes))
    sync_directory(tmp)
    return len(hashes), size_bytes, count


def _pack_chunks(entries: Iterable[tuple[bytes, bytes]], limit: int) -> Iterator[tuple[bytearray, int]]:
    """The entries' elements packed into chunks of at most `limit` bytes (an entry never splits),
    each with its number of entries; at least one chunk, empty when there are no entries."""
    buffer = bytearray()
    count = packed = 0
    for key, value in entries:
        element = kv_element(bytes(key), bytes(value))
        if len(buffer) + len(element) > limit:
            yield buffer, count
            packed += 1
            buffer, count = bytearray(), 0
        buffer += element
        count += 1
    if buffer or not packed:
        yield buffer, count


def _fresh_directory(tmp: Path) -> None:
    """An empty `tmp`, creating (and syncing) its parent, the snapshot directory, if absent."""
    if not tmp.parent.is_dir():
        tmp.parent.mkdir(parents=True)
        sync_directory(tmp.parent.parent)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()


def _publish(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    sync_directory(final.parent)


def _prune_snapshots(root: Path, kept: int) -> None:
    for height in _snapshot_heights(root)[kept:]:
        shutil.rmtree(root / str(height))
    sync_directory(root)


def remove_partial_snapshots(root: Path) -> None:
    """Remove the `.tmp` directories a crash left under `root` (nothing if `root` is absent)."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.name.endswith(_TMP_SUFFIX):
            log.info("removing the partial snapshot %s (a crash interrupted its writing)", entry)
            shutil.rmtree(entry, ignore_errors=True)


# Reading.


def _snapshot_heights(root: Path) -> list[int]:
    """Heights of the complete snapshot directories under `root`, newest first."""
    try:
        names = [entry.name for entry in root.iterdir() if entry.is_dir()]
    except OSError:
        return []
    heights = [int(name) for name in names if name.isascii() and name.isdigit()]
    return sorted((height for height in heights if height > 0), reverse=True)


def _read_metadata(directory: Path) -> bytes | None:
    return read_bounded(directory / _METADATA_FILE, MAX_SNAPSHOT_METADATA_BYTES)


def list_snapshots(root: Path, kept: int) -> tuple[Snapshot, ...]:
    """The snapshots under `root`, newest first, at most `kept`; one that does not read back is
    skipped and logged."""
    found: list[Snapshot] = []
    for height in _snapshot_heights(root):
        snapshot = _read_snapshot(root / str(height), height)
        if snapshot is not None:
            found.append(snapshot)
            if len(found) == kept:
                break
    return tuple(found)


def _read_snapshot(directory: Path, height: int) -> Snapshot | None:
    metadata = _read_metadata(directory)
    if metadata is None:
        log.warning(
            "skipping the snapshot %s: no readable metadata of at most %d bytes",
            directory,
            MAX_SNAPSHOT_METADATA_BYTES,
        )
        return None
    parsed = _parse_metadata(metadata)
    if isinstance(parsed, str):
        log.warning("skipping the snapshot %s: %s", directory, parsed)
        return None
    missing = [index for index in range(parsed.chunks) if not (directory / _chunk_name(index)).is_file()]
    if missing:
        log.warning("skipping the snapshot %s: chunk files missing (first: %d)", directory, missing[0])
        return None
    return Snapshot(
        height=height,
        format=SNAPSHOT_FORMAT,
        chunks=parsed.chunks,
        hash=hashlib.sha256(metadata).digest(),
        metadata=metadata,
    )


def load_snapshot_chunk(root: Path, height: int, format: int, index: int) -> bytes | None:
    """Chunk `index` of the snapshot at `height` under `root`, checked against its metadata; None
    when it is not held, or does not read back as written (logged). Any arguments: whoever asked
    may be a peer."""
    # Type checks first: `height` names a directory.
    if not all(type(n) is int for n in (height, format, index)):
        return None
    if format != SNAPSHOT_FORMAT or height < 1 or index < 0:
        return None
    directory = root / str(height)
    metadata = _read_metadata(directory)
    if metadata is None:
        return None
    parsed = _parse_metadata(metadata)
    if isinstance(parsed, str):
        log.warning("snapshot %s: %s", directory, parsed)
        return None
    if index >= parsed.chunks:
        return None
    chunk = read_bounded(directory / _chunk_name(index), MAX_SNAPSHOT_CHUNK_BYTES)
    if chunk is None:
        log.warning("snapshot %s: chunk %d is missing or too big", directory, index)
        return None
    if hashlib.sha256(chunk).digest() != parsed.chunk_hash(index):
        log.warning("snapshot %s: chunk %d does not match its hash (corrupt on disk)", directory, index)
        return None
    return chunk


# Restoring.


@dataclass(frozen=True, slots=True)
class CheckedChunk:
    """A chunk that passed its checks: its rows to stage, and state(h) with its entries added."""

    rows: Rows
    lattice: LtHash


@dataclass(slots=True)
class Restore:
    """A restore in progress: what the offer said, and how far the chunks got (chunks are counted
    in by `advance` only once the ledger has staged their rows)."""

    snapshot: Snapshot
    trusted_app_hash: bytes
    metadata: _Metadata
    next_index: int = 0
    last_key: bytes | None = None
    entries: int = 0
    # state(h) of the entries staged so far.
    lattice: LtHash = field(default_factory=LtHash)

    @property
    def chain(self) -> bytes:
        return self.metadata.chain

    @property
    def complete(self) -> bool:
        return self.next_index >= self.snapshot.chunks

    def check_chunk(self, chunk: bytes) -> CheckedChunk | ApplyResult:
        """Check chunk `next_index` (see the header): `RETRY` or `REJECT_SNAPSHOT` (logged), else
        its rows and the lattice they make, not yet counted in."""
        height, index = self.snapshot.height, self.next_index
        if not isinstance(chunk, bytes | bytearray | memoryview):
            log.warning("snapshot %d, chunk %d: not bytes; fetch it again", height, index)
            return ApplyResult.RETRY
        if len(chunk) > MAX_SNAPSHOT_CHUNK_BYTES:
            log.warning(
                "snapshot %d, chunk %d: %d bytes, over the limit %d; fetch it again",
                height,
                index,
                len(chunk),
                MAX_SNAPSHOT_CHUNK_BYTES,
            )
            return ApplyResult.RETRY
        chunk = bytes(chunk)
        if hashlib.sha256(chunk).digest() != self.metadata.chunk_hash(index):
            log.warning(
                "snapshot %d, chunk %d: not the chunk its metadata names; fetch it again", height, index
            )
            return ApplyResult.RETRY
        parsed = _parse_chunk(chunk, self.last_key)
        if isinstance(parsed, str):
            log.warning("snapshot %d is bad: chunk %d %s", height, index, parsed)
            return ApplyResult.REJECT_SNAPSHOT
        rows, ends = parsed
        # Into a copy, kept only once the rows are staged: a failed write must not count them.
        lattice = self.lattice.copy()
        start = 0
        for end in ends:
            lattice.add(chunk[start:end])
            start = end
        return CheckedChunk(rows, lattice)

    def advance(self, checked: CheckedChunk) -> None:
        """Count `checked`, the chunk `next_index`, in: its rows are staged."""
        self.lattice = checked.lattice
        self.next_index += 1
        self.entries += len(checked.rows)
        if checked.rows:
            self.last_key = checked.rows[-1][0]

    def verified_app_hash(self) -> bytes | None:
        """The app hash of the state staged, when it is the trusted one; else None (logged)."""
        app_hash = app_hash_v2(self.chain, self.lattice)
        if app_hash == self.trusted_app_hash:
            return app_hash
        log.warning(
            "snapshot %d is bad: its state hashes to app hash %s, the trusted one is %s",
            self.snapshot.height,
            app_hash.hex(),
            self.trusted_app_hash.hex(),
        )
        return None


def start_restore(snapshot: Snapshot, app_hash: bytes, committed_height: int) -> Restore | OfferResult:
    """The restore of `snapshot` towards the trusted `app_hash`, or its refusal (logged):
    `REJECT_FORMAT` for another format, `REJECT` when it is unusable (see the header)."""
    if snapshot.format != SNAPSHOT_FORMAT:
        log.warning(
            "refusing a snapshot: unknown format %r (this ledger knows %d)",
            snapshot.format,
            SNAPSHOT_FORMAT,
        )
        return OfferResult.REJECT_FORMAT
    metadata = _offer_refusal(snapshot, app_hash, committed_height)
    if isinstance(metadata, str):
        log.warning("refusing the snapshot at height %r: %s", snapshot.height, metadata)
        return OfferResult.REJECT
    return Restore(snapshot=snapshot, trusted_app_hash=bytes(app_hash), metadata=metadata)


def _offer_refusal(snapshot: Snapshot, app_hash: bytes, committed_height: int) -> str | _Metadata:
    """Why `snapshot` is unusable, or its parsed metadata."""
    height, chunks, metadata = snapshot.height, snapshot.chunks, snapshot.metadata
    if not _is_int(height) or height < 1:
        return "its height is not a positive integer"
    if height <= committed_height:
        return f"it is not above the committed height {committed_height}"
    if not isinstance(app_hash, bytes) or len(app_hash) != len(GENESIS_APP_HASH):
        return "the trusted app hash is not 32 bytes"
    if not _is_int(chunks) or not 1 <= chunks <= MAX_KV_SNAPSHOT_CHUNKS:
        return f"chunk count {chunks!r} is not between 1 and {MAX_KV_SNAPSHOT_CHUNKS}"
    if not isinstance(metadata, bytes) or len(metadata) > MAX_SNAPSHOT_METADATA_BYTES:
        return f"its metadata is not bytes of at most {MAX_SNAPSHOT_METADATA_BYTES}"
    if snapshot.hash != hashlib.sha256(metadata).digest():
        return "its hash is not the SHA-256 of its metadata"
    parsed = _parse_metadata(metadata)
    if isinstance(parsed, str):
        return parsed
    if parsed.chunks != chunks:
        return f"its metadata names {parsed.chunks} chunks, the snapshot says {chunks}"
    return parsed


def _is_int(value: object) -> bool:
    # bool is an int subclass in Python, but no count or height.
    return isinstance(value, int) and not isinstance(value, bool)
