"""Figures of the key-value ledger's state commitment and snapshots (not a test; about two minutes).

Run: python bench/kv_snapshot_figures.py [--blocks 200] [--txs 200] [--prefill 50000] [--rounds 3]
                                         [--snapshot-keys 100000,1000000]
Prints, all measured in this run:
1. LtHash cost per element (add, remove) and per digest.
2. execute_block + commit per transaction, hash version 1 and 2 side by side: both ledgers are
   pre-filled with `--prefill` keys, then apply the same `--blocks` blocks of `--txs` puts of
   64-byte values on keys of the pre-filled space (so every put in version 2 removes an old entry
   from the lattice and adds a new one), alternating versions for `--rounds` rounds; medians.
3. For each of `--snapshot-keys`: a version-2 ledger built through blocks of 10,000 puts of
   values of 0 to 200 bytes, the time to write its snapshot (as `commit` does, from the ledger's
   log line), its size and chunks, and the time to restore it into a fresh ledger (offer and
   apply every chunk, with the chunks already read).
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import string
import tempfile
import time
from pathlib import Path

from bft.app.interface import ApplyResult, OfferResult
from bft.app.kv import KeyValueLedger, put_tx
from bft.app.lthash import LtHash

BUILD_BLOCK_TXS = 10_000
VALUE_BYTES = 64


class _SnapshotLog(logging.Handler):
    """Keeps the arguments of the ledger's "wrote the snapshot" log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        # (height, entries, chunks, bytes, seconds) per snapshot written.
        self.written: list[tuple[int, int, int, int, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("wrote the snapshot") and isinstance(record.args, tuple):
            height, entries, chunks, size_bytes, seconds = record.args
            assert isinstance(seconds, float)
            self.written.append(
                (int(str(height)), int(str(entries)), int(str(chunks)), int(str(size_bytes)), seconds)
            )


def _key(n: int) -> str:
    return f"key-{n:08d}"


def _value(rng: random.Random, size: int) -> str:
    return "".join(rng.choices(string.ascii_letters, k=size))


def lthash_figures() -> None:
    elements = [b"\x00\x00\x00\x0ckey-%08d\x00\x00\x00\x40" % n + b"v" * 64 for n in range(20_000)]
    value = LtHash()
    timings: dict[str, list[float]] = {"add": [], "remove": [], "digest": []}
    for _ in range(5):
        started = time.perf_counter()
        for element in elements:
            value.add(element)
        timings["add"].append((time.perf_counter() - started) / len(elements))
        started = time.perf_counter()
        for element in elements:
            value.remove(element)
        timings["remove"].append((time.perf_counter() - started) / len(elements))
        started = time.perf_counter()
        for _ in range(2_000):
            value.digest()
        timings["digest"].append((time.perf_counter() - started) / 2_000)
    assert value == LtHash()
    print("1. LtHash (best of 5 runs of 20,000 elements of 84 bytes):")
    for name, runs in timings.items():
        print(f"   {name:>6}: {min(runs) * 1e6:6.2f} µs")


def _prefill(path: Path, hash_version: int, keys: int, rng: random.Random) -> None:
    with KeyValueLedger(path, hash_version=hash_version) as app:
        for start in range(0, keys, BUILD_BLOCK_TXS):
            stop = min(start + BUILD_BLOCK_TXS, keys)
            app.execute_block(
                app.info().last_height + 1,
                [put_tx(_key(n), _value(rng, VALUE_BYTES)) for n in range(start, stop)],
            )
            app.commit()


def _run(path: Path, hash_version: int, blocks: list[list[bytes]]) -> float:
    """Seconds in execute_block + commit over all `blocks`."""
    elapsed = 0.0
    with KeyValueLedger(path, hash_version=hash_version) as app:
        height = app.info().last_height
        for txs in blocks:
            height += 1
            started = time.perf_counter()
            app.execute_block(height, txs)
            app.commit()
            elapsed += time.perf_counter() - started
    return elapsed


def per_tx_figures(tmp: Path, blocks_count: int, txs: int, prefill: int, rounds: int) -> None:
    rng = random.Random(1)
    filled = {version: tmp / f"filled-v{version}.sqlite" for version in (1, 2)}
    for version, path in filled.items():
        _prefill(path, version, prefill, random.Random(2))
    blocks = [
        [put_tx(_key(rng.randrange(prefill)), _value(rng, VALUE_BYTES)) for _ in range(txs)]
        for _ in range(blocks_count)
    ]
    figures: dict[int, list[float]] = {1: [], 2: []}
    for round_index in range(rounds):
        for version, source in filled.items():
            path = tmp / f"run-v{version}-{round_index}.sqlite"
            shutil.copyfile(source, path)
            figures[version].append(_run(path, version, blocks) / (blocks_count * txs) * 1e6)
    print(
        f"2. execute_block + commit, µs per tx (median of {rounds} rounds; {blocks_count} blocks of {txs}"
        f" puts of {VALUE_BYTES}-byte values over {prefill:,} keys):"
    )
    v1, v2 = statistics.median(figures[1]), statistics.median(figures[2])
    print(f"   version 1: {v1:7.2f}   rounds {', '.join(f'{f:.2f}' for f in figures[1])}")
    print(f"   version 2: {v2:7.2f}   rounds {', '.join(f'{f:.2f}' for f in figures[2])}")
    print(f"   version 2 costs {v2 - v1:+.2f} µs per tx ({v2 / v1:.2f}x)")


def snapshot_figures(tmp: Path, keys: int, snapshot_log: _SnapshotLog) -> None:
    rng = random.Random(keys)
    source_dir, target_dir = tmp / f"src-{keys}", tmp / f"dst-{keys}"
    source_dir.mkdir()
    target_dir.mkdir()
    build_blocks = -(-keys // BUILD_BLOCK_TXS)
    started = time.perf_counter()
    with KeyValueLedger(source_dir / "app.sqlite", hash_version=2, snapshot_interval=build_blocks) as src:
        for start in range(0, keys, BUILD_BLOCK_TXS):
            stop = min(start + BUILD_BLOCK_TXS, keys)
            txs = [put_tx(_key(n), _value(rng, rng.randrange(0, 201))) for n in range(start, stop)]
            src.execute_block(src.info().last_height + 1, txs)
            src.commit()
        build_s = time.perf_counter() - started
        (height, entries, chunks, size_bytes, write_s) = snapshot_log.written[-1]
        (snapshot,) = src.list_snapshots()
        started = time.perf_counter()
        loaded = [
            src.load_snapshot_chunk(snapshot.height, snapshot.format, i) for i in range(snapshot.chunks)
        ]
        load_s = time.perf_counter() - started
        trusted = src.info()
    database_bytes = (source_dir / "app.sqlite").stat().st_size
    with KeyValueLedger(target_dir / "app.sqlite", hash_version=2) as dst:
        started = time.perf_counter()
        assert dst.offer_snapshot(snapshot, trusted.app_hash) is OfferResult.ACCEPT
        for index, chunk in enumerate(loaded):
            assert chunk is not None
            assert dst.apply_snapshot_chunk(index, chunk) is ApplyResult.ACCEPT
        restore_s = time.perf_counter() - started
        assert dst.info() == trusted
    print(
        f"   {keys:>9,} keys: snapshot {size_bytes / 1e6:7.1f} MB in {chunks} chunks (database file"
        f" {database_bytes / 1e6:.1f} MB); create {write_s:6.2f} s, load chunks {load_s:5.2f} s,"
        f" restore {restore_s:6.2f} s; built in {build_s:.1f} s"
    )
    assert height == trusted.last_height and entries == keys


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs", type=int, default=200)
    parser.add_argument("--prefill", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--snapshot-keys", default="100000,1000000")
    args = parser.parse_args()
    snapshot_log = _SnapshotLog()
    logging.getLogger("bft.app").addHandler(snapshot_log)
    logging.getLogger("bft.app").setLevel(logging.INFO)
    lthash_figures()
    with tempfile.TemporaryDirectory() as tmp:
        per_tx_figures(Path(tmp), args.blocks, args.txs, args.prefill, args.rounds)
        print("3. snapshots (version 2, default 512 KiB chunks, values of 0 to 200 bytes):")
        for keys in (int(k) for k in args.snapshot_keys.split(",")):
            snapshot_figures(Path(tmp), keys, snapshot_log)


if __name__ == "__main__":
    main()
