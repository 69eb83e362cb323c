"""A node's storage started from a snapshot (what `bft.node.statesync` does, without the network):
the ledger restored from a peer's snapshot, the block store from its transaction records and an
anchor block, then both execute the same further blocks as the peer with identical claims, skip
the same repeated transactions, and survive a reopen.

Volume: 400 blocks of 40 puts over 3,000 keys (a state of several chunks of 80 KiB), a snapshot at
height 300, transaction records served in pages of 1,000.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from core_helpers import GENESIS_BLOCK, make_block, make_qc, qc_for

from bft.app.interface import ApplyResult, OfferResult
from bft.app.kv import KeyValueLedger, put_tx
from bft.core.actions import Commit
from bft.core.messages import Block
from bft.node.errors import StorageError
from bft.node.executor import Executor
from bft.node.storage import BlockStore
from bft.node.tx_set import decode_records, encode_records, state_claim

HEIGHTS = 400
SNAPSHOT_AT = 300
TXS_PER_BLOCK = 40
KEYS = 3000


def _chain() -> list[Block]:
    blocks: list[Block] = []
    parent = GENESIS_BLOCK
    for h in range(1, HEIGHTS + 1):
        txs = tuple(
            put_tx(f"k{(h * 7 + i * 13) % KEYS}", f"v{h}.{i}" + "x" * (i * 11)) for i in range(TXS_PER_BLOCK)
        )
        if h % 50 == 0:
            txs += (blocks[h // 2 - 1].txs[0],)  # a repeat of a transaction committed long before
        parent = make_block(parent, parent.view + 1, txs=txs)
        blocks.append(parent)
    return blocks


BLOCKS = _chain()


def _commit(blocks: list[Block]) -> Commit:
    return Commit(
        tuple(blocks), tuple(qc_for(b) for b in blocks), make_qc(blocks[-1].id, blocks[-1].view + 2)
    )


class Storage:
    def __init__(self, home: Path) -> None:
        home.mkdir(exist_ok=True)
        self.home = home
        self.app = KeyValueLedger(
            home / "app.sqlite", hash_version=2, snapshot_interval=SNAPSHOT_AT, snapshot_chunk_bytes=80 * 1024
        )
        self.store = BlockStore(
            home / "blocks.sqlite", genesis_id=GENESIS_BLOCK.id, tx_set=True, index_bounds=(64, 16)
        )
        self.executor = Executor(self.app, self.store, state_claims=True)

    def close(self) -> None:
        self.app.close()
        self.store.close()


@pytest.fixture
def peer(tmp_path: Path) -> Storage:
    node = Storage(tmp_path / "peer")
    node.executor.start()
    for start in range(0, HEIGHTS, 2):
        node.executor.on_commit(_commit(BLOCKS[start : start + 2]))
    return node


def test_a_store_and_ledger_started_from_a_snapshot_go_on_as_the_peer_does(
    peer: Storage, tmp_path: Path
) -> None:
    (snap,) = [s for s in peer.app.list_snapshots() if s.height == SNAPSHOT_AT]
    assert snap.chunks >= 3
    own, digest = peer.store.own_app_hash_at(SNAPSHOT_AT), peer.store.tx_set_digest_at(SNAPSHOT_AT)
    assert own is not None and digest is not None
    claim = peer.store.app_hash_at(SNAPSHOT_AT)
    assert claim == state_claim(SNAPSHOT_AT, own, digest)

    joiner = Storage(tmp_path / "joiner")
    assert joiner.app.offer_snapshot(snap, own) is OfferResult.ACCEPT
    for i in range(snap.chunks):
        chunk = peer.app.load_snapshot_chunk(snap.height, snap.format, i)
        assert chunk is not None
        assert joiner.app.apply_snapshot_chunk(i, chunk) is ApplyResult.ACCEPT
    after, pages = b"", 0
    while page := encode_records(peer.store.tx_records(SNAPSHOT_AT, after, 1000)):
        records = list(decode_records(page))
        joiner.store.add_tx_records(records)
        after, pages = records[-1][0], pages + 1
    assert pages > 5 and joiner.store.tx_set_digest() == digest
    anchor = peer.store.block_at(SNAPSHOT_AT)
    assert anchor is not None
    joiner.store.install_anchor(
        [anchor.block], [anchor.qc], anchor.commit_qc, anchor.commit_proof, claim, own
    )
    with pytest.raises(StorageError, match="empty block store"):
        joiner.store.install_anchor(
            [anchor.block], [anchor.qc], anchor.commit_qc, anchor.commit_proof, claim, own
        )

    assert joiner.executor.start() == 0, "nothing to replay: the ledger is at the anchor"
    assert joiner.store.base == SNAPSHOT_AT - 1 and joiner.store.height == SNAPSHOT_AT
    for start in range(SNAPSHOT_AT, HEIGHTS, 2):
        joiner.executor.on_commit(_commit(BLOCKS[start : start + 2]))
    for h in range(SNAPSHOT_AT, HEIGHTS + 1):
        assert joiner.store.app_hash_at(h) == peer.store.app_hash_at(h), f"claims differ at {h}"
    # The repeat at height 350 of a transaction committed at height 174: skipped as the peer does.
    repeated = BLOCKS[349]
    assert joiner.store.repeated_positions(repeated) == peer.store.repeated_positions(repeated) != frozenset()
    joiner.close()
    reopened = Storage(tmp_path / "joiner")
    assert reopened.executor.start() == 0
    assert reopened.store.app_hash_at(HEIGHTS) == peer.store.app_hash_at(HEIGHTS)
    reopened.close()
    peer.close()


def test_a_record_missing_from_the_set_changes_its_digest(peer: Storage, tmp_path: Path) -> None:
    records = peer.store.tx_records(SNAPSHOT_AT, b"", 10**6)
    whole = Storage(tmp_path / "whole")
    whole.store.add_tx_records(records)
    short = Storage(tmp_path / "short")
    short.store.add_tx_records(records[1:])
    assert whole.store.tx_set_digest() == peer.store.tx_set_digest_at(SNAPSHOT_AT)
    assert short.store.tx_set_digest() != whole.store.tx_set_digest()
    with pytest.raises(StorageError):
        short.store.add_tx_records(records[1:2])  # a hash indexed twice
    for node in (whole, short, peer):
        node.close()
