"""State sync: a new, wiped or far-behind node joins from a peer's snapshot instead of replaying
every block since genesis (`bft node --state-sync`, on a chain whose genesis says "state_sync").

Owns: `sync_from`: finding the snapshots the sources serve, trusting one, restoring the
application from its chunks (the ABCI shape: offer, then apply chunk by chunk,
`bft.app.interface.SnapshotApplication`), fetching its transaction records, and installing the
block store it starts from; the `SnapshotSource` protocol (what a source answers: the JSON and
bytes of the API's `/snapshots` and `/blocks` routes, `bft.node.snapshot_serving`), `SyncChain`
and `SyncReport`. Two drivers share it, as they share everything else: the node before it starts
(`bft.node.process`, over the other validators' APIs, `bft.node.statesync_http`) and the
simulator restarting a wiped node (over its peers' storage, `bft.campaign`).
May not: run the replica or touch the safety record (a wiped node recovers its safety state at
start as any wiped node does, `bft.core.recovery`), open files or sockets (its callers hand it
sources and a way to make a new block store); it leaves the application and the store as a node
that had executed up to the snapshot's height would have them.

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

Crash safety: the block store is a new one the caller puts in place only once `sync_from`
returned it complete (the node builds it in `blocks.sqlite.sync` and renames it over its own);
the application replaces its state atomically when the last chunk verifies (its contract). A
crash anywhere leaves either the old state or a leftover new store, which the next sync discards.
Run again, it starts over.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bft.app.interface import ApplyResult, OfferResult, Snapshot, SnapshotApplication
from bft.client import CertificateError, VerifiedBlock, verify_block
from bft.core import wire
from bft.core.blocktree import genesis as genesis_block
from bft.core.certs import Certifier
from bft.core.reputation import window_blocks
from bft.core.types import ValidatorSet
from bft.node.config import Genesis
from bft.node.errors import NodeError
from bft.node.logs import kv
from bft.node.storage import BlockStore
from bft.node.tx_set import TX_RECORD_BYTES, decode_records, state_claim
from crypto.signing import SignatureCache

log = logging.getLogger("bft.node")

# Snapshots read from one source's list, newest first; candidate heights tried in all.
MAX_OFFERS_PER_SOURCE: Final = 8
MAX_CANDIDATES: Final = 4
# Heights above a snapshot searched for the committed block that claims its state.
MAX_CLAIM_SEARCH: Final = 16
# Tries for one chunk, across the sources.
ATTEMPTS_PER_SOURCE: Final = 3


class StateSyncError(NodeError):
    """No snapshot could be trusted and restored from the sources."""


class SnapshotSource(Protocol):
    """A peer, as state sync reads it. Every answer may be hostile; None is "no answer"."""

    @property
    def name(self) -> str: ...

    def snapshot_list(self) -> object | None:
        """`GET /snapshots`' JSON document."""
        ...

    def block(self, height: int) -> object | None:
        """`GET /blocks/<height>`'s JSON document."""
        ...

    def chunk(self, height: int, format: int, index: int) -> bytes | None: ...

    def records(self, height: int, after: bytes) -> bytes | None:
        """A page of transaction records (`bft.node.tx_set`) above `after`; empty at the end."""
        ...

    def earliest_height(self) -> int | None:
        """The lowest committed height it holds (`GET /status`' `earliest_height`)."""
        ...


@dataclass(frozen=True, slots=True)
class SyncChain:
    """What of the genesis state sync verifies against."""

    chain_id: str
    validators: ValidatorSet
    commit_chain: int
    leader_reputation: bool

    @classmethod
    def of(cls, genesis: Genesis) -> SyncChain:
        return cls(genesis.chain_id, genesis.validator_set(), genesis.commit_chain, genesis.leader_reputation)

    def certifier(self) -> Certifier:
        return Certifier(self.chain_id, self.validators, genesis_block(self.chain_id)[1], SignatureCache())


@dataclass(frozen=True, slots=True)
class Offer:
    """One source's word for a snapshot (nothing of it is trusted yet)."""

    source: SnapshotSource
    snapshot: Snapshot
    app_hash: bytes
    tx_set: bytes


@dataclass(frozen=True, slots=True)
class SyncReport:
    height: int
    chunks: int
    tx_records: int
    blocks: int
    sources: tuple[str, ...]


class _Untrusted(Exception):
    """This offer cannot be used; try the next one."""


def sync_from(
    chain: SyncChain,
    app: SnapshotApplication,
    sources: Sequence[SnapshotSource],
    new_store: Callable[[], BlockStore],
    held: int = 0,
) -> tuple[SyncReport, BlockStore] | None:
    """Restore `app` from the newest snapshot above `held` (the committed height already held)
    that the `sources` serve and that can be trusted (module header), and build its block store
    with `new_store` (called once per try; each returns a new empty store of this chain with a
    transaction set). The report and the complete store, which the caller puts in place; None if
    no source offers a snapshot above `held`, or if none verifies but a source still holds the
    blocks above `held` (block sync can do it: a chain that cannot commit, because this node is
    needed for its quorum, never gets a newer snapshot claimed, and waiting for one would wait
    for ever). StateSyncError if none verifies and no source holds those blocks: try later."""
    offers = _discover(sources)
    heights = sorted({o.snapshot.height for o in offers if o.snapshot.height > held}, reverse=True)
    if not heights:
        return None
    certifier = chain.certifier()
    for height in heights[:MAX_CANDIDATES]:
        # The chain's word for this height, once for all its offers (it does not depend on them).
        try:
            trusted = _trust(chain, certifier, height, sources)
        except _Untrusted as exc:
            log.warning(kv(event="state_sync_refused", height=height, reason=exc))
            continue
        for offer in [o for o in offers if o.snapshot.height == height]:
            sharing = [o.source for o in offers if o.snapshot == offer.snapshot]
            try:
                check_offer(offer, trusted[1])
                done = _restore(app, offer, trusted, sharing, new_store)
            except _Untrusted as exc:
                log.warning(
                    kv(event="state_sync_refused", source=offer.source.name, height=height, reason=exc)
                )
                continue
            report = done[0]
            log.info(
                kv(
                    event="state_synced",
                    height=report.height,
                    chunks=report.chunks,
                    tx_records=report.tx_records,
                    blocks=report.blocks,
                )
            )
            return done
    holders = [s.name for s in sources if (e := s.earliest_height()) is not None and e <= held + 1]
    if holders:
        log.warning(
            kv(
                event="state_sync_skipped",
                reason="no snapshot verifies",
                block_sync_from=held + 1,
                holders=holders,
            )
        )
        return None
    raise StateSyncError(f"no snapshot of heights {heights[:MAX_CANDIDATES]} could be trusted and restored")


def _discover(sources: Sequence[SnapshotSource]) -> list[Offer]:
    offers: list[Offer] = []
    for source in sources:
        doc = source.snapshot_list()
        try:
            if not isinstance(doc, dict) or not isinstance(doc.get("snapshots"), list):
                raise ValueError("not a snapshot list")
            offers.extend(_offer(source, item) for item in doc["snapshots"][:MAX_OFFERS_PER_SOURCE])
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            log.info(
                kv(
                    event="state_sync_source_skipped",
                    source=source.name,
                    reason=f"{type(exc).__name__}: {exc}",
                )
            )
    return offers


def _offer(source: SnapshotSource, doc: Any) -> Offer:
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
    return Offer(source, snapshot, bytes.fromhex(doc["app_hash"]), bytes.fromhex(doc["tx_set"]))


def _verified_block(
    chain: SyncChain, certifier: Certifier, sources: Sequence[SnapshotSource], height: int
) -> VerifiedBlock:
    """Block `height`, its commit proven against the genesis validators, from the first source
    that has it; _Untrusted if none does."""
    for source in sources:
        doc = source.block(height)
        if doc is None:
            continue
        try:
            block = verify_block(doc, certifier, f"block {height}", commit_chain=chain.commit_chain)
        except CertificateError as exc:
            log.info(kv(event="state_sync_block_refused", source=source.name, height=height, reason=exc))
            continue
        if block.height == height and block.commit_qc is not None:
            return block
        log.info(kv(event="state_sync_block_refused", source=source.name, height=height, reason="not it"))
    raise _Untrusted(f"no source has block {height} with a commit proof")


def _trust(
    chain: SyncChain, certifier: Certifier, height: int, sources: Sequence[SnapshotSource]
) -> tuple[list[VerifiedBlock], bytes]:
    """The anchor blocks (the window below `height`, then its block) and the claim of the state
    at `height`, both proven committed; _Untrusted if the sources cannot prove them."""
    anchor = _verified_block(chain, certifier, sources, height)
    claim: bytes | None = None
    for above in range(height + 1, height + 1 + MAX_CLAIM_SEARCH):
        block = _verified_block(chain, certifier, sources, above)
        if block.app_height == height:
            claim = bytes.fromhex(block.app_hash)
            break
        if block.app_height > height:
            break
    if claim is None:
        raise _Untrusted(f"no committed block claims the state at height {height}")
    blocks = [anchor]
    below = window_blocks(chain.validators.n) - 1 if chain.leader_reputation else 0
    for h in range(height - 1, max(0, height - 1 - below), -1):
        block = _verified_block(chain, certifier, sources, h)
        if block.block.id != blocks[0].block.parent_id:
            raise _Untrusted(f"block {h} is not the parent of block {h + 1}")
        blocks.insert(0, block)
    return blocks, claim


def check_offer(offer: Offer, claim: bytes) -> None:
    """_Untrusted unless the offer's app hash and transaction set hash to the chain's claim for
    its height: what makes everything the application and the records are checked against
    afterwards the chain's, not the source's."""
    offered = state_claim(offer.snapshot.height, offer.app_hash, offer.tx_set)
    if offered != claim:
        raise _Untrusted(
            f"its app hash and transaction set hash to {offered.hex()[:16]}, "
            f"the chain claims {claim.hex()[:16]}"
        )


def _restore(
    app: SnapshotApplication,
    offer: Offer,
    trusted: tuple[list[VerifiedBlock], bytes],
    sources: Sequence[SnapshotSource],
    new_store: Callable[[], BlockStore],
) -> tuple[SyncReport, BlockStore]:
    snap = offer.snapshot
    blocks, claim = trusted
    store, records = _records_store(offer, sources, new_store)
    try:
        verdict = app.offer_snapshot(snap, offer.app_hash)
        if verdict is not OfferResult.ACCEPT:
            raise _Untrusted(f"the application refuses the snapshot: {verdict.name}")
        _apply_chunks(app, snap, sources)
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
    except BaseException:
        store.close()
        raise
    report = SyncReport(snap.height, snap.chunks, records, len(blocks), tuple(s.name for s in sources))
    return report, store


def _records_store(
    offer: Offer, sources: Sequence[SnapshotSource], new_store: Callable[[], BlockStore]
) -> tuple[BlockStore, int]:
    """A new block store holding the snapshot's transaction records, which rebuild the set
    digest the chain claims; each source gets one try at all of them (which of them left one
    out, or added one, only the digest at the end tells). _Untrusted if none serves the set."""
    for source in sources:
        store = new_store()
        try:
            records = _fetch_records(store, offer.snapshot.height, source)
        except BaseException:
            store.close()
            raise
        if records is not None and store.tx_set_digest() == offer.tx_set:
            return store, records
        store.close()
        log.warning(
            kv(
                event="state_sync_records_refused",
                source=source.name,
                reason="they do not rebuild the claimed set",
            )
        )
    raise _Untrusted("no source serves transaction records that rebuild the claimed set")


def _fetch_records(store: BlockStore, height: int, source: SnapshotSource) -> int | None:
    """Page through the snapshot's transaction records from `source` into `store`; how many
    there were, or None if a page did not come or broke the format, the hash order or the
    snapshot's height. Bounded: a source can send no more records than the heights hold."""
    total, after = 0, b""
    while True:
        page = source.records(height, after)
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
            return None
        store.add_tx_records(records)


def _apply_chunks(app: SnapshotApplication, snap: Snapshot, sources: Sequence[SnapshotSource]) -> None:
    """Apply every chunk in order; a chunk the application finds bad is fetched from the next
    source, a snapshot it finds bad is dropped."""
    for index in range(snap.chunks):
        for attempt in range(ATTEMPTS_PER_SOURCE * len(sources)):
            source = sources[attempt % len(sources)]
            chunk = source.chunk(snap.height, snap.format, index)
            if chunk is None:
                continue
            verdict = app.apply_snapshot_chunk(index, chunk)
            if verdict is ApplyResult.ACCEPT:
                break
            if verdict is not ApplyResult.RETRY:
                raise _Untrusted(f"the application refuses the snapshot at chunk {index}: {verdict.name}")
            log.warning(kv(event="state_sync_chunk_refused", source=source.name, chunk=index))
        else:
            raise _Untrusted(f"no source sent a chunk {index} the application accepts")
