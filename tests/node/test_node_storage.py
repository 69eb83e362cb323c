"""BlockStore: the committed chain in SQLite; appends that do not continue the chain are refused."""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from sqlite_helpers import CountingConnection, counting_db

from bft.core.actions import Evidence, EvidenceKind
from bft.core.blocktree import genesis
from bft.core.journal import BlockJournal
from bft.core.messages import Block, Proposal, QuorumCert, TimeoutCert, Vote
from bft.core.types import BlockId, ValidatorIndex, View
from bft.node.errors import StorageError
from bft.node.storage import (
    MAX_COMMIT_PROOF_BLOCKS,
    MAX_EVIDENCE_PAGE,
    MAX_EVIDENCE_PER_VALIDATOR,
    SCHEMA_VERSION,
    BlockStore,
    StoredEvidence,
    StoredResult,
    schema_version_of,
)
from crypto.hashing import sha256

GENESIS, GENESIS_QC = genesis("storage-test")


def _qc(block: Block, view: int | None = None) -> QuorumCert:
    sigs = tuple((ValidatorIndex(i), bytes([i + 1]) * 64) for i in range(3))
    return QuorumCert(View(block.view if view is None else view), block.id, sigs)


def _chain(count: int, parent: Block = GENESIS, parent_qc: QuorumCert = GENESIS_QC) -> list[Block]:
    """`count` blocks extending `parent`, with distinct txs, views 1 apart."""
    blocks = []
    for _ in range(count):
        h = parent.height + 1
        block = Block(
            view=View(parent.view + 1),
            height=h,
            parent_id=parent.id,
            proposer=ValidatorIndex(h % 4),
            qc=parent_qc,
            txs=(f"tx-{h}-a".encode(), f"tx-{h}-b".encode()),
        )
        blocks.append(block)
        parent, parent_qc = block, _qc(block)
    return blocks


def _qcs(blocks: list[Block]) -> list[QuorumCert]:
    return [_qc(b) for b in blocks]


def test_empty_store(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        assert store.height == 0
        assert store.tip() is None
        assert store.block_at(0) is None
        assert store.block_at(1) is None
        assert not store.has_tx(b"anything")


def test_append_and_read_back(tmp_path: Path) -> None:
    blocks = _chain(5)
    commit_a = _qc(blocks[2], view=blocks[2].view + 2)
    commit_b = _qc(blocks[4], view=blocks[4].view + 2)
    with BlockStore(tmp_path / "blocks.sqlite", genesis_id=GENESIS.id) as store:
        store.append(blocks[:3], _qcs(blocks[:3]), commit_a)
        assert store.height == 3
        store.append(blocks[3:], _qcs(blocks[3:]), commit_b)
        assert store.height == 5
        assert store.tip() == (blocks[4], _qc(blocks[4]))
        for i, block in enumerate(blocks):
            stored = store.block_at(i + 1)
            assert stored is not None and (stored.block, stored.qc) == (block, _qc(block))
            assert stored.height == i + 1
            assert stored.block.id == block.id
            assert store.block_by_id(block.id) == block
        assert store.block_at(6) is None
        assert store.block_by_id(BlockId(bytes(32))) is None
        assert store.has_tx(b"tx-4-b")
        assert not store.has_tx(b"tx-6-a")
        assert store.tx_location(sha256(b"tx-4-b")) == (4, 1)
        assert store.tx_location(sha256(b"tx-1-a")) == (1, 0)
        assert store.tx_location(sha256(b"missing")) is None


def test_commit_proofs_prefer_committed_three_chains_then_the_commit_record(tmp_path: Path) -> None:
    blocks = _chain(7)  # views 1..7, consecutive
    above = (blocks[5], blocks[6])  # b', b'' of the second commit, not committed themselves
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append(blocks[:3], _qcs(blocks[:3]), _qc(blocks[4]), (blocks[3], blocks[4]))
        store.append(blocks[3:5], _qcs(blocks[3:5]), _qc(blocks[6]), above)
        # Heights 1..3: blocks k, k+1, k+2 in consecutive views are stored: the shortest proof.
        one = store.block_at(1)
        assert one is not None
        assert one.commit_proof == (blocks[1], blocks[2]) and one.commit_qc == _qc(blocks[2])
        three = store.block_at(3)
        assert three is not None
        assert three.commit_proof == (blocks[3], blocks[4]) and three.commit_qc == _qc(blocks[4])
        # Heights 4 and 5: nothing stored above closes a three-chain; the commit's own (b', b'').
        four = store.block_at(4)
        assert four is not None
        assert four.commit_proof == (blocks[4], *above) and four.commit_qc == _qc(blocks[6])
        five = store.block_at(5)
        assert five is not None and five.commit_proof == above


def _blocks_of_views(views: list[int]) -> list[Block]:
    """Blocks at heights 1.. extending genesis, each the child of the one before, in `views`."""
    blocks: list[Block] = []
    parent, parent_qc = GENESIS, GENESIS_QC
    for height, view in enumerate(views, start=1):
        parent = Block(
            View(view), height, parent.id, ValidatorIndex(height % 4), parent_qc, (b"%d" % height,)
        )
        parent_qc = _qc(parent)
        blocks.append(parent)
    return blocks


def test_two_chain_commit_proofs_prefer_committed_two_chains_then_the_commit_record(tmp_path: Path) -> None:
    # Views 1, 2, 4, 5, 7, 8: under the two-chain rule the QCs for heights 2, 4 and 6 commit.
    blocks = _blocks_of_views([1, 2, 4, 5, 7, 8])
    path = tmp_path / "blocks.sqlite"
    with BlockStore(path, genesis_id=GENESIS.id, commit_chain=2) as store:
        store.append(blocks[:1], _qcs(blocks[:1]), _qc(blocks[1]), (blocks[1],))
        store.append(blocks[1:3], _qcs(blocks[1:3]), _qc(blocks[3]), (blocks[3],))
        store.append(blocks[3:5], _qcs(blocks[3:5]), _qc(blocks[5]), (blocks[5],))  # b' not stored
        served = {h: store.block_at(h) for h in range(1, 6)}
    proofs = {h: (b.commit_proof, b.commit_qc) for h, b in served.items() if b is not None}
    # Heights 1..3: blocks k, k+1 in consecutive views are stored (the lowest k >= height): the
    # shortest proof, one block when k is the height itself.
    assert proofs[1] == ((blocks[1],), _qc(blocks[1]))
    assert proofs[2] == ((blocks[2], blocks[3]), _qc(blocks[3]))
    assert proofs[3] == ((blocks[3],), _qc(blocks[3]))
    # Heights 4 and 5: nothing stored above closes a two-chain; the commit's own b'.
    assert proofs[4] == ((blocks[4], blocks[5]), _qc(blocks[5]))
    assert proofs[5] == ((blocks[5],), _qc(blocks[5]))
    # A store told the three-chain rule finds no three-chain here, and no commit record of its
    # rule: it serves no proof rather than one a three-chain client would refuse.
    with BlockStore(path) as three:
        assert all(
            stored is not None and stored.commit_proof == () for stored in map(three.block_at, range(1, 6))
        )


def test_a_two_chain_proof_is_served_up_to_the_longest_allowed(tmp_path: Path) -> None:
    # Views 1, 3, 5, ...: no two consecutive views among the stored blocks; b' closes the commit.
    blocks = _blocks_of_views([2 * h - 1 for h in range(1, MAX_COMMIT_PROOF_BLOCKS + 2)])
    b1 = Block(
        View(blocks[-1].view + 1), len(blocks) + 1, blocks[-1].id, ValidatorIndex(0), _qc(blocks[-1]), ()
    )
    with BlockStore(tmp_path / "blocks.sqlite", commit_chain=2) as store:
        store.append(blocks, _qcs(blocks), _qc(b1), (b1,))
        top = store.block_at(len(blocks))
        assert top is not None and top.commit_proof == (b1,)
        longest = store.block_at(2)
        assert longest is not None and len(longest.commit_proof) == MAX_COMMIT_PROOF_BLOCKS
        assert longest.commit_proof[-1] == b1 and longest.commit_qc == _qc(b1)
        bottom = store.block_at(1)
        assert bottom is not None and bottom.commit_proof == ()


def test_a_block_store_refuses_an_unknown_commit_rule(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="commit_chain must be one of"):
        BlockStore(tmp_path / "blocks.sqlite", commit_chain=4)
    assert not (tmp_path / "blocks.sqlite").exists()
    with (
        contextlib.closing(sqlite3.connect(":memory:")) as db,
        pytest.raises(ValueError, match="commit_chain must be one of"),
    ):
        BlockStore.over(db, "blocks", commit_chain=1)


def test_a_commit_proof_too_long_to_serve_is_left_out(tmp_path: Path) -> None:
    # Views 1, 3, 5, ...: no three consecutive views among the stored blocks.
    blocks: list[Block] = []
    parent, parent_qc = GENESIS, GENESIS_QC
    for h in range(1, MAX_COMMIT_PROOF_BLOCKS + 2):
        parent = Block(View(2 * h - 1), h, parent.id, ValidatorIndex(0), parent_qc, (b"%d" % h,))
        parent_qc = _qc(parent)
        blocks.append(parent)
    b1 = Block(View(blocks[-1].view + 1), len(blocks) + 1, blocks[-1].id, ValidatorIndex(0), parent_qc, ())
    b2 = Block(View(b1.view + 1), b1.height + 1, b1.id, ValidatorIndex(0), _qc(b1), ())
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append(blocks, _qcs(blocks), _qc(b2), (b1, b2))
        top = store.block_at(len(blocks))
        assert top is not None and top.commit_proof == (b1, b2)
        bottom = store.block_at(1)
        assert bottom is not None and bottom.commit_proof == ()


def test_a_tx_committed_twice_keeps_its_first_location(tmp_path: Path) -> None:
    (b1,) = _chain(1)
    b2 = Block(View(2), 2, b1.id, ValidatorIndex(1), _qc(b1), (b"dup", b"tx-1-a"))
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append([b1, b2], [_qc(b1), _qc(b2)], _qc(b2, view=4))
        assert store.tx_location(sha256(b"tx-1-a")) == (1, 0)
        assert store.tx_location(sha256(b"dup")) == (2, 0)


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    blocks = _chain(4)
    with BlockStore(path) as store:
        store.append(blocks[:2], _qcs(blocks[:2]), _qc(blocks[1], view=9))
    with BlockStore(path) as store:
        assert store.height == 2
        assert store.tip() == (blocks[1], _qc(blocks[1]))
        # The reopened store still knows its tip: appending continues from it, gaps are refused.
        with pytest.raises(StorageError, match="expected height 3"):
            store.append(blocks[3:], _qcs(blocks[3:]), _qc(blocks[3]))
        store.append(blocks[2:], _qcs(blocks[2:]), _qc(blocks[3], view=11))
    with BlockStore(path) as store:
        assert store.height == 4
        stored = store.block_at(3)
        assert stored is not None
        assert stored.commit_qc == _qc(blocks[3], view=11)
        assert store.has_tx(b"tx-3-a")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "no blocks"),
        ("gap_at_start", "expected height 1"),
        ("gap_inside", "expected height 2"),
        ("wrong_parent", "is not the block below it"),
        ("wrong_genesis_parent", "is not the block below it"),
        ("fewer_qcs", "2 blocks with 1 QCs"),
        ("qc_for_other_block", "its QC certifies"),
    ],
)
def test_refuses_what_does_not_continue_the_chain(tmp_path: Path, case: str, message: str) -> None:
    blocks = _chain(3)
    other = _chain(2, parent=Block(View(7), 0, GENESIS.id, ValidatorIndex(0), GENESIS_QC, ()))
    appends: dict[str, tuple[list[Block], list[QuorumCert]]] = {
        "empty": ([], []),
        "gap_at_start": (blocks[1:], _qcs(blocks[1:])),
        "gap_inside": ([blocks[0], blocks[2]], _qcs([blocks[0], blocks[2]])),
        "wrong_parent": ([blocks[0], other[1]], _qcs([blocks[0], other[1]])),
        "wrong_genesis_parent": (other, _qcs(other)),
        "fewer_qcs": (blocks[:2], _qcs(blocks[:1])),
        "qc_for_other_block": (blocks[:2], [_qc(blocks[0]), _qc(blocks[0])]),
    }
    to_append, qcs = appends[case]
    with BlockStore(tmp_path / "blocks.sqlite", genesis_id=GENESIS.id) as store:
        with pytest.raises(StorageError, match=message):
            store.append(to_append, qcs, _qc(blocks[0]))
        # Nothing of a refused commit is stored, and the chain still accepts the right blocks.
        assert store.height == 0
        assert store.tip() is None
        assert not store.has_tx(b"tx-1-a")
        store.append(blocks, _qcs(blocks), _qc(blocks[2]))
        assert store.height == 3


def test_refuses_a_block_already_stored(tmp_path: Path) -> None:
    blocks = _chain(2)
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append(blocks, _qcs(blocks), _qc(blocks[1]))
        with pytest.raises(StorageError, match="expected height 3"):
            store.append(blocks[1:], _qcs(blocks[1:]), _qc(blocks[1]))


def test_wal_and_synchronous_full_are_in_effect(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    with BlockStore(path) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # WAL mode is a property of the file: another connection sees it too.
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_refuses_a_file_that_is_not_a_block_store(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    path.write_bytes(b"this is not an sqlite database, just some text" * 100)
    with pytest.raises(StorageError, match="not a usable block store"):
        BlockStore(path)


# The block journal and the highest TC (bft.core.journal.BlockJournal).


def test_journal_keeps_uncommitted_blocks_and_the_tc_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    store = BlockStore(path)
    journal: BlockJournal = store  # the store is the node's journal
    genesis_block, genesis_qc = genesis("journal-chain")
    b1 = Block(View(1), 1, genesis_block.id, ValidatorIndex(0), genesis_qc, (b"a",))
    b2 = Block(View(2), 2, b1.id, ValidatorIndex(1), QuorumCert(View(1), b1.id, ()), (b"b",))
    journal.add([b1, b2])
    journal.add([b2])  # journaling twice is harmless
    tc = TimeoutCert(View(3), genesis_qc, ((ValidatorIndex(0), View(0), bytes(64)),))
    journal.save_tc(tc)
    store.close()
    reopened = BlockStore(path)
    assert sorted(b.id for b in reopened.blocks()) == sorted([b1.id, b2.id])
    assert reopened.high_tc() == tc
    reopened.prune_to(1)
    assert [b.id for b in reopened.blocks()] == [b2.id]
    reopened.close()


# The execution record (bft.node.executor).


def test_execution_record_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    blocks = _chain(2)
    genesis_hash, h1, h2 = bytes(32), b"\x01" * 32, b"\x02" * 32
    results_1 = [StoredResult(0, "put", b"null"), StoredResult(3, "cas mismatch", b'"v"')]
    with BlockStore(path, genesis_id=GENESIS.id) as store:
        assert store.last_executed() is None
        assert store.app_hash_at(0) is None
        store.append(blocks, _qcs(blocks), _qc(blocks[1]))
        store.record_execution(0, genesis_hash, [])
        assert store.last_executed() == (0, genesis_hash)
        store.record_execution(1, h1, results_1)
        store.record_execution(2, h2, [StoredResult(0, "", b"")])
    with BlockStore(path, genesis_id=GENESIS.id) as store:
        assert store.last_executed() == (2, h2)
        assert [store.app_hash_at(h) for h in range(4)] == [genesis_hash, h1, h2, None]
        assert [store.tx_result(1, i) for i in range(3)] == [*results_1, None]
        assert store.tx_result(2, 0) == StoredResult(0, "", b"")
        assert store.tx_result(0, 0) is None
        assert store.tx_result(3, 0) is None


def test_recording_a_height_again_replaces_it(tmp_path: Path) -> None:
    blocks = _chain(1)
    results = [StoredResult(0, "put", b"null"), StoredResult(0, "put", b'"a"')]
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append(blocks, _qcs(blocks), _qc(blocks[0]))
        store.record_execution(1, b"\x01" * 32, results)
        store.record_execution(1, b"\x01" * 32, results)  # replay writes identical values
        assert store.last_executed() == (1, b"\x01" * 32)
        assert [store.tx_result(1, i) for i in range(2)] == results
        assert store._db.execute("SELECT COUNT(*) FROM executed").fetchone()[0] == 1
        assert store._db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2
        changed = [StoredResult(1, "other", b""), StoredResult(0, "put", b"x")]
        store.record_execution(1, b"\x09" * 32, changed)
        assert store.app_hash_at(1) == b"\x09" * 32
        assert [store.tx_result(1, i) for i in range(2)] == changed
        assert store._db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2


def test_recording_above_the_tip_is_refused(tmp_path: Path) -> None:
    blocks = _chain(2)
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        with pytest.raises(StorageError, match="height 1 above the tip"):
            store.record_execution(1, b"\x01" * 32, [StoredResult(0, "", b"")])
        assert store.last_executed() is None
        assert store.tx_result(1, 0) is None
        store.append(blocks[:1], _qcs(blocks[:1]), _qc(blocks[0]))
        store.record_execution(1, b"\x01" * 32, [])
        with pytest.raises(StorageError, match="height 2 above the tip"):
            store.record_execution(2, b"\x02" * 32, [])
        assert store.last_executed() == (1, b"\x01" * 32)


def test_an_older_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite"
    db = sqlite3.connect(path)
    try:
        db.execute("CREATE TABLE blocks (height INTEGER PRIMARY KEY, id BLOB)")
        db.execute("PRAGMA user_version=2")
        db.commit()
    finally:
        db.close()
    with pytest.raises(StorageError, match="schema version 2") as refused:
        BlockStore(path)
    assert "remove the data directory" in str(refused.value)
    # Refusing did not upgrade the file behind the operator's back.
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"blocks"}
        assert db.execute("PRAGMA journal_mode").fetchone()[0] != "wal", "not even switched to WAL"
    finally:
        db.close()
    assert schema_version_of(path) == 2
    assert schema_version_of(tmp_path / "absent.sqlite") is None


def test_bft_cluster_refuses_a_home_of_an_older_version_with_what_to_do(tmp_path: Path) -> None:
    from bft.node.cluster import _stale_schema
    from bft.node.testnet import write_testnet

    write_testnet(4, tmp_path, 29900)
    assert _stale_schema(tmp_path, 4) is None
    db = sqlite3.connect(tmp_path / "node2" / "data" / "blocks.sqlite")
    db.execute("PRAGMA user_version=2")
    db.close()
    reason = _stale_schema(tmp_path, 4)
    assert reason is not None and "schema 2" in reason and "remove that directory" in reason


def test_committed_ranges_for_block_sync_stay_within_the_byte_budget(tmp_path: Path) -> None:
    from bft.core import wire
    from bft.core.messages import SyncResponse

    parent, parent_qc = GENESIS, GENESIS_QC
    blocks: list[Block] = []
    for h in range(1, 41):  # every second block carries 900 KB
        txs = (b"v" * 900_000,) if h % 2 == 0 else (f"small-{h}".encode(),)
        block = Block(View(h), h, parent.id, ValidatorIndex(h % 4), parent_qc, txs)
        blocks.append(block)
        parent, parent_qc = block, _qc(block)
    budget = wire.response_budget_bytes(4)
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        store.append(blocks, _qcs(blocks), _qc(blocks[-1]))
        start, served = 1, 0
        for _ in range(40):
            run, qc = store.committed_range(start, 256, budget)
            if not run:
                break
            assert run[0].height == start and [b.height for b in run] == list(range(start, start + len(run)))
            assert qc is not None and qc.block_id == run[-1].id
            assert len(wire.encode(SyncResponse(run, qc))) <= wire.MAX_MESSAGE_SIZE_BYTES
            start, served = run[-1].height + 1, served + 1
        assert start == 41 and served >= 4, "large blocks split the range into many responses"
        # A single block over the budget still goes, alone; nothing above the tip.
        alone, _ = store.committed_range(5, 256, 1000)
        assert [b.height for b in alone] == [5]
        assert store.committed_range(41, 256, budget) == ((), None)
        assert store.committed_range(0, 256, budget) == ((), None)


def test_a_store_of_the_previous_schema_is_refused_too(tmp_path: Path) -> None:
    """Version 4 stores (before the evidence table) are refused like any other version."""
    path = tmp_path / "blocks.sqlite"
    with BlockStore(path):
        pass
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=4")
    db.close()
    with pytest.raises(StorageError, match="schema version 4"):
        BlockStore(path)
    assert schema_version_of(path) == 4
    assert SCHEMA_VERSION > 4


def _vote_evidence(validator: int, view: int) -> Evidence:
    first = Vote(View(view), BlockId(b"\x01" * 32), ValidatorIndex(validator), b"\x0a" * 64)
    second = Vote(View(view), BlockId(b"\x02" * 32), ValidatorIndex(validator), b"\x0b" * 64)
    return Evidence(EvidenceKind.VOTE, ValidatorIndex(validator), View(view), first, second)


def test_evidence_is_kept_once_per_validator_view_and_kind_newest_first(tmp_path: Path) -> None:
    from bft.core import wire

    with BlockStore(tmp_path / "blocks.sqlite") as store:
        evidence = _vote_evidence(2, 7)
        assert store.add_evidence(evidence)
        assert not store.add_evidence(evidence), "the same (validator, view, kind) again"
        assert not store.add_evidence(_vote_evidence(2, 7)), "other messages, same key"
        proposal = Proposal(_chain(1)[0], None, b"\x0c" * 64)
        other = Proposal(replace(proposal.block, txs=(b"other",)), None, b"\x0d" * 64)
        assert store.add_evidence(
            Evidence(EvidenceKind.PROPOSAL, ValidatorIndex(2), View(7), proposal, other)
        )
        assert store.add_evidence(_vote_evidence(1, 3))
        kept = store.evidence()
        assert [(e.kind, e.validator, e.view) for e in kept] == [
            ("vote", 1, 3),
            ("proposal", 2, 7),
            ("vote", 2, 7),
        ]
        assert wire.decode(kept[2].first) == evidence.first and wire.decode(kept[2].second) == evidence.second
        assert wire.decode(kept[1].second) == other
        # Pages: newest first, `before` the last seq seen.
        assert store.evidence(limit=1) == kept[:1]
        assert store.evidence(limit=2, before=kept[1].seq) == kept[2:]
    with BlockStore(tmp_path / "blocks.sqlite") as reopened:
        assert reopened.evidence() == kept, "evidence survives a restart"


def test_evidence_is_bounded_per_validator(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "blocks.sqlite") as store:
        assert store.add_evidence(_vote_evidence(0, 1))
        for view in range(1, MAX_EVIDENCE_PER_VALIDATOR + 21):
            assert store.add_evidence(_vote_evidence(3, view))
        everything: list[StoredEvidence] = []
        before: int | None = None
        while page := store.evidence(limit=MAX_EVIDENCE_PAGE, before=before):
            everything += page
            before = page[-1].seq
        by_three = [e.view for e in everything if e.validator == 3]
        # The newest MAX_EVIDENCE_PER_VALIDATOR of validator 3; validator 0's row is untouched.
        assert by_three == list(range(MAX_EVIDENCE_PER_VALIDATOR + 20, 20, -1))
        assert [e.view for e in everything if e.validator == 0] == [1]
        assert len(everything) == MAX_EVIDENCE_PER_VALIDATOR + 1
        # One read returns at most a page, whatever it asks for.
        page_size = min(len(everything), MAX_EVIDENCE_PAGE)
        assert len(store.evidence(limit=10 * MAX_EVIDENCE_PAGE)) == page_size


# Group commit: `batch` makes several writes one transaction (one COMMIT, one disk sync).


def _counting_store() -> tuple[BlockStore, CountingConnection]:
    db = counting_db()
    store = BlockStore.over(db, "counted", genesis_id=GENESIS.id)
    db.commits = 0
    return store, db


def test_a_batch_of_append_record_and_prune_is_one_commit() -> None:
    store, db = _counting_store()
    blocks = _chain(3)
    store.add(blocks)
    with store.batch("commit 1..2"):
        store.append(blocks[:2], _qcs(blocks[:2]), _qc(blocks[2]), blocks[2:])
        store.record_execution(1, b"h1", [StoredResult(0, "", b"")] * 2)
        store.prune_to(2)
    assert db.commits == 2, "the journal's add, then the whole batch"
    assert store.height == 2 and store.app_hash_at(1) == b"h1"
    assert [b.id for b in store.blocks()] == [blocks[2].id]
    store.prune_to(2)
    assert db.commits == 2, "a prune already done costs no transaction"
    store.prune_to(3)
    assert db.commits == 3 and store.blocks() == []


def test_a_batch_that_raises_stores_nothing_and_keeps_the_tip() -> None:
    store, _ = _counting_store()
    blocks = _chain(3)
    store.add(blocks)
    with pytest.raises(RuntimeError), store.batch("commit 1..2"):
        store.append(blocks[:2], _qcs(blocks[:2]), _qc(blocks[2]), blocks[2:])
        store.prune_to(2)
        raise RuntimeError("the application failed")
    assert store.height == 0 and store.block_at(1) is None
    assert len(store.blocks()) == 3, "the journal still holds what the rolled-back batch pruned"
    store.append(blocks[:2], _qcs(blocks[:2]), _qc(blocks[2]), blocks[2:])  # the tip was reloaded
    store.prune_to(2)
    assert [b.id for b in store.blocks()] == [blocks[2].id]


def test_a_block_journaled_below_a_prune_is_pruned_by_the_next_one() -> None:
    store, _ = _counting_store()
    blocks = _chain(4)
    store.prune_to(2)
    store.add(blocks[1:3])  # heights 2 and 3, one of them at the pruned height
    store.prune_to(2)
    assert [b.height for b in store.blocks()] == [3]
