"""Tests of the key-value ledger's hash version 2 and of snapshots (state sync) in the built-in
applications, against the `bft.app.interface.SnapshotApplication` contract."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bft.app.interface import (
    GENESIS_APP_HASH,
    MAX_SNAPSHOT_CHUNK_BYTES,
    MAX_SNAPSHOT_CHUNKS,
    MAX_SNAPSHOT_METADATA_BYTES,
    Application,
    ApplyResult,
    BlockResult,
    OfferResult,
    OutOfOrder,
    Snapshot,
    SnapshotApplication,
    StateCorrupt,
)
from bft.app.kv import (
    DEFAULT_SNAPSHOT_CHUNK_BYTES,
    MAX_ENTRY_BYTES,
    MAX_KEY_BYTES,
    MAX_KV_SNAPSHOT_CHUNKS,
    MAX_VALUE_BYTES,
    KeyValueLedger,
    app_hash_v2,
    cas_tx,
    del_tx,
    kv_element,
    open_kv_app,
    put_tx,
    state_lthash,
)
from bft.app.noop import SLOT_SIZE_BYTES, NoopApplication, encode_slot, next_app_hash, open_noop_app

# --- helpers -------------------------------------------------------------------------------------


def run_block(app: Application, txs: Sequence[bytes]) -> BlockResult:
    result = app.execute_block(app.info().last_height + 1, txs)
    assert app.commit() == result.app_hash
    return result


def v2(
    path: Path,
    *,
    snapshot_interval: int = 0,
    snapshots_kept: int = 2,
    snapshot_chunk_bytes: int = DEFAULT_SNAPSHOT_CHUNK_BYTES,
) -> KeyValueLedger:
    path.parent.mkdir(parents=True, exist_ok=True)
    return KeyValueLedger(
        path,
        hash_version=2,
        snapshot_interval=snapshot_interval,
        snapshots_kept=snapshots_kept,
        snapshot_chunk_bytes=snapshot_chunk_bytes,
    )


def rows(path: Path) -> list[tuple[bytes, bytes]]:
    """The committed table of a ledger file, read behind the ledger's back."""
    conn = sqlite3.connect(path)
    try:
        return [(bytes(k), bytes(v)) for k, v in conn.execute("SELECT key, value FROM kv ORDER BY key")]
    finally:
        conn.close()


def staged_rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute("SELECT count(*) FROM kv_restore").fetchone()
        return int(count)
    finally:
        conn.close()


def chunks_of(app: SnapshotApplication, snapshot: Snapshot) -> list[bytes]:
    chunks = [app.load_snapshot_chunk(snapshot.height, snapshot.format, i) for i in range(snapshot.chunks)]
    assert all(chunk is not None for chunk in chunks)
    return [chunk for chunk in chunks if chunk is not None]


def restore(
    app: SnapshotApplication, snapshot: Snapshot, chunks: Sequence[bytes], app_hash: bytes
) -> ApplyResult:
    """Offer and apply every chunk; the last answer (ACCEPT means restored)."""
    assert app.offer_snapshot(snapshot, app_hash) is OfferResult.ACCEPT
    result = ApplyResult.ACCEPT
    for index, chunk in enumerate(chunks):
        result = app.apply_snapshot_chunk(index, chunk)
        if result is not ApplyResult.ACCEPT:
            break
    return result


def entries(chunk: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) pairs of a format-1 chunk (the test's own reader of the format)."""
    found, pos = [], 0
    while pos < len(chunk):
        (key_len,) = struct.unpack_from(">I", chunk, pos)
        key = chunk[pos + 4 : pos + 4 + key_len]
        pos += 4 + key_len
        (value_len,) = struct.unpack_from(">I", chunk, pos)
        found.append((key, chunk[pos + 4 : pos + 4 + value_len]))
        pos += 4 + value_len
    return found


def pack(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    return b"".join(kv_element(key, value) for key, value in pairs)


def forge(snapshot: Snapshot, chunks: Sequence[bytes], chain: bytes | None = None) -> Snapshot:
    """A snapshot whose metadata and hash are consistent with `chunks`: what a hostile peer can
    always make. `chain` defaults to the honest snapshot's."""
    chain = snapshot.metadata[:32] if chain is None else chain
    metadata = chain + struct.pack(">I", len(chunks)) + b"".join(hashlib.sha256(c).digest() for c in chunks)
    return replace(snapshot, chunks=len(chunks), metadata=metadata, hash=hashlib.sha256(metadata).digest())


def value_of(rng: random.Random) -> str:
    # Mostly short values, some long ones (so chunks fill unevenly), some non-ASCII.
    roll = rng.random()
    if roll < 0.01:
        return "L" * rng.randrange(2_000, 20_000)
    if roll < 0.1:
        return "ü€" * rng.randrange(1, 40)
    return "v" * rng.randrange(0, 120)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[KeyValueLedger]:
    """A small v2 ledger with several chunks per snapshot: 4 blocks of 100 keys of ~1 KiB, a
    snapshot every 4 heights, chunks of the smallest size allowed."""
    rng = random.Random(4)
    with v2(
        tmp_path / "src" / "app.sqlite", snapshot_interval=4, snapshot_chunk_bytes=MAX_ENTRY_BYTES
    ) as app:
        for block in range(4):
            run_block(
                app, [put_tx(f"key-{block}-{i:03d}", "x" * rng.randrange(500, 1500)) for i in range(100)]
            )
        yield app


@pytest.fixture
def target(tmp_path: Path) -> Iterator[KeyValueLedger]:
    """A v2 ledger with a previous state of its own (height 2), to restore into."""
    with v2(tmp_path / "dst" / "app.sqlite") as app:
        run_block(app, [put_tx("mine", "before"), put_tx("other", "1")])
        run_block(app, [del_tx("other"), put_tx("third", "3")])
        yield app


def assert_previous_state(app: KeyValueLedger, info_before: object) -> None:
    assert app.info() == info_before
    assert app.get("mine") == ("before", 2)
    assert app.get("third") == ("3", 2)
    assert app.get("key-0-000") == (None, 2)
    # The ledger goes on from where it was.
    assert run_block(app, [put_tx("after", "yes")]).height == 3


# --- hash version 2 ------------------------------------------------------------------------------

V1_BLOCKS = [
    [put_tx("a", "1"), put_tx("b", "zwei"), put_tx("ключ", "значение")],
    [del_tx("a"), cas_tx("b", "zwei", "drei"), cas_tx("c", "x", "y"), b"not json"],
    [],
    [put_tx("a", "", nonce=7), del_tx("nothing"), cas_tx("d", None, "new")],
]
# Computed by the version-1 code before hash versions existed (commit 43efc82): must never change.
V1_HASHES = [
    "497fc5000e7f53609ab6116a29b5da4a2b6dea79a4172fedaf3525a6a14da413",
    "dda273be694abed8628bf095423511342994b5124e2b1d7ad6f28ae78a339dd8",
    "1fb2e95a7300901f346a76a882bace12638828052f8ca61907027408c8afbbfa",
    "b081810d1839f6d504ecc5628dff8aa18c9a976be660a3f5085d022d54c5f300",
]


def test_version_1_hashes_are_unchanged(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "kv.sqlite") as app:
        assert app.hash_version == 1 and app.state_lthash() is None
        assert [run_block(app, txs).app_hash.hex() for txs in V1_BLOCKS] == V1_HASHES


def test_version_2_follows_its_definition(tmp_path: Path) -> None:
    """chain(h), state(h) and app_hash(h) recomputed from the module header's definition."""
    with v2(tmp_path / "kv.sqlite") as app:
        chain = bytes(32)
        for height, txs in enumerate(V1_BLOCKS, start=1):
            result = run_block(app, txs)
            hasher = hashlib.sha256(b"bft-kv/v2/chain" + chain + struct.pack(">QI", height, len(txs)))
            for tx, tx_result in zip(txs, result.results, strict=True):
                hasher.update(hashlib.sha256(tx).digest() + struct.pack(">I", tx_result.code))
                hasher.update(v1_write(tx) if tx_result.ok else b"\x00")
            chain = hasher.digest()
            state = state_lthash(rows(tmp_path / "kv.sqlite"))
            assert app.state_lthash() == state
            assert result.app_hash == hashlib.sha256(b"bft-kv/v2" + chain + state.digest()).digest()
            assert result.app_hash == app_hash_v2(chain, state) == app.app_hash_at(height)
        # The same blocks under version 1 give other hashes: the versions are distinct chains.
        assert result.app_hash.hex() != V1_HASHES[-1]


def random_tx(rng: random.Random, keys: int) -> bytes:
    key, value = f"k{rng.randrange(keys)}", value_of(rng)
    kind = rng.randrange(4)
    if kind == 0:
        return del_tx(key)
    if kind == 1:
        return cas_tx(key, value, value + "!")
    return put_tx(key, value)


def v1_write(tx: bytes) -> bytes:
    op: dict[str, str] = json.loads(tx)
    key = op["key"].encode()
    if op["op"] == "del":
        return b"\x02" + struct.pack(">I", len(key)) + key
    value = op["value"].encode()
    return b"\x01" + struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value


def test_version_2_hashes_are_deterministic_across_ledgers(tmp_path: Path) -> None:
    rng = random.Random(7)
    blocks = [[random_tx(rng, 300) for _ in range(rng.randrange(0, 80))] for _ in range(40)]
    with v2(tmp_path / "one.sqlite") as one, v2(tmp_path / "two.sqlite") as two:
        hashes_one = [run_block(one, txs) for txs in blocks]
        hashes_two = [run_block(two, txs) for txs in blocks]
        assert hashes_one == hashes_two
        assert len({result.app_hash for result in hashes_one}) == len(blocks)
        assert one.state_lthash() == two.state_lthash() == state_lthash(rows(tmp_path / "one.sqlite"))
    # Reopened, a ledger continues the same chain.
    with v2(tmp_path / "one.sqlite") as one, v2(tmp_path / "two.sqlite") as two:
        assert run_block(one, [put_tx("x", "y")]) == run_block(two, [put_tx("x", "y")])


def test_a_ledger_refuses_to_open_with_another_hash_version(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "one.sqlite") as app:
        run_block(app, [put_tx("a", "1")])
    with pytest.raises(StateCorrupt, match="uses hash version 1, but was opened with hash_version=2"):
        v2(tmp_path / "one.sqlite")
    with v2(tmp_path / "two.sqlite") as app:
        run_block(app, [put_tx("a", "1")])
    with pytest.raises(StateCorrupt, match="uses hash version 2, but was opened with hash_version=1"):
        KeyValueLedger(tmp_path / "two.sqlite")
    # Refused opens changed nothing: each opens with its own version.
    with KeyValueLedger(tmp_path / "one.sqlite") as one, v2(tmp_path / "two.sqlite") as two:
        assert one.info().last_height == two.info().last_height == 1


def test_a_schema_1_database_is_upgraded_in_place_as_hash_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    # The schema and rows that the code before hash versions wrote after V1_BLOCKS[0].
    conn.executescript(
        "CREATE TABLE kv (key BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE meta (one INTEGER PRIMARY KEY CHECK (one = 1),"
        " height INTEGER NOT NULL, app_hash BLOB NOT NULL);"
        "CREATE TABLE app_hashes (height INTEGER PRIMARY KEY, app_hash BLOB NOT NULL);"
        "PRAGMA user_version = 1;"
    )
    first = bytes.fromhex(V1_HASHES[0])
    conn.executemany(
        "INSERT INTO kv VALUES (?, ?)",
        [(b"a", b"1"), (b"b", b"zwei"), ("ключ".encode(), "значение".encode())],
    )
    conn.execute("INSERT INTO meta VALUES (1, 1, ?)", (first,))
    conn.execute("INSERT INTO app_hashes VALUES (1, ?)", (first,))
    conn.close()
    with pytest.raises(StateCorrupt, match="hash version 1"):
        v2(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (1,)
    with KeyValueLedger(path) as app:
        assert app.info().last_height == 1 and app.app_hash_at(1) == first
        assert [run_block(app, txs).app_hash.hex() for txs in V1_BLOCKS[1:]] == V1_HASHES[1:]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (2,)
    with pytest.raises(StateCorrupt):
        v2(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hash_version": 3}, "hash_version"),
        ({"hash_version": 1, "snapshot_interval": 10}, "need hash_version=2"),
        ({"hash_version": 2, "snapshot_interval": -1}, "snapshot_interval"),
        ({"hash_version": 2, "snapshots_kept": 0}, "snapshots_kept"),
        ({"hash_version": 2, "snapshot_chunk_bytes": MAX_ENTRY_BYTES - 1}, "snapshot_chunk_bytes"),
        ({"hash_version": 2, "snapshot_chunk_bytes": MAX_SNAPSHOT_CHUNK_BYTES + 1}, "snapshot_chunk_bytes"),
    ],
)
def test_options_out_of_range_are_refused(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyValueLedger(tmp_path / "kv.sqlite", **options)
    assert not (tmp_path / "kv.sqlite").exists()


def test_open_kv_app_defaults_to_the_built_in_ledger_and_passes_options(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    with open_kv_app(tmp_path / "a") as app:
        assert app.hash_version == 1 and app.list_snapshots() == ()
        assert [run_block(app, txs).app_hash.hex() for txs in V1_BLOCKS] == V1_HASHES
    assert (tmp_path / "a" / "app.sqlite").is_file()
    (tmp_path / "b").mkdir()
    with open_kv_app(tmp_path / "b", hash_version=2, snapshot_interval=1, snapshots_kept=1) as app:
        run_block(app, [put_tx("a", "1")])
        assert [s.height for s in app.list_snapshots()] == [1]
    assert (tmp_path / "b" / "snapshots" / "1" / "metadata").is_file()


def test_the_ledgers_are_snapshot_applications(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "kv.sqlite") as kv, NoopApplication(tmp_path / "noop.state") as noop:
        assert isinstance(kv, SnapshotApplication) and isinstance(noop, SnapshotApplication)
    assert MAX_KV_SNAPSHOT_CHUNKS <= MAX_SNAPSHOT_CHUNKS
    assert (
        36 + 32 * MAX_KV_SNAPSHOT_CHUNKS
        <= MAX_SNAPSHOT_METADATA_BYTES
        < 36 + 32 * (MAX_KV_SNAPSHOT_CHUNKS + 1)
    )


# --- snapshots at volume -------------------------------------------------------------------------


def test_restore_at_volume_then_both_ledgers_agree_on_every_block(tmp_path: Path) -> None:
    rng = random.Random(2024)
    key_count = 120_000
    with v2(tmp_path / "src" / "app.sqlite", snapshot_interval=26, snapshot_chunk_bytes=256 * 1024) as src:
        for start in range(0, key_count, 5_000):
            run_block(src, [put_tx(f"key-{i:07d}", value_of(rng)) for i in range(start, start + 5_000)])
        # Overwrites, deletes and compare-and-sets on the way to the snapshot height (26).
        run_block(src, [del_tx(f"key-{i:07d}") for i in range(0, key_count, 7)])
        run_block(src, [put_tx(f"key-{i:07d}", value_of(rng)) for i in range(1, key_count, 11)])
        assert src.info().last_height == 26
        (snapshot,) = src.list_snapshots()
        assert snapshot.height == 26 and snapshot.format == 1
        assert snapshot.hash == hashlib.sha256(snapshot.metadata).digest()
        chunks = chunks_of(src, snapshot)
        assert len(chunks) == snapshot.chunks >= 20
        assert all(len(chunk) <= 256 * 1024 for chunk in chunks)
        # The chunks hold the state, sorted by key, each entry whole.
        assert [pair for chunk in chunks for pair in entries(chunk)] == rows(tmp_path / "src" / "app.sqlite")
        committed = len(rows(tmp_path / "src" / "app.sqlite"))
        assert committed > 100_000

        with v2(tmp_path / "dst" / "app.sqlite") as dst:
            assert restore(dst, snapshot, chunks, src.info().app_hash) is ApplyResult.ACCEPT
            assert dst.info() == src.info()
            assert dst.app_hash_at(26) == src.app_hash_at(26)
            assert dst.state_lthash() == src.state_lthash()
            assert rows(tmp_path / "dst" / "app.sqlite") == rows(tmp_path / "src" / "app.sqlite")
            assert staged_rows(tmp_path / "dst" / "app.sqlite") == 0
            for key in ("key-0000001", "key-0000007", "key-0119999"):
                assert dst.get(key) == src.get(key)
            # The property state sync relies on: from here both execute every block alike.
            for block in range(20):
                keys = [f"key-{rng.randrange(key_count + 1000):07d}" for _ in range(60)]
                txs = [put_tx(k, value_of(rng)) for k in keys[:30]] + [del_tx(k) for k in keys[30:45]]
                txs += [cas_tx(k, src.get(k)[0], f"cas-{block}") for k in keys[45:]]
                txs += [cas_tx(k, "surely not", "x") for k in keys[:3]]
                assert run_block(dst, txs) == run_block(src, txs)
            assert dst.state_lthash() == src.state_lthash()
        # The restore is durable: reopened, the ledger is at the new height with the same state.
        with v2(tmp_path / "dst" / "app.sqlite") as dst:
            assert dst.info() == src.info()
            assert dst.app_hash_at(26) == src.app_hash_at(26) and dst.app_hash_at(25) is None


# --- offers --------------------------------------------------------------------------------------


def refusals(snapshot: Snapshot) -> list[tuple[str, Snapshot]]:
    metadata = snapshot.metadata

    def with_metadata(raw: bytes, **fields: int) -> Snapshot:
        return replace(snapshot, metadata=raw, hash=hashlib.sha256(raw).digest(), **fields)

    count = struct.pack(">I", snapshot.chunks)
    huge = MAX_KV_SNAPSHOT_CHUNKS + 1
    return [
        (
            "metadata tampered, hash kept",
            replace(snapshot, metadata=metadata[:-1] + bytes([metadata[-1] ^ 1])),
        ),
        ("hash tampered", replace(snapshot, hash=bytes(32))),
        ("height 0", replace(snapshot, height=0)),
        ("negative height", replace(snapshot, height=-4)),
        ("more chunks than the metadata names", replace(snapshot, chunks=snapshot.chunks + 1)),
        ("no chunks", with_metadata(metadata[:32] + bytes(4), chunks=0)),
        ("metadata truncated", with_metadata(metadata[:-1])),
        ("metadata shorter than its header", with_metadata(metadata[:20])),
        ("metadata with a trailing byte", with_metadata(metadata + b"\x00")),
        (
            "chunk count not the metadata's",
            with_metadata(metadata[:32] + struct.pack(">I", 1) + metadata[36:68]),
        ),
        (
            "too many chunks",
            with_metadata(metadata[:32] + struct.pack(">I", huge) + bytes(32 * huge), chunks=huge),
        ),
        (
            "metadata too big",
            with_metadata(metadata + bytes(MAX_SNAPSHOT_METADATA_BYTES), chunks=snapshot.chunks),
        ),
        ("metadata not bytes", replace(snapshot, metadata="text")),  # type: ignore[arg-type]
        ("chunks not an int", replace(snapshot, chunks="7")),  # type: ignore[arg-type]
        ("one chunk hash missing", with_metadata(metadata[:32] + count + metadata[36:-32])),
    ]


def test_bad_offers_are_refused_and_change_nothing(
    source: KeyValueLedger, target: KeyValueLedger, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = source.list_snapshots()[0]
    trusted = source.info().app_hash
    before = target.info()
    for why, bad in refusals(snapshot):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            assert target.offer_snapshot(bad, trusted) is OfferResult.REJECT, why
        assert "refusing" in caplog.text, why
        with pytest.raises(OutOfOrder):
            target.apply_snapshot_chunk(0, b"")
    assert target.offer_snapshot(replace(snapshot, format=2), trusted) is OfferResult.REJECT_FORMAT
    assert target.offer_snapshot(snapshot, b"short") is OfferResult.REJECT
    assert_previous_state(target, before)
    # Not above the committed height (3 now, and a snapshot at 2 would take the ledger back).
    assert target.offer_snapshot(replace(snapshot, height=3), trusted) is OfferResult.REJECT


def test_a_version_1_ledger_refuses_every_snapshot(source: KeyValueLedger, tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "v1.sqlite") as app:
        snapshot = source.list_snapshots()[0]
        assert app.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.REJECT
        assert app.list_snapshots() == () and app.load_snapshot_chunk(4, 1, 0) is None


def test_offering_while_a_block_is_staged_is_out_of_order(
    source: KeyValueLedger, target: KeyValueLedger
) -> None:
    target.execute_block(3, [put_tx("x", "y")])
    with pytest.raises(OutOfOrder):
        target.offer_snapshot(source.list_snapshots()[0], source.info().app_hash)


# --- chunks --------------------------------------------------------------------------------------


def test_a_corrupted_chunk_is_retried_and_the_right_one_then_accepted(
    source: KeyValueLedger, target: KeyValueLedger, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    assert len(chunks) >= 5
    assert target.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.ACCEPT
    assert target.apply_snapshot_chunk(0, chunks[0]) is ApplyResult.ACCEPT
    flipped = bytearray(chunks[1])
    flipped[100] ^= 0x40
    with caplog.at_level(logging.WARNING, logger="bft.app"):
        assert target.apply_snapshot_chunk(1, bytes(flipped)) is ApplyResult.RETRY
        assert target.apply_snapshot_chunk(1, chunks[2]) is ApplyResult.RETRY  # another chunk's bytes
        assert target.apply_snapshot_chunk(1, b"") is ApplyResult.RETRY
        assert target.apply_snapshot_chunk(1, "text") is ApplyResult.RETRY  # type: ignore[arg-type]
    assert "fetch it again" in caplog.text
    for index in range(1, len(chunks)):
        assert target.apply_snapshot_chunk(index, chunks[index]) is ApplyResult.ACCEPT
    assert target.info() == source.info()
    assert rows(Path(target._path)) == rows(Path(source._path))


def test_an_oversized_chunk_is_retried_without_staging_anything(
    source: KeyValueLedger, target: KeyValueLedger, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    assert target.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.ACCEPT
    huge = chunks[0] + bytes(MAX_SNAPSHOT_CHUNK_BYTES)
    with caplog.at_level(logging.WARNING, logger="bft.app"):
        assert target.apply_snapshot_chunk(0, huge) is ApplyResult.RETRY
    # Refused on its size, before any hashing or parsing.
    assert f"over the limit {MAX_SNAPSHOT_CHUNK_BYTES}" in caplog.text
    assert staged_rows(Path(target._path)) == 0
    assert target.apply_snapshot_chunk(0, chunks[0]) is ApplyResult.ACCEPT
    assert staged_rows(Path(target._path)) == len(entries(chunks[0])) > 0


def test_chunks_must_come_in_order(source: KeyValueLedger, target: KeyValueLedger) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    with pytest.raises(OutOfOrder, match="no restore in progress"):
        target.apply_snapshot_chunk(0, chunks[0])
    assert target.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.ACCEPT
    with pytest.raises(OutOfOrder, match="expected chunk 0"):
        target.apply_snapshot_chunk(1, chunks[1])
    assert target.apply_snapshot_chunk(0, chunks[0]) is ApplyResult.ACCEPT
    with pytest.raises(OutOfOrder, match="expected chunk 1"):
        target.apply_snapshot_chunk(0, chunks[0])
    with pytest.raises(OutOfOrder, match="expected chunk 1"):
        target.apply_snapshot_chunk(len(chunks), chunks[0])


def bad_chunk_bodies(chunks: list[bytes]) -> list[tuple[str, list[bytes]]]:
    """Snapshots whose chunks match their (forged) metadata but are themselves bad."""
    first = entries(chunks[0])

    def first_chunk(pairs: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        return [pack(pairs), *chunks[1:]]

    return [
        ("two entries swapped", first_chunk([first[1], first[0], *first[2:]])),
        ("a duplicate key", first_chunk([first[0], *first])),
        ("keys falling back across chunks", [chunks[1], chunks[0], *chunks[2:]]),
        ("a chunk repeated", [chunks[0], chunks[0], *chunks[1:]]),
        ("an empty key", first_chunk([(b"", b"v"), *first])),
        ("a key over the limit", first_chunk([(b"k" * (MAX_KEY_BYTES + 1), b"v")])),
        ("a value over the limit", first_chunk([(b"\x01", b"v" * (MAX_VALUE_BYTES + 1))])),
        ("a key that is not UTF-8", first_chunk([(b"\x01\xff", b"v"), *first])),
        ("a value that is an encoded surrogate", first_chunk([(b"\x01", b"\xed\xa0\x80"), *first])),
        ("a truncated entry", [pack(first)[:-1], *chunks[1:]]),
        ("a truncated length", [pack(first) + b"\x00\x00", *chunks[1:]]),
        ("a length past the end", [pack(first) + struct.pack(">I", 10) + b"abc", *chunks[1:]]),
        (
            "a value length past the end",
            [pack(first) + struct.pack(">I", 1) + b"z" + struct.pack(">I", 5), *chunks[1:]],
        ),
    ]


def test_internally_consistent_but_bad_chunks_reject_the_snapshot(
    source: KeyValueLedger, target: KeyValueLedger, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    trusted = source.info().app_hash
    before = target.info()
    for why, bad in bad_chunk_bodies(chunks):
        forged = forge(snapshot, bad)
        assert target.offer_snapshot(forged, trusted) is OfferResult.ACCEPT, why
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            results = []
            for index, chunk in enumerate(bad[:2]):
                results.append(target.apply_snapshot_chunk(index, chunk))
                if results[-1] is not ApplyResult.ACCEPT:
                    break
        assert results[-1] is ApplyResult.REJECT_SNAPSHOT, why
        assert "is bad" in caplog.text, why
        assert staged_rows(Path(target._path)) == 0, why
        with pytest.raises(OutOfOrder):  # the restore is over
            target.apply_snapshot_chunk(len(results), bad[0])
    assert_previous_state(target, before)


def test_a_state_other_than_the_trusted_one_rejects_the_snapshot(
    source: KeyValueLedger, target: KeyValueLedger, caplog: pytest.LogCaptureFixture
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    trusted = source.info().app_hash
    before = target.info()
    first = entries(chunks[0])
    changed = [(first[0][0], first[0][1] + b"!"), *first[1:]]
    cases = [
        (
            "one value changed",
            forge(snapshot, [pack(changed), *chunks[1:]]),
            [pack(changed), *chunks[1:]],
            trusted,
        ),
        (
            "one entry dropped",
            forge(snapshot, [pack(first[1:]), *chunks[1:]]),
            [pack(first[1:]), *chunks[1:]],
            trusted,
        ),
        ("a chunk dropped", forge(snapshot, chunks[:-1]), chunks[:-1], trusted),
        ("another chain", forge(snapshot, chunks, chain=bytes(32)), chunks, trusted),
        ("the honest snapshot, another trusted hash", snapshot, chunks, hashlib.sha256(b"other").digest()),
        ("the trusted hash of another height", snapshot, chunks, source.app_hash_at(3)),
    ]
    for why, offered, body, app_hash in cases:
        assert app_hash is not None
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            assert restore(target, offered, body, app_hash) is ApplyResult.REJECT_SNAPSHOT, why
        assert "the trusted one is" in caplog.text, why
        assert target.info() == before and staged_rows(Path(target._path)) == 0, why
    assert_previous_state(target, before)
    # And the honest snapshot still restores (into the ledger now at height 3).
    assert restore(target, snapshot, chunks, trusted) is ApplyResult.ACCEPT
    assert target.info() == source.info() and target.get("mine") == (None, 4)


# --- abandoned, interrupted and crashed restores -------------------------------------------------


def test_close_in_the_middle_of_a_restore_leaves_the_previous_state(
    source: KeyValueLedger, target: KeyValueLedger
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    before = target.info()
    path = Path(target._path)
    assert target.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.ACCEPT
    for index in range(len(chunks) - 1):
        assert target.apply_snapshot_chunk(index, chunks[index]) is ApplyResult.ACCEPT
    assert staged_rows(path) > 0
    target.close()
    with v2(path) as reopened:
        assert staged_rows(path) == 0
        with pytest.raises(OutOfOrder):
            reopened.apply_snapshot_chunk(len(chunks) - 1, chunks[-1])
        assert_previous_state(reopened, before)


def test_a_crash_in_the_middle_of_a_restore_leaves_the_previous_state(
    source: KeyValueLedger, target: KeyValueLedger, tmp_path: Path
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    before = target.info()
    path = Path(target._path)
    target.close()
    (tmp_path / "chunks").mkdir()
    for index, chunk in enumerate(chunks):
        (tmp_path / "chunks" / str(index)).write_bytes(chunk)
    script = (
        "import os, sys, hashlib\n"
        "from pathlib import Path\n"
        "from bft.app.interface import Snapshot\n"
        "from bft.app.kv import KeyValueLedger\n"
        "path, folder, height, chunks, trusted, metadata = sys.argv[1:]\n"
        "app = KeyValueLedger(Path(path), hash_version=2)\n"
        "metadata = bytes.fromhex(metadata)\n"
        "snap = Snapshot(int(height), 1, int(chunks), hashlib.sha256(metadata).digest(), metadata)\n"
        "assert app.offer_snapshot(snap, bytes.fromhex(trusted)).name == 'ACCEPT'\n"
        "for i in range(int(chunks) - 1):\n"
        "    assert app.apply_snapshot_chunk(i, (Path(folder) / str(i)).read_bytes()).name == 'ACCEPT'\n"
        "os._exit(0)\n"
    )
    args = [path, tmp_path / "chunks", snapshot.height, snapshot.chunks, source.info().app_hash.hex()]
    subprocess.run(
        [sys.executable, "-c", script, *map(str, args), snapshot.metadata.hex()], check=True, timeout=120
    )
    assert staged_rows(path) > 0
    with v2(path) as reopened:
        assert staged_rows(path) == 0
        assert_previous_state(reopened, before)


def test_a_new_offer_abandons_the_restore_in_progress(source: KeyValueLedger, target: KeyValueLedger) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    trusted = source.info().app_hash
    assert target.offer_snapshot(snapshot, trusted) is OfferResult.ACCEPT
    assert target.apply_snapshot_chunk(0, chunks[0]) is ApplyResult.ACCEPT
    assert target.apply_snapshot_chunk(1, chunks[1]) is ApplyResult.ACCEPT
    # The new offer starts over from chunk 0, with nothing of the abandoned restore staged.
    assert restore(target, snapshot, chunks, trusted) is ApplyResult.ACCEPT
    assert target.info() == source.info()
    assert rows(Path(target._path)) == rows(Path(source._path))


def test_executing_a_block_abandons_the_restore_in_progress(
    source: KeyValueLedger, target: KeyValueLedger
) -> None:
    snapshot = source.list_snapshots()[0]
    chunks = chunks_of(source, snapshot)
    before = target.info()
    assert target.offer_snapshot(snapshot, source.info().app_hash) is OfferResult.ACCEPT
    assert target.apply_snapshot_chunk(0, chunks[0]) is ApplyResult.ACCEPT
    target.execute_block(3, [put_tx("after", "yes")])
    assert staged_rows(Path(target._path)) == 0
    with pytest.raises(OutOfOrder, match="no restore in progress"):
        target.apply_snapshot_chunk(1, chunks[1])
    target.commit()
    assert target.info().last_height == before.last_height + 1 and target.get("key-0-000") == (None, 3)


def test_a_snapshot_of_the_empty_state_restores(tmp_path: Path) -> None:
    with v2(tmp_path / "src" / "app.sqlite", snapshot_interval=2) as src:
        run_block(src, [put_tx("a", "1")])
        run_block(src, [del_tx("a")])
        (snapshot,) = src.list_snapshots()
        assert snapshot.chunks == 1 and chunks_of(src, snapshot) == [b""]
        with v2(tmp_path / "dst" / "app.sqlite") as dst:
            assert restore(dst, snapshot, [b""], src.info().app_hash) is ApplyResult.ACCEPT
            assert dst.info() == src.info()
            assert run_block(dst, [put_tx("b", "2")]) == run_block(src, [put_tx("b", "2")])


# --- the snapshot directory ----------------------------------------------------------------------


def test_snapshots_kept_bounds_the_directories(tmp_path: Path) -> None:
    with v2(tmp_path / "app.sqlite", snapshot_interval=2, snapshots_kept=3) as app:
        for height in range(1, 12):
            run_block(app, [put_tx(f"k{height}", "v")])
            folder = tmp_path / "snapshots"
            held = sorted(int(p.name) for p in folder.iterdir()) if height > 1 else []
            assert held == list(range(2, height + 1, 2))[-3:]
        assert [s.height for s in app.list_snapshots()] == [10, 8, 6]
        # Each holds the state of its own height.
        assert [entries(c)[-1][0] for c in chunks_of(app, app.list_snapshots()[2])] == [b"k6"]
        assert app.load_snapshot_chunk(4, 1, 0) is None
        assert app.load_snapshot_chunk(10, 2, 0) is None
        assert app.load_snapshot_chunk(10, 1, 1) is None
        assert app.load_snapshot_chunk(10, 1, -1) is None
        assert app.load_snapshot_chunk("10", 1, 0) is None  # type: ignore[arg-type]
        assert app.load_snapshot_chunk(10, 1, 0) is not None


def test_a_partial_snapshot_is_removed_on_open(tmp_path: Path) -> None:
    with v2(tmp_path / "app.sqlite", snapshot_interval=1) as app:
        run_block(app, [put_tx("a", "1")])
    partial = tmp_path / "snapshots" / "2.tmp"
    partial.mkdir()
    (partial / "chunk-00000").write_bytes(b"half")
    with v2(tmp_path / "app.sqlite", snapshot_interval=1) as app:
        assert not partial.exists()
        assert [s.height for s in app.list_snapshots()] == [1]
    # With snapshots off, the ledger leaves the directory alone.
    partial.mkdir()
    with v2(tmp_path / "app.sqlite") as app:
        assert partial.exists() and app.list_snapshots() == ()


def test_corrupt_snapshots_on_disk_are_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with v2(tmp_path / "app.sqlite", snapshot_interval=1, snapshots_kept=3) as app:
        for height in range(1, 4):
            run_block(app, [put_tx(f"k{height}", "v" * 100)])
        (tmp_path / "snapshots" / "3" / "metadata").write_bytes(b"garbage")
        (tmp_path / "snapshots" / "2" / "chunk-00000").unlink()
        (tmp_path / "snapshots" / "junk").mkdir()
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            assert [s.height for s in app.list_snapshots()] == [1]
        assert "skipping the snapshot" in caplog.text
        chunk = tmp_path / "snapshots" / "1" / "chunk-00000"
        chunk.write_bytes(chunk.read_bytes()[:-1] + b"w")
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            assert app.load_snapshot_chunk(1, 1, 0) is None
        assert "does not match its hash" in caplog.text


def test_a_failure_to_write_a_snapshot_does_not_fail_the_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "snapshots").write_bytes(b"a file where the directory should be")
    with v2(tmp_path / "app.sqlite", snapshot_interval=1) as app:
        with caplog.at_level(logging.ERROR, logger="bft.app"):
            result = run_block(app, [put_tx("a", "1")])
        assert "could not write the snapshot at height 1" in caplog.text
        assert app.info().app_hash == result.app_hash and app.list_snapshots() == ()


def test_snapshot_creation_is_timed_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (
        v2(tmp_path / "app.sqlite", snapshot_interval=1) as app,
        caplog.at_level(logging.INFO, logger="bft.app"),
    ):
        run_block(app, [put_tx("a", "1"), put_tx("b", "2")])
    assert "wrote the snapshot at height 1: 2 entries, 1 chunks" in caplog.text


# --- the no-op application -----------------------------------------------------------------------


def noop_blocks(app: NoopApplication, count: int) -> list[bytes]:
    return [run_block(app, [b"t"] * (height % 3)).app_hash for height in range(count)]


def test_noop_snapshots_restore_and_continue_alike(tmp_path: Path) -> None:
    with NoopApplication(tmp_path / "src.state", snapshot_interval=3, snapshots_kept=2) as src:
        noop_blocks(src, 10)
        snapshots = src.list_snapshots()
        assert [s.height for s in snapshots] == [9, 6]
        assert snapshots[0] == Snapshot(9, 1, 1, hashlib.sha256(b"").digest(), b"")
        chunk = src.load_snapshot_chunk(9, 1, 0)
        assert chunk is not None and src.load_snapshot_chunk(9, 1, 1) is None
        assert src.load_snapshot_chunk(3, 1, 0) is None and src.load_snapshot_chunk(9, 2, 0) is None
        with NoopApplication(tmp_path / "dst.state") as dst:
            noop_blocks(dst, 2)
            nine = _noop_hash_at(9)
            assert restore(dst, snapshots[0], [chunk], nine) is ApplyResult.ACCEPT
            assert dst.info().last_height == 9 and dst.info().app_hash == nine
            assert run_block(dst, [b"x"]).app_hash == next_app_hash(nine, 10, 1)
        with NoopApplication(tmp_path / "dst.state") as dst:
            assert dst.info().last_height == 10
            assert run_block(dst, []).height == 11
        assert src.info().last_height == 10
    # The records of the snapshots survive a reopen.
    with NoopApplication(tmp_path / "src.state", snapshot_interval=3, snapshots_kept=2) as src:
        assert [s.height for s in src.list_snapshots()] == [9, 6]
        assert src.load_snapshot_chunk(9, 1, 0) == encode_slot(9, _noop_hash_at(9))


def _tear_slot(path: Path, slot: int) -> None:
    """A write cut short: the slot's last bytes are garbage, so its checksum fails."""
    raw = bytearray(path.read_bytes())
    end = (slot + 1) * SLOT_SIZE_BYTES
    raw[end - 6 : end] = b"\xa5" * 6
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("before_height", [2, 3])
def test_a_torn_noop_restore_leaves_the_previous_height(tmp_path: Path, before_height: int) -> None:
    """The restored slot never overwrites the committed one, whatever the heights' parities."""
    snapshot = Snapshot(9, 1, 1, hashlib.sha256(b"").digest(), b"")
    nine = _noop_hash_at(9)
    state = tmp_path / "dst.state"
    with NoopApplication(state) as app:
        noop_blocks(app, before_height)
        before = app.info()
        assert restore(app, snapshot, [encode_slot(9, nine)], nine) is ApplyResult.ACCEPT
    raw = state.read_bytes()
    restored_slot = [raw[i * SLOT_SIZE_BYTES : (i + 1) * SLOT_SIZE_BYTES] for i in range(2)].index(
        encode_slot(9, nine)
    )
    _tear_slot(state, restored_slot)
    with NoopApplication(state) as app:
        assert app.info() == before
    state.write_bytes(raw)
    with NoopApplication(state) as app:
        assert app.info().last_height == 9
        run_block(app, [])
    # Committing height 10 did not overwrite height 9's slot either.
    _tear_slot(state, 1 - restored_slot)
    with NoopApplication(state) as app:
        assert (app.info().last_height, app.info().app_hash) == (9, nine)


def _noop_hash_at(height: int) -> bytes:
    app_hash = GENESIS_APP_HASH
    for h in range(1, height + 1):
        app_hash = next_app_hash(app_hash, h, (h - 1) % 3)
    return app_hash


def test_noop_refusals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = Snapshot(9, 1, 1, hashlib.sha256(b"").digest(), b"")
    nine = _noop_hash_at(9)
    with NoopApplication(tmp_path / "dst.state") as app:
        noop_blocks(app, 2)
        before = app.info()
        with caplog.at_level(logging.WARNING, logger="bft.app"):
            assert app.offer_snapshot(replace(good, format=2), nine) is OfferResult.REJECT_FORMAT
            for bad in [replace(good, height=0), replace(good, height=2), replace(good, chunks=2)]:
                assert app.offer_snapshot(bad, nine) is OfferResult.REJECT
            assert app.offer_snapshot(
                replace(good, metadata=b"x", hash=hashlib.sha256(b"x").digest()), nine
            ) is (OfferResult.REJECT)
            assert app.offer_snapshot(good, b"short") is OfferResult.REJECT
            assert app.offer_snapshot(good, nine) is OfferResult.ACCEPT
            for chunk in [
                b"",
                encode_slot(9, bytes(32)),
                encode_slot(8, nine),
                encode_slot(9, nine)[:-1] + b"\x00",
            ]:
                assert app.apply_snapshot_chunk(0, chunk) is ApplyResult.RETRY
        assert "refusing" in caplog.text and "fetch it again" in caplog.text
        with pytest.raises(OutOfOrder):
            app.apply_snapshot_chunk(1, encode_slot(9, nine))
        app.close()
        # close() in the middle of the restore: the previous state.
    with NoopApplication(tmp_path / "dst.state") as app:
        assert app.info() == before
        with pytest.raises(OutOfOrder):
            app.apply_snapshot_chunk(0, encode_slot(9, nine))
        assert app.offer_snapshot(good, nine) is OfferResult.ACCEPT
        assert app.apply_snapshot_chunk(0, encode_slot(9, nine)) is ApplyResult.ACCEPT
        assert app.info().last_height == 9


def test_noop_snapshot_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        NoopApplication(tmp_path / "a.state", snapshot_interval=-1)
    with pytest.raises(ValueError):
        NoopApplication(tmp_path / "a.state", snapshots_kept=0)
    with open_noop_app(tmp_path) as app:
        noop_blocks(app, 4)
        assert app.list_snapshots() == ()
    assert not list(tmp_path.glob("*.snapshots"))
