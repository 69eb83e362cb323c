"""State sync: a new, wiped or far-behind node joins from a peer's snapshot instead of replaying
every block since genesis (`bft node --state-sync`, on a chain whose genesis says "state_sync").

Owns: `sync_state`: finding the snapshots the other validators serve (`GET /snapshots`), trusting
one, restoring the application from its chunks (the ABCI shape: offer, then apply chunk by chunk,
`bft.app.interface.SnapshotApplication`), fetching its transaction records, and installing the
block store it starts from; `SyncReport`.
May not: run the replica or touch the safety record (a wiped node recovers its safety state at
start as any wiped node does, `bft.core.recovery`); it runs before the node starts and leaves
the node's files as a node that had executed up to the snapshot's height would.

What is trusted, and why it is enough. Nothing a peer sends is believed because the peer sent it:
- The snapshot's height A and its anchor block come from `GET /blocks/A`, verified as the client
  verifies any block (`bft.client.verify_block`): its commit certificate, 2f+1 genesis
  validators' signatures over a commit chain above it. So A's block is on the one committed chain.
- The state the snapshot must reproduce is the claim of a committed block above A whose app
  height is A (`bft.core.app_state`): honest validators voted for it only after executing A
  themselves and getting that hash. A snapshot whose height no committed block claims is skipped.
- On a state-sync chain the claim is `state_claim(A, app hash, transaction set digest)`
  (`bft.node.tx_set`): the peer's app hash and set digest must hash to it, the application then
  checks every chunk and the state they rebuild against that app hash, and the records must
  rebuild that set digest. A peer that lies about any of it is caught before anything is used;
  its snapshot is dropped and the next candidate tried.
- Under leader reputation the leader schedule reads the window of committed blocks below the tip,
  so the blocks below A in that window come too, each verified the same way and hash-linked to A.

Crash safety: the block store is built in `blocks.sqlite.sync` and renamed over the node's block
store only once complete and closed; the application replaces its state atomically when the last
chunk verifies (its contract). A crash anywhere leaves either the old files or a leftover `.sync`
file, which the next sync removes first. Run again, it starts over.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from bft.app.interface import (
    MAX_SNAPSHOT_CHUNK_BYTES,
    ApplyResult,
    OfferResult,
    Snapshot,
    SnapshotApplication,
)
from bft.client import AsyncClient, ClientError, VerifiedBlock
from bft.core import wire
from bft.core.blocktree import genesis as genesis_block
from bft.core.reputation import window_blocks
from bft.node.config import Genesis, NodeConfig
from bft.node.errors import NodeError
from bft.node.logs import kv
from bft.node.storage import BLOCKS_FILE, BlockStore
from bft.node.tx_set import MAX_RECORDS_PER_PAGE, TX_RECORD_BYTES, decode_records, state_claim

log = logging.getLogger("bft.node")

REQUEST_TIMEOUT_S: Final = 15.0
# Snapshots read from one server's list, newest first; candidates tried in all.
MAX_OFFERS_PER_SERVER: Final = 8
MAX_CANDIDATES: Final = 4
# Heights above a snapshot searched for the committed block that claims its state.
MAX_CLAIM_SEARCH: Final = 16
# Tries for one chunk, across the servers.
ATTEMPTS_PER_SERVER: Final = 3
SYNC_SUFFIX: Final = ".sync"
MAX_PAGE_BYTES: Final = MAX_RECORDS_PER_PAGE * TX_RECORD_BYTES
MAX_LIST_BYTES: Final = 4 * 1024 * 1024


class StateSyncError(NodeError):
    """No snapshot could be trusted and restored from the servers."""


@dataclass(frozen=True, slots=True)
class Offer:
    """One server's word for a snapshot (nothing of it is trusted yet)."""

    server: str
    snapshot: Snapshot
    app_hash: bytes
    tx_set: bytes


@dataclass(frozen=True, slots=True)
class SyncReport:
    height: int
    chunks: int
    tx_records: int
    blocks: int
    servers: tuple[str, ...]


def api_servers(config: NodeConfig, genesis: Genesis) -> list[str]:
    """The other validators' API URLs, from the genesis."""
    return [f"http://{v.api}" for v in genesis.validators if v.index != config.index]


async def sync_state(
    config: NodeConfig, genesis: Genesis, app: SnapshotApplication, servers: Sequence[str], held: int = 0
) -> SyncReport | None:
    """Restore `app` and the node's block store from the newest snapshot the `servers` serve that
    can be trusted (module header), if one is above `held` (the node's committed height; None
    if none is). StateSyncError if none can be trusted and restored."""
    if not genesis.state_sync:
        raise StateSyncError(
            f'the genesis of {genesis.chain_id} does not say "state_sync": nothing to join from'
        )
    offers = await _discover(servers)
    if not offers:
        raise StateSyncError(f"none of {len(servers)} servers offers a snapshot ({', '.join(servers)})")
    heights = sorted({o.snapshot.height for o in offers if o.snapshot.height > held}, reverse=True)
    if not heights:
        return None
    heights = heights[:MAX_CANDIDATES]
    for height in heights:
        for offer in [o for o in offers if o.snapshot.height == height]:
            sharing = [o.server for o in offers if o.snapshot == offer.snapshot]
            try:
                report = await _restore(config, genesis, app, offer, sharing)
            except _Untrusted as exc:
                log.warning(kv(event="state_sync_refused", server=offer.server, height=height, reason=exc))
                continue
            log.info(
                kv(
                    event="state_synced",
                    height=report.height,
                    chunks=report.chunks,
                    tx_records=report.tx_records,
                    blocks=report.blocks,
                )
            )
            return report
    raise StateSyncError(f"no snapshot of heights {heights} could be trusted and restored (see the log)")


class _Untrusted(Exception):
    """This offer cannot be used; try the next one."""


async def _discover(servers: Sequence[str]) -> list[Offer]:
    offers: list[Offer] = []
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        for server in servers:
            body = await _get_from(http, server, "/snapshots", "the snapshot list", MAX_LIST_BYTES)
            if body is None:
                continue
            try:
                docs = json.loads(body)["snapshots"]
                offers.extend(_offer(server, doc) for doc in docs[:MAX_OFFERS_PER_SERVER])
            except (binascii.Error, ValueError, KeyError, TypeError) as exc:
                log.info(
                    kv(
                        event="state_sync_server_skipped",
                        server=server,
                        reason=f"{type(exc).__name__}: {exc}",
                    )
                )
    return offers


def _offer(server: str, doc: Any) -> Offer:
    """ValueError, KeyError or TypeError for anything malformed."""
    ints = [doc[k] for k in ("height", "format", "chunks")]
    if any(type(i) is not int or i < 0 for i in ints):
        raise ValueError("height, format and chunks must be non-negative integers")
    snapshot = Snapshot(
        height=ints[0],
        format=ints[1],
        chunks=ints[2],
        hash=bytes.fromhex(doc["hash"]),
        metadata=base64.b64decode(doc["metadata"], validate=True),
    )
    return Offer(server, snapshot, bytes.fromhex(doc["app_hash"]), bytes.fromhex(doc["tx_set"]))


async def _verified_block(genesis: Genesis, servers: Sequence[str], height: int) -> VerifiedBlock:
    """Block `height`, its commit proven against the genesis validators, from the first server
    that has it; _Untrusted if none does."""
    for server in servers:
        async with AsyncClient(server, genesis, timeout_s=REQUEST_TIMEOUT_S) as client:
            try:
                block = await client.block(height)
            except ClientError as exc:
                log.info(kv(event="state_sync_block_refused", server=server, height=height, reason=exc))
                continue
        if block is not None and block.commit_qc is not None:
            return block
    raise _Untrusted(f"no server has block {height} with a commit proof")


async def _trust(genesis: Genesis, offer: Offer, servers: Sequence[str]) -> tuple[list[VerifiedBlock], bytes]:
    """The anchor blocks (the window below the snapshot's height, then its block) and the claim
    of its state, both proven committed; _Untrusted if the offer does not hash to that claim."""
    height = offer.snapshot.height
    anchor = await _verified_block(genesis, servers, height)
    claim: bytes | None = None
    for above in range(height + 1, height + 1 + MAX_CLAIM_SEARCH):
        block = await _verified_block(genesis, servers, above)
        if block.app_height == height:
            claim = bytes.fromhex(block.app_hash)
            break
        if block.app_height > height:
            break
    if claim is None:
        raise _Untrusted(f"no committed block claims the state at height {height}")
    offered = state_claim(height, offer.app_hash, offer.tx_set)
    if offered != claim:
        raise _Untrusted(
            f"its app hash and transaction set hash to {offered.hex()[:16]}, "
            f"the chain claims {claim.hex()[:16]}"
        )
    blocks = [anchor]
    below = window_blocks(len(genesis.validators)) - 1 if genesis.leader_reputation else 0
    for h in range(height - 1, max(0, height - 1 - below), -1):
        block = await _verified_block(genesis, servers, h)
        if block.block.id != blocks[0].block.parent_id:
            raise _Untrusted(f"block {h} is not the parent of block {h + 1}")
        blocks.insert(0, block)
    return blocks, claim


async def _restore(
    config: NodeConfig, genesis: Genesis, app: SnapshotApplication, offer: Offer, servers: Sequence[str]
) -> SyncReport:
    snap = offer.snapshot
    blocks, claim = await _trust(genesis, offer, servers)
    path = config.data_dir / (BLOCKS_FILE + SYNC_SUFFIX)
    store, records = await _records_store(genesis, path, offer, servers)
    try:
        verdict = app.offer_snapshot(snap, offer.app_hash)
        if verdict is not OfferResult.ACCEPT:
            raise _Untrusted(f"the application refuses the snapshot: {verdict.name}")
        await _fetch_chunks(app, snap, servers)
        top = blocks[-1]
        assert top.commit_qc is not None
        store.install_anchor(
            [b.block for b in blocks],
            [b.qc for b in blocks],
            top.commit_qc,
            top.commit_proof,
            claim,
            offer.app_hash,
        )
    finally:
        store.close()
    _replace_store(path, config.data_dir / BLOCKS_FILE)
    return SyncReport(snap.height, snap.chunks, records, len(blocks), tuple(servers))


async def _records_store(
    genesis: Genesis, path: Path, offer: Offer, servers: Sequence[str]
) -> tuple[BlockStore, int]:
    """A new block store at `path` holding the snapshot's transaction records, which rebuild the
    set digest the chain claims; each server gets one try at all of them (which of them left one
    out, or added one, only the digest at the end tells). _Untrusted if none serves the set."""
    for server in servers:
        _remove_store(path)
        store = BlockStore(
            path,
            genesis_id=genesis_block(genesis.chain_id)[0].id,
            commit_chain=genesis.commit_chain,
            tx_set=True,
        )
        try:
            records = await _fetch_records(store, offer.snapshot.height, server)
        except BaseException:
            store.close()
            raise
        if records is not None and store.tx_set_digest() == offer.tx_set:
            return store, records
        store.close()
        log.warning(
            kv(
                event="state_sync_records_refused",
                server=server,
                reason="they do not rebuild the claimed set",
            )
        )
    raise _Untrusted("no server serves transaction records that rebuild the claimed set")


async def _get_from(
    http: httpx.AsyncClient, server: str, path: str, what: str, limit_bytes: int
) -> bytes | None:
    """GET `path` from `server`, at most `limit_bytes` of body (a server that sends more is cut
    off: memory stays bounded whatever it sends); None (logged) if it fails."""
    body = bytearray()
    try:
        async with http.stream("GET", f"{server}{path}") as response:
            response.raise_for_status()
            async for piece in response.aiter_bytes():
                body += piece
                if len(body) > limit_bytes:
                    raise _TooLarge(f"more than {limit_bytes} bytes")
    except (httpx.HTTPError, _TooLarge) as exc:
        log.info(kv(event="state_sync_fetch_failed", server=server, what=what, reason=exc))
        return None
    return bytes(body)


class _TooLarge(Exception):
    pass


async def _fetch_records(store: BlockStore, height: int, server: str) -> int | None:
    """Page through the snapshot's transaction records from `server` into `store`; how many
    there were, or None if a page did not come or broke the format, the hash order or the
    snapshot's height."""
    total, after = 0, b""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        while True:
            path = f"/snapshots/{height}/txs?after={after.hex()}"
            page = await _get_from(http, server, path, "transaction records", MAX_PAGE_BYTES)
            if page is None or len(page) % TX_RECORD_BYTES:
                return None
            records = list(decode_records(page))
            if not records:
                return total
            for tx_hash, h, _ in records:
                if tx_hash <= after or not 1 <= h <= height:
                    return None
                after = tx_hash
            total += len(records)
            if total > height * wire.MAX_TXS_PER_BLOCK:
                return None  # more transactions than the heights can hold: an endless stream
            store.add_tx_records(records)


async def _fetch_chunks(app: SnapshotApplication, snap: Snapshot, servers: Sequence[str]) -> None:
    """Apply every chunk in order; a chunk the application finds bad is fetched from the next
    server, a snapshot it finds bad is dropped."""
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as http:
        for index in range(snap.chunks):
            path = f"/snapshots/{snap.height}/{snap.format}/{index}"
            for attempt in range(ATTEMPTS_PER_SERVER * len(servers)):
                server = servers[attempt % len(servers)]
                chunk = await _get_from(http, server, path, f"chunk {index}", MAX_SNAPSHOT_CHUNK_BYTES)
                if chunk is None:
                    continue
                verdict = app.apply_snapshot_chunk(index, chunk)
                if verdict is ApplyResult.ACCEPT:
                    break
                if verdict is not ApplyResult.RETRY:
                    raise _Untrusted(f"the application refuses the snapshot at chunk {index}: {verdict.name}")
                log.warning(kv(event="state_sync_chunk_refused", server=server, chunk=index))
            else:
                raise _Untrusted(f"no server sent a chunk {index} the application accepts")


def _remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _replace_store(synced: Path, target: Path) -> None:
    """Put the synced (closed, so checkpointed) store in place of the node's, durably."""
    fd = os.open(synced, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _remove_store(target)
    os.replace(synced, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
