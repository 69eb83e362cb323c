"""The mempool: transactions admitted but not yet committed, in arrival order.

Owns: admission (size limits, de-duplication by hash against pending and committed transactions,
the application's `check_tx`), the count and byte bounds with an explicit "full" answer, each
gossiping peer's share of them, FIFO payloads for this replica's proposals (or, under the quorum
store, for its batches), removal on commit, and the queue of newly admitted transactions to
gossip to peers.
May not: perform I/O, read clocks, spawn tasks or take locks; one trio task owns it. It decides
nothing about safety: the replica re-checks every block, this only avoids offering what would be
refused.

Under the quorum store (`quorum_store=True`) clients' transactions are not gossiped: this
validator packs them into batches it sends to every peer itself (`bft.core.quorum_store`), so
gossip would only send every transaction twice. Nothing is queued for `take_new` then, and the
payload limits are one batch's, so a transaction larger than a batch is refused at admission:
it could never be batched.

Why a share per peer: a validator's gossip is authentic, not reasonable. Without a share, one
validator could gossip a full mempool's worth of valid transactions to every honest node, and
clients would get "mempool full" everywhere until those commit (at the rate that validator's
own turns and everyone else's batches allow). Transactions a peer gossiped count against that
peer's share, in count and bytes, until they commit or are dropped; a peer at its share gets
`share-full` for its further gossip, and nothing changes for clients or other peers.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Callable, Collection, Iterable, Set
from dataclasses import dataclass


def tx_hash(tx: bytes) -> bytes:
    """A transaction's hash: SHA-256 of its bytes (DESIGN.md)."""
    return hashlib.sha256(tx).digest()


class AddStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    COMMITTED = "committed"
    REJECTED = "rejected"
    FULL = "full"
    SHARE_FULL = "share-full"  # the gossiping peer's share is full (other sources are not affected)


@dataclass(frozen=True, slots=True)
class AddResult:
    """The answer to `Mempool.add`. `reason` is set for `rejected`, `full` and `share-full`."""

    status: AddStatus
    tx_hash: bytes
    reason: str | None = None

    @property
    def ok(self) -> bool:
        """The transaction is (or already was) on its way to a block: accepted or a duplicate."""
        return self.status in (AddStatus.ACCEPTED, AddStatus.DUPLICATE)


@dataclass(frozen=True, slots=True)
class MempoolStats:
    """Current size and counters of `add` outcomes since construction."""

    count: int
    size_bytes: int
    accepted: int
    duplicate: int
    committed: int
    rejected: int
    full: int
    removed: int
    share_full: int = 0
    # Peers holding a share now, and the transactions counted against them.
    sharing_peers: int = 0
    shared_txs: int = 0


class Mempool:
    """Pending transactions keyed by hash, in insertion order; satisfies `bft.core.ports.PayloadSource`."""

    def __init__(
        self,
        check_tx: Callable[[bytes], str | None],
        committed: Callable[[bytes], bool],
        *,
        max_txs: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_tx_bytes: int = 1024 * 1024,
        batch_txs: int = 1000,
        batch_bytes: int = 1_000_000,
        peer_share_txs: int | None = None,
        peer_share_bytes: int | None = None,
        quorum_store: bool = False,
    ) -> None:
        """`check_tx(tx)` returns None to admit or a refusal reason; `committed(tx)` says whether a
        transaction is already committed. `max_txs`/`max_bytes` bound the pool, `max_tx_bytes` one
        transaction, `batch_txs`/`batch_bytes` what `payload_for` returns: one proposal's payload
        (the block limits), or with `quorum_store` one batch's (the batch limits; nothing is
        queued for gossip then: module header); `peer_share_txs` / `peer_share_bytes` what one
        gossiping peer's transactions may hold of it (default: all)."""
        peer_share_txs = max_txs if peer_share_txs is None else peer_share_txs
        peer_share_bytes = max_bytes if peer_share_bytes is None else peer_share_bytes
        for name, value in (
            ("max_txs", max_txs),
            ("max_bytes", max_bytes),
            ("max_tx_bytes", max_tx_bytes),
            ("batch_txs", batch_txs),
            ("batch_bytes", batch_bytes),
            ("peer_share_txs", peer_share_txs),
            ("peer_share_bytes", peer_share_bytes),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._check_tx = check_tx
        self._committed = committed
        self._max_txs = max_txs
        self._max_bytes = max_bytes
        # A transaction that can never fit in a payload would sit at the head of the FIFO forever.
        self._max_tx_bytes = min(max_tx_bytes, batch_bytes, max_bytes)
        self._too_large = "exceeds {limit}"
        if self._max_tx_bytes == batch_bytes < max_tx_bytes:
            self._too_large += (
                ", the most one batch holds (max_batch_bytes): it could never be batched"
                if quorum_store
                else ", the most one block holds (max_block_bytes): it could never be proposed"
            )
        self._gossip = not quorum_store
        self._batch_txs = batch_txs
        self._batch_bytes = batch_bytes
        # dicts keep insertion order: this is the FIFO, with O(1) lookup and removal by hash.
        self._pending: dict[bytes, bytes] = {}
        # Admitted but not yet handed to gossip; a subset of `_pending`, so bounded by it.
        self._unsent: dict[bytes, None] = {}
        self._size_bytes = 0
        self._counts = dict.fromkeys(AddStatus, 0)
        self._removed = 0
        self._share_txs = peer_share_txs
        self._share_bytes = peer_share_bytes
        # The peer each gossiped pending transaction counts against (a subset of `_pending`), and
        # each peer's (count, bytes); a peer's entry goes when its count reaches zero.
        self._owner: dict[bytes, int] = {}
        self._shares: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def size_bytes(self) -> int:
        """Total bytes of the pending transactions."""
        return self._size_bytes

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._pending

    def oldest_hashes(self, limit: int) -> list[bytes]:
        """The hashes of at most `limit` pending transactions, oldest first (`GET /unconfirmed_txs`)."""
        return list(itertools.islice(self._pending, max(0, limit)))

    def add(self, tx: bytes, *, gossip: bool = True) -> AddResult:
        """Admit `tx` (from a client or a peer). Never evicts: when the bounds are reached the
        answer is `full` and the pool is unchanged. With `gossip`, an accepted transaction is
        queued for `take_new` (a peer's transactions are not: it sent them to everyone), unless
        the mempool runs under the quorum store (never then)."""
        h = tx_hash(tx)
        result = self._admit(tx, h, None)
        self._counts[result.status] += 1
        if result.status is AddStatus.ACCEPTED:
            self._keep(h, tx, gossip and self._gossip)
        return result

    def add_from_peer(self, peer: int, tx: bytes) -> AddResult:
        """Admit `tx` gossiped by `peer` (not queued for `take_new`: it sent it to everyone),
        counted against `peer`'s share until it commits or is dropped; `share-full`, the pool
        unchanged, if it would take the peer past its share."""
        h = tx_hash(tx)
        result = self._admit(tx, h, peer)
        self._counts[result.status] += 1
        if result.status is AddStatus.ACCEPTED:
            self._keep(h, tx, gossip=False)
            count, size = self._shares.get(peer, (0, 0))
            self._shares[peer] = (count + 1, size + len(tx))
            self._owner[h] = peer
        return result

    def share_full(self, peer: int) -> bool:
        """Whether `peer`'s share has no room left for any transaction."""
        count, size = self._shares.get(peer, (0, 0))
        return count >= self._share_txs or size >= self._share_bytes

    def share_of(self, peer: int) -> tuple[int, int]:
        """The transactions and bytes counted against `peer`'s share now."""
        return self._shares.get(peer, (0, 0))

    def _keep(self, h: bytes, tx: bytes, gossip: bool) -> None:
        self._pending[h] = tx
        if gossip:
            self._unsent[h] = None
        self._size_bytes += len(tx)

    def _admit(self, tx: bytes, h: bytes, peer: int | None) -> AddResult:
        # Cheap checks first; the application's check_tx runs only for a transaction that would fit.
        if not tx:
            return AddResult(AddStatus.REJECTED, h, "empty transaction")
        if len(tx) > self._max_tx_bytes:
            detail = self._too_large.format(limit=self._max_tx_bytes)
            return AddResult(AddStatus.REJECTED, h, f"transaction of {len(tx)} bytes {detail}")
        if h in self._pending:
            return AddResult(AddStatus.DUPLICATE, h)
        # Before the committed lookup (a SQLite query): a flooding peer past its share costs a
        # dict lookup per transaction, nothing more.
        if peer is not None:
            count, size = self._shares.get(peer, (0, 0))
            if count >= self._share_txs or size + len(tx) > self._share_bytes:
                detail = f"peer {peer}'s share is full: {count} transactions, {size} bytes"
                return AddResult(AddStatus.SHARE_FULL, h, detail)
        if self._committed(tx):
            return AddResult(AddStatus.COMMITTED, h)
        if len(self._pending) >= self._max_txs:
            return AddResult(AddStatus.FULL, h, f"mempool full: {self._max_txs} transactions")
        if self._size_bytes + len(tx) > self._max_bytes:
            return AddResult(AddStatus.FULL, h, f"mempool full: {self._max_bytes} bytes")
        reason = self._check_tx(tx)
        if reason is not None:
            return AddResult(AddStatus.REJECTED, h, reason)
        return AddResult(AddStatus.ACCEPTED, h)

    def payload_for(self, view: int, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        """The oldest pending transactions not in `exclude` (transactions, not hashes) and not
        committed, at most `batch_txs` of them and `batch_bytes` in total, stopping at the first
        that would go over the bytes. They stay pending (the proposal or the batch may fail);
        committed ones met on the way are dropped, they can never be proposed.

        What the result is bounded by, and why that is all either caller takes: without the
        quorum store the proposer (`bft.core.proposer`) cuts it to the block limits with
        `fit_limits`, and `batch_txs`/`batch_bytes` are those limits; under it only the quorum
        store calls this (`QuorumStore.make_batches`, with `exclude` every transaction in one of
        our uncommitted batches, possibly thousands) and cuts the result to one batch with
        `fit_limits`, and `batch_txs`/`batch_bytes` are the batch limits (`quorum_store=True`).
        `fit_limits` takes the longest prefix within the limits, as this stops at the first
        transaction over them, so a caller takes the whole result; a prefix bounded by the block
        limits instead would be as correct but cost a committed lookup (a SQLite query in the
        node) for up to max_block_txs transactions of which a batch takes max_batch_txs.

        Cost: one set lookup per excluded transaction before the result's last one, and one
        committed lookup per transaction returned (or dropped as committed); never one per
        pending transaction beyond. Excluded ones are skipped before the committed lookup, and
        `exclude` is used as it is when it is a set (the core passes one: no copy of thousands)."""
        excluded = exclude if isinstance(exclude, Set) else frozenset(exclude)
        batch: list[bytes] = []
        batch_size = 0
        stale: list[bytes] = []
        for h, tx in self._pending.items():
            if len(batch) >= self._batch_txs:
                break
            if tx in excluded:
                continue
            if self._committed(tx):
                stale.append(h)
                continue
            # Stop rather than skip: later, smaller transactions must not overtake the head forever.
            if batch_size + len(tx) > self._batch_bytes:
                break
            batch.append(tx)
            batch_size += len(tx)
        for h in stale:
            self._drop(h)
        return tuple(batch)

    def remove_committed(self, txs: Iterable[bytes]) -> int:
        """Forget the committed `txs` (matched by hash); returns how many were pending."""
        removed = 0
        for tx in txs:
            if self._drop(tx_hash(tx)):
                removed += 1
        return removed

    def _drop(self, h: bytes) -> bool:
        tx = self._pending.pop(h, None)
        if tx is None:
            return False
        self._unsent.pop(h, None)
        self._size_bytes -= len(tx)
        self._removed += 1
        peer = self._owner.pop(h, None)
        if peer is not None:
            count, size = self._shares[peer]
            if count == 1:
                del self._shares[peer]
            else:
                self._shares[peer] = (count - 1, size - len(tx))
        return True

    def take_new(self, max_txs: int) -> list[bytes]:
        """Up to `max_txs` transactions admitted since they were last taken, oldest first, for gossip.
        Each admitted transaction is returned at most once (none once it is committed)."""
        hashes: list[bytes] = []
        for h in self._unsent:
            if len(hashes) >= max_txs:
                break
            hashes.append(h)
        for h in hashes:
            del self._unsent[h]
        return [self._pending[h] for h in hashes]

    def stats(self) -> MempoolStats:
        return MempoolStats(
            count=len(self._pending),
            size_bytes=self._size_bytes,
            accepted=self._counts[AddStatus.ACCEPTED],
            duplicate=self._counts[AddStatus.DUPLICATE],
            committed=self._counts[AddStatus.COMMITTED],
            rejected=self._counts[AddStatus.REJECTED],
            full=self._counts[AddStatus.FULL],
            removed=self._removed,
            share_full=self._counts[AddStatus.SHARE_FULL],
            sharing_peers=len(self._shares),
            shared_txs=len(self._owner),
        )
