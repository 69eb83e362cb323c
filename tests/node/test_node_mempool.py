"""Unit tests of the mempool: admission, bounds, FIFO batches, removal on commit, gossip queue."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bft.core.ports import PayloadSource
from bft.core.types import View
from bft.node.mempool import AddResult, AddStatus, Mempool, tx_hash

V = View(1)


def admit_all(tx: bytes) -> str | None:
    return None


def make(
    committed: set[bytes] | None = None,
    check_tx: Callable[[bytes], str | None] = admit_all,
    *,
    quorum_store: bool = False,
    **limits: int,
) -> Mempool:
    done = committed if committed is not None else set()
    return Mempool(check_tx, done.__contains__, quorum_store=quorum_store, **limits)


def txs(n: int, size: int = 4) -> list[bytes]:
    return [f"{i:0{size}d}".encode() for i in range(n)]


def test_tx_hash_is_sha256() -> None:
    assert tx_hash(b"abc") == hashlib.sha256(b"abc").digest()


def test_satisfies_payload_source() -> None:
    source: PayloadSource = make()
    assert source.payload_for(V, ()) == ()


def test_batch_is_fifo_and_not_removed() -> None:
    pool = make()
    items = [b"c", b"a", b"b", b"zz"]
    for tx in items:
        assert pool.add(tx).status is AddStatus.ACCEPTED
    assert pool.payload_for(V, ()) == tuple(items)
    # A proposal may fail: the same batch is offered again.
    assert pool.payload_for(View(2), ()) == tuple(items)
    assert len(pool) == 4 and pool.size_bytes == 5


def test_batch_bounded_by_count() -> None:
    pool = make(batch_txs=3)
    items = txs(5)
    for tx in items:
        pool.add(tx)
    assert pool.payload_for(V, ()) == tuple(items[:3])


def test_batch_bounded_by_bytes_and_keeps_fifo() -> None:
    pool = make(batch_bytes=10)
    for tx in (b"aaaa", b"bbbb", b"cccc", b"d"):
        pool.add(tx)
    # b"cccc" does not fit; the smaller b"d" behind it must not overtake it.
    assert pool.payload_for(V, ()) == (b"aaaa", b"bbbb")
    pool.remove_committed([b"aaaa", b"bbbb"])
    assert pool.payload_for(V, ()) == (b"cccc", b"d")


def test_tx_larger_than_a_batch_is_rejected() -> None:
    pool = make(batch_bytes=8, max_tx_bytes=100)
    result = pool.add(b"x" * 9)
    assert result.status is AddStatus.REJECTED
    assert result.reason is not None and "exceeds 8" in result.reason
    assert len(pool) == 0


def test_exclude_respected() -> None:
    pool = make()
    for tx in (b"a", b"b", b"c", b"d"):
        pool.add(tx)
    assert pool.payload_for(V, [b"b", b"d"]) == (b"a", b"c")
    assert pool.payload_for(V, {b"a", b"c"}) == (b"b", b"d")
    assert len(pool) == 4


def test_excluded_txs_do_not_use_the_batch() -> None:
    pool = make(batch_txs=2)
    for tx in (b"a", b"b", b"c"):
        pool.add(tx)
    assert pool.payload_for(V, {b"a"}) == (b"b", b"c")


def test_duplicate_refused() -> None:
    pool = make()
    first = pool.add(b"tx")
    again = pool.add(b"tx")
    assert first == AddResult(AddStatus.ACCEPTED, tx_hash(b"tx"))
    assert again.status is AddStatus.DUPLICATE and again.ok
    assert len(pool) == 1 and pool.size_bytes == 2
    assert pool.payload_for(V, ()) == (b"tx",)


def test_committed_refused() -> None:
    pool = make(committed={b"old"})
    result = pool.add(b"old")
    assert result.status is AddStatus.COMMITTED and not result.ok
    assert len(pool) == 0 and not pool.contains(tx_hash(b"old"))


def test_committed_later_is_never_proposed_and_dropped() -> None:
    done: set[bytes] = set()
    pool = make(committed=done)
    pool.add(b"a")
    pool.add(b"b")
    done.add(b"a")  # committed through block sync, without remove_committed
    assert pool.payload_for(V, ()) == (b"b",)
    assert len(pool) == 1 and not pool.contains(tx_hash(b"a"))


def test_check_tx_rejection_carries_reason() -> None:
    seen: list[bytes] = []

    def check(tx: bytes) -> str | None:
        seen.append(tx)
        return "not json" if tx.startswith(b"!") else None

    pool = make(check_tx=check)
    bad = pool.add(b"!oops")
    assert bad.status is AddStatus.REJECTED and bad.reason == "not json"
    assert pool.add(b"{}").status is AddStatus.ACCEPTED
    assert seen == [b"!oops", b"{}"]
    assert pool.payload_for(V, ()) == (b"{}",)


def test_empty_and_oversized_rejected() -> None:
    pool = make(max_tx_bytes=4)
    assert pool.add(b"").status is AddStatus.REJECTED
    assert pool.add(b"12345").status is AddStatus.REJECTED
    assert pool.add(b"1234").status is AddStatus.ACCEPTED
    assert pool.stats().rejected == 2


def test_full_by_count_then_room_after_commit() -> None:
    pool = make(max_txs=3)
    items = txs(4)
    for tx in items[:3]:
        assert pool.add(tx).status is AddStatus.ACCEPTED
    full = pool.add(items[3])
    assert full.status is AddStatus.FULL and full.reason is not None and "full" in full.reason
    assert len(pool) == 3 and not pool.contains(tx_hash(items[3]))
    # Never evicts: the pending ones are untouched.
    assert pool.payload_for(V, ()) == tuple(items[:3])
    assert pool.remove_committed([items[0]]) == 1
    assert pool.add(items[3]).status is AddStatus.ACCEPTED
    assert pool.payload_for(V, ()) == tuple(items[1:])


def test_full_by_bytes_then_room_after_commit() -> None:
    pool = make(max_bytes=10, max_tx_bytes=10)
    assert pool.add(b"aaaaaa").status is AddStatus.ACCEPTED
    assert pool.add(b"bbbbb").status is AddStatus.FULL
    assert pool.add(b"cccc").status is AddStatus.ACCEPTED  # exactly at the bound
    assert pool.size_bytes == 10
    assert pool.remove_committed([b"aaaaaa"]) == 1
    assert pool.add(b"bbbbb").status is AddStatus.ACCEPTED
    assert pool.size_bytes == 9


def test_full_is_answered_before_check_tx() -> None:
    calls: list[bytes] = []

    def check(tx: bytes) -> str | None:
        calls.append(tx)
        return None

    pool = make(check_tx=check, max_txs=1)
    pool.add(b"a")
    assert pool.add(b"b").status is AddStatus.FULL
    assert calls == [b"a"]


def test_remove_committed_counts_only_pending() -> None:
    pool = make()
    for tx in (b"a", b"b", b"c"):
        pool.add(tx)
    assert pool.remove_committed([b"a", b"c", b"zz", b"a"]) == 2
    assert len(pool) == 1 and pool.size_bytes == 1
    assert pool.contains(tx_hash(b"b")) and not pool.contains(tx_hash(b"a"))
    assert pool.payload_for(V, ()) == (b"b",)
    # Removed means it can come back only if the application says it is not committed.
    assert pool.add(b"a").status is AddStatus.ACCEPTED


def test_take_new_returns_each_tx_once() -> None:
    pool = make()
    for tx in (b"a", b"b", b"c"):
        pool.add(tx)
    assert pool.take_new(2) == [b"a", b"b"]
    pool.add(b"d")
    pool.add(b"a")  # duplicate: not gossiped again
    assert pool.take_new(10) == [b"c", b"d"]
    assert pool.take_new(10) == []
    pool.add(b"e")
    pool.add(b"f")
    pool.remove_committed([b"e"])  # committed before it was gossiped: nothing to tell peers
    assert pool.take_new(10) == [b"f"]


def test_stats_counts_outcomes() -> None:
    pool = make(committed={b"old"}, max_txs=2, check_tx=lambda tx: "no" if tx == b"bad" else None)
    for tx in (b"a", b"a", b"old", b"bad", b"b", b"c"):
        pool.add(tx)
    pool.remove_committed([b"a"])
    stats = pool.stats()
    assert (stats.accepted, stats.duplicate, stats.committed, stats.rejected, stats.full) == (2, 1, 1, 1, 1)
    assert (stats.count, stats.size_bytes, stats.removed) == (1, 1, 1)


LIMITS = ["max_txs", "max_bytes", "max_tx_bytes", "batch_txs", "batch_bytes"]
LIMITS += ["peer_share_txs", "peer_share_bytes"]


@pytest.mark.parametrize("name", LIMITS)
def test_limits_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        limits: dict[str, Any] = {name: 0}
        Mempool(admit_all, set[bytes]().__contains__, **limits)


TX = st.binary(min_size=0, max_size=12)
OP = st.one_of(
    st.tuples(st.just("add"), TX),
    st.tuples(st.just("commit"), st.integers(0, 5)),
    st.tuples(st.just("payload"), st.integers(0, 5)),
    st.tuples(st.just("gossip"), st.integers(0, 5)),
)


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(OP, max_size=60),
    max_txs=st.integers(1, 6),
    max_bytes=st.integers(1, 40),
    batch_txs=st.integers(1, 4),
    batch_bytes=st.integers(1, 20),
)
def test_any_sequence_keeps_bounds_and_never_offers_a_tx_twice(
    ops: list[tuple[str, object]], max_txs: int, max_bytes: int, batch_txs: int, batch_bytes: int
) -> None:
    committed: set[bytes] = set()
    pool = make(committed, max_txs=max_txs, max_bytes=max_bytes, batch_txs=batch_txs, batch_bytes=batch_bytes)
    model: list[bytes] = []  # pending txs in FIFO order
    gossiped: set[bytes] = set()
    for op, arg in ops:
        if op == "add":
            assert isinstance(arg, bytes)
            result = pool.add(arg)
            if result.status is AddStatus.ACCEPTED:
                assert arg not in model and arg not in committed
                model.append(arg)
            else:
                assert result.status is not AddStatus.DUPLICATE or arg in model
        elif op == "commit":
            # Commit a prefix of what a leader would propose, as a block would.
            assert isinstance(arg, int)
            block = pool.payload_for(V, ())[:arg]
            committed.update(block)
            assert pool.remove_committed(block) == len(block)
            model = [tx for tx in model if tx not in committed]
        elif op == "payload":
            assert isinstance(arg, int)
            exclude = set(model[:arg])
            batch = pool.payload_for(V, exclude)
            assert len(set(batch)) == len(batch)
            assert not set(batch) & (committed | exclude)
            assert len(batch) <= batch_txs and sum(map(len, batch)) <= batch_bytes
            # FIFO: the batch is a subsequence of the pending order.
            order = [tx for tx in model if tx not in exclude]
            assert list(batch) == order[: len(batch)]
        else:
            assert isinstance(arg, int)
            new = pool.take_new(arg)
            assert len(new) <= arg and set(new) <= set(model) and not set(new) & gossiped
            gossiped.update(new)
        assert len(pool) == len(model) <= max_txs
        assert pool.size_bytes == sum(map(len, model)) <= max_bytes
        assert all(pool.contains(tx_hash(tx)) for tx in model)


# Each gossiping peer's share.


def test_a_peer_at_its_share_is_refused_alone_and_clients_and_other_peers_are_not() -> None:
    """Tens of thousands of transactions: a peer that gossips a pool's worth fills its share
    only; the pool keeps room for clients and the other peers."""
    pool = make(max_txs=40_000, max_bytes=64 * 1024 * 1024, peer_share_txs=10_000, peer_share_bytes=10**9)
    flood = [f"flood-{i:06d}".encode() for i in range(40_000)]
    results = [pool.add_from_peer(3, tx) for tx in flood]
    statuses = [r.status for r in results]
    assert statuses[:10_000] == [AddStatus.ACCEPTED] * 10_000
    assert statuses[10_000:] == [AddStatus.SHARE_FULL] * 30_000
    assert results[-1].reason is not None and "peer 3's share is full" in results[-1].reason
    assert len(pool) == 10_000 and pool.share_of(3) == (10_000, sum(map(len, flood[:10_000])))
    # Clients and the other peers still get in, up to the pool's own bound.
    for i in range(10_000):
        assert pool.add(f"client-{i:06d}".encode()).status is AddStatus.ACCEPTED
        assert pool.add_from_peer(1, f"peer1-{i:06d}".encode()).status is AddStatus.ACCEPTED
    assert pool.stats().share_full == 30_000 and pool.stats().sharing_peers == 2
    # Nothing a peer gossiped is queued for gossip again: it sent it to everyone.
    assert len(pool.take_new(100_000)) == 10_000


def test_a_share_is_bounded_in_bytes_too() -> None:
    pool = make(max_bytes=10_000, peer_share_bytes=2_500)
    for i in range(25):
        assert pool.add_from_peer(2, f"{i:0100d}".encode()).status is AddStatus.ACCEPTED
    assert pool.add_from_peer(2, b"x").status is AddStatus.SHARE_FULL
    assert pool.share_of(2) == (25, 2_500)
    assert pool.add(b"x" * 100).status is AddStatus.ACCEPTED


def test_a_share_is_released_when_its_transactions_commit_or_are_dropped() -> None:
    committed: set[bytes] = set()
    pool = make(committed, peer_share_txs=1_000)
    first = [f"a-{i:05d}".encode() for i in range(1_000)]
    assert all(pool.add_from_peer(1, tx).ok for tx in first)
    assert pool.add_from_peer(1, b"one more").status is AddStatus.SHARE_FULL
    # 400 commit: their room is the peer's again.
    assert pool.remove_committed(first[:400]) == 400
    assert pool.share_of(1) == (600, sum(map(len, first[400:])))
    second = [f"b-{i:05d}".encode() for i in range(400)]
    assert all(pool.add_from_peer(1, tx).status is AddStatus.ACCEPTED for tx in second)
    assert pool.add_from_peer(1, b"one more").status is AddStatus.SHARE_FULL
    # Committed elsewhere and met while batching: dropped, and released too.
    committed.update(first[400:])
    batch = pool.payload_for(V, ())
    assert set(batch) == set(second) and pool.share_of(1) == (400, sum(map(len, second)))
    pool.remove_committed(second)
    assert pool.share_of(1) == (0, 0) and pool.stats().sharing_peers == 0 and pool.stats().shared_txs == 0


def test_a_client_transaction_gossiped_later_counts_against_no_share() -> None:
    pool = make(peer_share_txs=1)
    assert pool.add(b"mine").status is AddStatus.ACCEPTED
    assert pool.add_from_peer(2, b"mine").status is AddStatus.DUPLICATE
    assert pool.share_of(2) == (0, 0)
    assert pool.add_from_peer(2, b"theirs").status is AddStatus.ACCEPTED
    assert pool.add(b"theirs").status is AddStatus.DUPLICATE
    assert pool.add_from_peer(2, b"more").status is AddStatus.SHARE_FULL


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["client", "peer", "commit"]), st.integers(0, 3), st.integers(0, 40)),
        max_size=300,
    )
)
def test_shares_always_add_up_to_what_peers_have_pending(ops: list[tuple[str, int, int]]) -> None:
    pool = make(max_txs=60, max_bytes=600, peer_share_txs=10, peer_share_bytes=150)
    owner: dict[bytes, int] = {}
    for kind, peer, i in ops:
        tx = f"t{i}".encode()
        if kind == "client":
            pool.add(tx)
        elif kind == "peer":
            if pool.add_from_peer(peer, tx).status is AddStatus.ACCEPTED:
                owner[tx] = peer
        else:
            pool.remove_committed([tx])
            owner.pop(tx, None)
        for p in range(4):
            mine = [t for t, o in owner.items() if o == p]
            assert pool.share_of(p) == (len(mine), sum(map(len, mine)))
            assert len(mine) <= 10 and sum(map(len, mine)) <= 150
    assert len(pool) <= 60 and pool.size_bytes <= 600


# Under the quorum store: the payloads are batches, nothing is gossiped.


def test_under_the_quorum_store_a_tx_no_batch_holds_is_rejected_with_the_reason() -> None:
    pool = make(quorum_store=True, batch_bytes=64, max_tx_bytes=1024)
    result = pool.add(b"x" * 65)
    assert result.status is AddStatus.REJECTED
    assert result.reason == (
        "transaction of 65 bytes exceeds 64, the most one batch holds (max_batch_bytes): "
        "it could never be batched"
    )
    assert pool.add(b"x" * 64).status is AddStatus.ACCEPTED
    # Without the quorum store the same limit is a block's.
    plain = make(batch_bytes=64, max_tx_bytes=1024)
    assert "the most one block holds (max_block_bytes)" in (plain.add(b"x" * 65).reason or "")


def test_under_the_quorum_store_nothing_is_queued_for_gossip() -> None:
    pool = make(quorum_store=True)
    for tx in txs(20):
        assert pool.add(tx).status is AddStatus.ACCEPTED
    assert pool.take_new(1000) == []
    assert pool.payload_for(V, set()) == tuple(txs(20))


def test_payload_for_skips_a_large_excluded_set_and_stops_at_one_batch() -> None:
    # The quorum store asks with every transaction of our uncommitted batches excluded: here the
    # oldest 5,000 of a 10,000-transaction mempool (as the batches took them) plus every third
    # of the rest (a batch that expired and was made again, for instance).
    looked_up: list[bytes] = []

    def committed(tx: bytes) -> bool:
        looked_up.append(tx)
        return False

    pool = Mempool(
        admit_all, committed, max_txs=20_000, batch_txs=500, batch_bytes=256 * 1024, quorum_store=True
    )
    items = txs(10_000, size=8)
    for tx in items:
        assert pool.add(tx).status is AddStatus.ACCEPTED
    looked_up.clear()
    batched = set(items[:5000]) | set(items[5000::3])
    assert len(batched) >= 5000
    payload = pool.payload_for(V, batched)
    expected = [tx for tx in items[5000:] if tx not in batched][:500]
    assert payload == tuple(expected)
    # The committed lookup (a query in the node) ran for what was returned only: not for the
    # excluded transactions, nor for any pending transaction beyond the batch.
    assert looked_up == expected
    # Once those are batched too, the next call offers the next ones; the pool is unchanged.
    batched.update(payload)
    again = pool.payload_for(V, batched)
    assert again == tuple([tx for tx in items[5000:] if tx not in batched][:500])
    assert not set(again) & set(payload)
    assert len(pool) == 10_000
    # Everything excluded: nothing, and no lookup at all.
    looked_up.clear()
    assert pool.payload_for(V, set(items)) == ()
    assert looked_up == []
