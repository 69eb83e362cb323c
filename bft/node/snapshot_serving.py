"""What a node serves to a peer that joins by state sync: the one definition the HTTP API and the
simulator's peers share (`bft.node.statesync` reads it from either).

Owns: `served_snapshots` (the application's snapshots a peer can join from, with the app hash and
transaction set the peer checks against a committed block's claim), `records_page` (a page of a
snapshot's transaction records) and `committed_block` (a committed block in the API's JSON shape,
with its commit proof).
May not: decide anything about trust (the joining node verifies everything) or touch the network.
"""

from __future__ import annotations

from typing import Any

from bft.app.interface import SnapshotApplication
from bft.node.api_json import b64, block_json
from bft.node.storage import BlockStore
from bft.node.tx_set import MAX_RECORDS_PER_PAGE, encode_records


def served_snapshots(app: SnapshotApplication, store: BlockStore) -> list[dict[str, Any]]:
    """The snapshots a peer can join from: their height's block is held (the anchor), and their
    app hash and transaction set are recorded."""
    served = []
    for snap in app.list_snapshots():
        h = snap.height
        if not store.base < h <= store.height:
            continue
        own, tx_set = store.own_app_hash_at(h), store.tx_set_digest_at(h)
        if own is None or tx_set is None:
            continue
        served.append(
            {
                "height": h,
                "format": snap.format,
                "chunks": snap.chunks,
                "hash": snap.hash.hex(),
                "metadata": b64(snap.metadata),
                "app_hash": own.hex(),
                "tx_set": tx_set.hex(),
            }
        )
    return served


def records_page(store: BlockStore, height: int, after: bytes) -> bytes | None:
    """A page of the transaction records of the snapshot at `height` (`bft.node.tx_set`), those
    above `after` in hash order; None if the store cannot serve that height's."""
    if not store.base < height <= store.height:
        return None
    return encode_records(store.tx_records(height, after, MAX_RECORDS_PER_PAGE))


def committed_block(store: BlockStore, height: int) -> dict[str, Any] | None:
    """`GET /blocks/<height>`'s answer: the block, its QC, and the proof of its commit."""
    stored = store.block_at(height)
    if stored is None:
        return None
    return block_json(stored.block, stored.qc, stored.commit_qc, stored.commit_proof)
