"""The committed-transaction filter: never a false negative, few false positives, bounded growth;
and the block store answers `has_tx` through it, across reopen."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bft.core.blocktree import genesis
from bft.core.messages import Block, QuorumCert
from bft.core.types import ValidatorIndex, View
from bft.node.storage import BlockStore
from bft.node.tx_filter import FIRST_CAPACITY, FIRST_FALSE_POSITIVE_RATE, TIGHTENING, CommittedTxFilter
from crypto.hashing import sha256


def _digests(tag: bytes, count: int) -> list[bytes]:
    return [sha256(tag + i.to_bytes(8, "little")) for i in range(count)]


def test_every_added_hash_is_found_across_layers_and_strangers_rarely_are() -> None:
    f = CommittedTxFilter()
    added = _digests(b"committed", 6 * FIRST_CAPACITY)
    for d in added:
        f.add(d)
    stats = f.statistics()
    assert stats["hashes"] == len(added) and stats["layers"] >= 2, stats
    assert all(f.might_contain(d) for d in added), "no false negatives"
    strangers = _digests(b"never", 50_000)
    rate = sum(f.might_contain(d) for d in strangers) / len(strangers)
    assert rate < FIRST_FALSE_POSITIVE_RATE / (1 - TIGHTENING), f"false-positive rate {rate}"
    assert stats["bytes"] <= 10 * len(added), f"{stats['bytes']} bytes for {len(added)} hashes"


@settings(max_examples=50, deadline=None)
@given(st.sets(st.binary(min_size=32, max_size=32), max_size=300))
def test_no_false_negative_for_any_set_of_hashes(hashes: set[bytes]) -> None:
    f = CommittedTxFilter()
    for h in hashes:
        f.add(h)
    assert all(f.might_contain(h) for h in hashes)


def _block(parent: Block, parent_qc: QuorumCert, txs: tuple[bytes, ...]) -> Block:
    return Block(View(parent.view + 1), parent.height + 1, parent.id, ValidatorIndex(0), parent_qc, txs)


def test_the_block_store_answers_has_tx_through_the_filter_and_rebuilds_it_on_reopen(tmp_path: Path) -> None:
    root, root_qc = genesis("filter-test")
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path, genesis_id=root.id)
    txs = tuple(b"tx-%d" % i for i in range(2000))
    block = _block(root, root_qc, txs)
    qc = QuorumCert(block.view, block.id, ())
    store.append([block], [qc], QuorumCert(View(block.view + 1), block.id, ()))
    assert all(store.has_tx(tx) for tx in txs)
    assert not any(store.has_tx(b"other-%d" % i) for i in range(2000))
    assert store.committed_tx_filter()["hashes"] == len(txs)
    store.close()
    reopened = BlockStore(path, genesis_id=root.id)
    assert reopened.committed_tx_filter()["hashes"] == len(txs), "rebuilt from the index"
    assert all(reopened.has_tx(tx) for tx in txs)
    assert not reopened.has_tx(b"other")
    reopened.close()
