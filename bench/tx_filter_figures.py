"""Figures of the committed-transaction check: the block store's `has_tx` for transactions never
committed (nearly every check a node makes), through the in-memory filter and through the SQLite
index alone, at a given number of committed transactions.

Run: python bench/tx_filter_figures.py [--committed 1500000] [--lookups 100000]
Builds a block store in a temporary directory; prints µs per lookup and the filter's bytes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bft.core.blocktree import genesis
from bft.core.messages import Block, QuorumCert
from bft.core.types import ValidatorIndex, View
from bft.node.storage import BlockStore
from crypto.hashing import sha256

TXS_PER_BLOCK = 1000


def _fill(store: BlockStore, committed: int) -> None:
    parent, parent_qc = genesis("tx-filter-figures")
    for start in range(0, committed, TXS_PER_BLOCK):
        txs = tuple(b"committed-%d" % i for i in range(start, min(start + TXS_PER_BLOCK, committed)))
        block = Block(View(parent.view + 1), parent.height + 1, parent.id, ValidatorIndex(0), parent_qc, txs)
        qc = QuorumCert(block.view, block.id, ())
        store.append([block], [qc], QuorumCert(View(block.view + 1), block.id, ()))
        parent, parent_qc = block, qc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--committed", type=int, default=1_500_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = genesis("tx-filter-figures")[0]
        store = BlockStore(Path(tmp) / "blocks.sqlite", genesis_id=root.id)
        _fill(store, args.committed)
        strangers = [b"never-%d" % i for i in range(args.lookups)]
        started = time.perf_counter()
        assert not any(store.has_tx(tx) for tx in strangers)
        filtered_us = (time.perf_counter() - started) / len(strangers) * 1e6
        started = time.perf_counter()
        for tx in strangers:
            store.tx_location(sha256(tx))
        index_us = (time.perf_counter() - started) / len(strangers) * 1e6
        stats = store.committed_tx_filter()
        store.close()
    print(f"committed transactions: {args.committed:,}")
    print(f"has_tx of a stranger, through the filter: {filtered_us:.2f} µs")
    print(f"the same lookup in the SQLite index alone (hash included): {index_us:.2f} µs")
    print(f"filter: {stats['bytes'] / 2**20:.1f} MiB in {stats['layers']} layers")


if __name__ == "__main__":
    main()
