"""The quorum store in the core: batches, acknowledgements, proofs of availability, lean blocks
filled for their commits, fetching what a commit waits for, and forgetting what is committed."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from core_helpers import (
    KEYS,
    Cluster,
    certifier,
    make_replica,
    refusals,
    sent_messages,
    vi,
)

from bft.core.batch_store import MemoryBatchStore
from bft.core.batches import Batch, BatchAck, BatchProof, BatchProofs, BatchRequest, BatchResponse
from bft.core.messages import Block, Proposal
from bft.core.refusals import RefusalReason
from bft.core.types import View

QS: dict[str, object] = {"quorum_store": True}


def _run(cluster: Cluster, height: int) -> None:
    cluster.run(lambda: min(cluster.heights()) >= height)


def _with_batches(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.batches]


def test_blocks_carry_proofs_and_commit_full_with_their_batches_transactions() -> None:
    cluster = Cluster(overrides=QS)
    _run(cluster, 12)
    batched = _with_batches(cluster.commits[0])
    assert len(batched) >= 5
    for block in batched:
        assert len(block.txs) == sum(p.info.tx_count for p in block.batches) > 0
        for proof in block.batches:
            assert len(proof.signatures) >= 2  # f + 1 at n = 4
    # Every replica committed the same blocks, with the same transactions.
    for commits in cluster.commits[1:]:
        assert [(b.id, b.txs) for b in commits[:12]] == [(b.id, b.txs) for b in cluster.commits[0][:12]]
    # No transaction is inline in a proposal: proposals are lean.
    proposals = [m for _, _, m in cluster.delivered if isinstance(m, Proposal)]
    assert proposals and all(not p.block.txs for p in proposals)
    assert not [r for rs in cluster.refused for r in rs]


def test_committed_batches_leave_the_store() -> None:
    stores = [MemoryBatchStore() for _ in range(4)]
    cluster = Cluster(overrides=QS)
    cluster.replicas = [
        make_replica(i, cluster.stores[i], chain=cluster.chains[i], batches=stores[i], quorum_store=True)
        for i in range(4)
    ]
    _run(cluster, 15)
    committed = {p.info.digest for b in cluster.commits[0] for p in b.batches}
    assert committed
    for store in stores:
        assert not committed & {b.digest for b in store.batches()}


def test_a_replica_that_missed_the_batches_fetches_them_and_commits_the_same() -> None:
    cluster = Cluster(overrides=QS)
    _run(cluster, 3)
    cluster.down.add(3)
    cluster.run(lambda: min(cluster.heights()[:3]) >= 12)
    cluster.down.discard(3)
    _run(cluster, 14)
    requests = [
        m for src, dst, m in cluster.delivered if dst != 3 and src == 3 and isinstance(m, BatchRequest)
    ]
    answers = [m for src, dst, m in cluster.delivered if dst == 3 and isinstance(m, BatchResponse)]
    assert requests or answers or cluster.commits[3]
    assert [b.id for b in cluster.commits[3][:14]] == [b.id for b in cluster.commits[0][:14]]
    assert [b.txs for b in cluster.commits[3][:14]] == [b.txs for b in cluster.commits[0][:14]]


def _proof(batch: Batch, signers: tuple[int, ...]) -> BatchProof:
    cert = certifier()
    sigs = tuple((vi(s), cert.sign_batch_ack(KEYS[s], vi(s), batch.info).signature) for s in signers)
    return BatchProof(batch.info, sigs)


def test_a_proof_with_fewer_than_f_plus_one_signers_is_refused() -> None:
    replica = make_replica(1, quorum_store=True)
    batch = Batch(vi(0), 1, 10, (b"tx",))
    out = replica.on_message(vi(0), BatchProofs((_proof(batch, (0,)),)), 0.0)
    assert [r.reason for r in refusals(out)] == [RefusalReason.BAD_PROOF]
    out = replica.on_message(vi(0), BatchProofs((_proof(batch, (0, 2)),)), 0.0)
    assert not refusals(out)


def test_a_batch_is_stored_durably_then_acknowledged_to_its_author() -> None:
    store = MemoryBatchStore()
    replica = make_replica(1, batches=store, quorum_store=True)
    batch = Batch(vi(0), 1, 10, (b"a" * 300, b"b" * 300))
    out = replica.on_message(vi(0), batch, 0.0)
    acks = [m for m in sent_messages(out) if isinstance(m, BatchAck)]
    assert len(acks) == 1 and acks[0].info == batch.info and acks[0].author == 1
    assert store.get(batch.digest) == batch
    assert certifier().check_batch_ack(acks[0]) is None


def test_bad_batches_are_refused_and_not_stored() -> None:
    store = MemoryBatchStore()
    replica = make_replica(
        1, batches=store, max_stored_batches=2, batch_lifetime_heights=8, quorum_store=True
    )
    cases = [
        (vi(2), Batch(vi(0), 1, 10, (b"x",)), RefusalReason.NOT_THE_SENDER),
        (vi(0), Batch(vi(0), 2, 100, (b"x",)), RefusalReason.EXPIRED_BATCH),  # beyond 2 lifetimes
        (vi(0), Batch(vi(0), 3, 10, ()), RefusalReason.BAD_BATCH),
    ]
    for sender, batch, reason in cases:
        assert [r.reason for r in refusals(replica.on_message(sender, batch, 0.0))] == [reason]
        assert store.get(batch.digest) is None
    # The per-author budget: two kept, a third refused; a second batch numbered alike too.
    for seq in (1, 2):
        assert not refusals(replica.on_message(vi(0), Batch(vi(0), seq, 10, (bytes([seq]),)), 0.0))
    refused = refusals(replica.on_message(vi(0), Batch(vi(0), 3, 10, (b"3",)), 0.0))
    assert [r.reason for r in refused] == [RefusalReason.BATCH_QUOTA]
    refused = refusals(replica.on_message(vi(0), Batch(vi(0), 1, 10, (b"other",)), 0.0))
    assert [r.reason for r in refused] == [RefusalReason.BATCH_CONFLICT]
    assert len(store.batches()) == 2


def test_our_batch_numbers_survive_a_restart() -> None:
    store = MemoryBatchStore()
    cluster = Cluster(overrides=QS)
    cluster.replicas[0] = make_replica(
        0, cluster.stores[0], chain=cluster.chains[0], batches=store, quorum_store=True
    )
    _run(cluster, 8)
    highest = store.highest_sequence(0)
    assert highest >= 2
    store.remove([b.digest for b in store.batches()])  # committed or expired: the numbers stay
    restarted = make_replica(0, cluster.stores[0], chain=cluster.chains[0], batches=store, quorum_store=True)
    out = restarted.on_payload(cluster.now)
    made = [m for m in sent_messages(out) if isinstance(m, Batch)]
    assert made and all(b.sequence > highest for b in made)


def test_proposals_must_match_the_chains_payload_mode() -> None:
    # Under the quorum store a proposal carries no transactions; without it, no proofs.
    cluster = Cluster(overrides=QS)
    _run(cluster, 6)
    block = next(b for b in cluster.commits[0] if b.batches)
    assert cluster.replicas[1]._store.check_block(block, set(), 0) is not None  # full: txs inline
    lean = replace(block, txs=())
    assert lean.id == block.id
    plain = make_replica(1)
    refused = plain._store.check_block(lean, set(), 0)
    assert refused is not None and refused.reason == RefusalReason.PAYLOAD_MODE


def test_a_full_block_whose_transactions_are_not_its_batches_is_refused() -> None:
    cluster = Cluster(overrides=QS)
    _run(cluster, 6)
    block = next(b for b in cluster.commits[0] if b.batches)
    forged = replace(block, txs=(b"not", b"these", *block.txs[2:]))
    assert forged.id == block.id  # the id leaves the transactions out: the proofs bind them
    chain = cluster.replicas[0]._chain
    fresh = make_replica(2, quorum_store=True)._chain
    inserted, refused = fresh.insert_chain(
        [b for b in cluster.commits[0] if b.height < block.height] + [forged]
    )
    assert refused is not None and refused.reason == RefusalReason.BAD_PAYLOAD
    assert [b.height for b in inserted] == list(range(1, block.height))
    assert chain is not None


class _LargePayload:
    """Two 200 KiB transactions per view, the same at every replica (each batches them)."""

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        txs = tuple(f"{view}/{i}".encode().ljust(200 * 1024, b".") for i in range(2))
        return tuple(tx for tx in txs if tx not in exclude)


def test_requests_that_make_a_signer_read_its_committed_blocks_are_charged_for_the_reads() -> None:
    # A request for digests nobody holds, at a committed height, costs the signer a read of a
    # megabyte block from its committed chain and answers nothing: the budget counts the read.
    cluster = Cluster(overrides={"quorum_store": True, "payload": _LargePayload()})
    _run(cluster, 8)
    signer = cluster.replicas[1]
    height = next(b.height for b in cluster.commits[1] if len(b.batches) >= 2)
    request = BatchRequest(height, tuple(bytes([i]) * 32 for i in range(8)))
    answered = 0
    for _ in range(200):
        out = signer.on_message(vi(0), request, cluster.now)
        if any(r.reason == RefusalReason.RATE_LIMITED for r in refusals(out)):
            break
        answered += 1
        assert [m for m in sent_messages(out) if isinstance(m, BatchResponse)] == [BatchResponse(())]
    # 8 messages' worth of burst (32 MiB) over blocks of at least 400 KiB: well below 200.
    assert 0 < answered < 100


def test_a_proof_of_a_batch_committed_already_is_refused_and_never_proposed() -> None:
    # Found by the ledger cluster test under batch-flood: the victim, restarted after one of its
    # batches committed without it, sent it again; the Byzantine peer acknowledged it, which
    # with the author's own signature is a valid proof (f+1 = 2). Every honest replica queued
    # it, every leader proposed it, every voter refused it as a duplicate, and nothing committed
    # for four minutes. A proof of a committed batch is refused; a leader proposes none.
    cluster = Cluster(overrides=QS)
    _run(cluster, 8)
    proof = next(p for b in cluster.commits[0] for p in b.batches)
    author = int(proof.info.author)
    for i in range(4):
        if i != author:
            out = cluster.replicas[i].on_message(vi(author), BatchProofs((proof,)), cluster.now)
            assert [r.reason for r in refusals(out)] == [RefusalReason.DUPLICATE_BATCH]
    height = min(cluster.heights())
    _run(cluster, height + 6)
    assert not [r for rs in cluster.refused for r in rs if r.reason is RefusalReason.DUPLICATE_BATCH]
