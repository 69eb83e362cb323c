"""Micro-benchmark of the key-value ledger on disk: µs per transaction of `execute_block` + `commit`.

Run: python bench/kv_ledger_micro.py [--blocks 200] [--txs 200] [--prefill 100000] [--rounds 3]
                                     [--baseline PATH]
Pre-fills a ledger file with `--prefill` keys, then per round copies it and applies `--blocks`
blocks of `--txs` puts of 256-byte values on random keys (half of the key space pre-filled), the
same transactions every round. `--baseline` names another kv.py (e.g. the committed one:
`git show HEAD:bft/app/kv.py > /tmp/kv_head.py`) to run alternately with the current ledger in the
same process, over the same file and transactions; both must reach the same app hash.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import shutil
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bft.app.kv import KeyValueLedger, put_tx

VALUE_BYTES = 256
PREFILL_BLOCK_TXS = 10_000

Opener = Callable[[Path], KeyValueLedger]


def _load_baseline(path: Path) -> Opener:
    # Registered in sys.modules before it runs: dataclasses look their module up there.
    spec = importlib.util.spec_from_file_location("kv_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    opener: Opener = module.KeyValueLedger
    return opener


def _key(n: int) -> str:
    return f"key-{n:08d}"


def _prefill(path: Path, keys: int, rng: random.Random) -> None:
    with KeyValueLedger(path) as app:
        for start in range(0, keys, PREFILL_BLOCK_TXS):
            txs = [put_tx(_key(n), _value(rng)) for n in range(start, min(start + PREFILL_BLOCK_TXS, keys))]
            app.execute_block(app.info().last_height + 1, txs)
            app.commit()


def _value(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters, k=VALUE_BYTES))


def _run(opener: Opener, path: Path, blocks: list[list[bytes]]) -> tuple[float, float, bytes]:
    """Seconds in execute_block and in commit over all `blocks`, and the final app hash."""
    executing_s = committing_s = 0.0
    with opener(path) as app:
        height = app.info().last_height
        app_hash = app.info().app_hash
        for txs in blocks:
            height += 1
            started = time.perf_counter()
            app.execute_block(height, txs)
            executed = time.perf_counter()
            app_hash = app.commit()
            committing_s += time.perf_counter() - executed
            executing_s += executed - started
    return executing_s, committing_s, app_hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--txs", type=int, default=200)
    parser.add_argument("--prefill", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another kv.py to compare with, side by side")
    args = parser.parse_args()
    openers: dict[str, Opener] = {"current": KeyValueLedger}
    if args.baseline is not None:
        openers = {"baseline": _load_baseline(args.baseline), **openers}
    rng = random.Random(1)
    blocks = [
        [put_tx(_key(rng.randrange(2 * args.prefill)), _value(rng)) for _ in range(args.txs)]
        for _ in range(args.blocks)
    ]
    total_txs = args.blocks * args.txs
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in openers}
    app_hashes = set()
    with tempfile.TemporaryDirectory() as tmp:
        filled = Path(tmp) / "filled.sqlite"
        _prefill(filled, args.prefill, rng)
        # Closing the last connection checkpoints the WAL into the file, so one file is the state.
        assert not Path(f"{filled}-wal").exists()
        for round_index in range(args.rounds):
            for name, opener in openers.items():
                path = Path(tmp) / f"{name}-{round_index}.sqlite"
                shutil.copyfile(filled, path)
                executing_s, committing_s, app_hash = _run(opener, path, blocks)
                app_hashes.add(app_hash)
                figures[name].append((executing_s / total_txs * 1e6, committing_s / total_txs * 1e6))
                exec_us, commit_us = figures[name][-1]
                print(
                    f"round {round_index + 1} {name:>8}: {exec_us + commit_us:7.2f} µs/tx"
                    f" (execute {exec_us:6.2f}, commit {commit_us:6.2f})"
                )
    assert len(app_hashes) == 1, "the ledgers disagree on the app hash"
    print(f"{args.blocks} blocks of {args.txs} puts of {VALUE_BYTES} bytes after {args.prefill:,} keys;")
    print("median µs per tx, execute_block + commit:")
    for name, runs in figures.items():
        exec_us = statistics.median(e for e, _ in runs)
        commit_us = statistics.median(c for _, c in runs)
        total_us = statistics.median(e + c for e, c in runs)
        print(f"  {name:>8}: {total_us:7.2f} (execute {exec_us:6.2f}, commit {commit_us:6.2f})")


if __name__ == "__main__":
    main()
