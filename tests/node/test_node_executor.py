"""Executor: committed blocks reach the real key-value ledger exactly once, whatever instant the
process dies at, and every block's app-hash claim is checked against what this node executed.

Real pieces throughout: `KeyValueLedger` and `BlockStore` in tmp_path, blocks signed and certified
by the core's test helpers. The transactions form a compare-and-set chain (k: absent -> v1 -> v2 ->
v3), so applying any block twice turns a success into `CODE_CAS_MISMATCH` and changes the app hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from core_helpers import GENESIS_BLOCK, make_block, make_qc, qc_for
from sqlite_helpers import counting_db

from bft.app.interface import CODE_OK, CODE_REPEATED, GENESIS_APP_HASH, BlockResult, StateCorrupt
from bft.app.kv import CODE_CAS_MISMATCH, KeyValueLedger, cas_tx, del_tx, put_tx
from bft.core.actions import Commit
from bft.core.messages import Block
from bft.node.errors import StorageError
from bft.node.executor import Executor
from bft.node.storage import BlockStore, StoredResult
from crypto.hashing import sha256

TXS: list[tuple[bytes, ...]] = [
    (cas_tx("k", None, "v1"), put_tx("counter", "1")),
    (cas_tx("k", "v1", "v2"), cas_tx("k", None, "again"), del_tx("gone")),
    (put_tx("counter", "2"), cas_tx("once", None, "x")),
    (cas_tx("k", "v2", "v3"),),
    (put_tx("counter", "3"), put_tx("a/b", "c")),
]
# Expected result codes per height; the one mismatch is the transaction's own doing, in every run.
CODES = [
    [CODE_OK, CODE_OK],
    [CODE_OK, CODE_CAS_MISMATCH, CODE_OK],
    [CODE_OK, CODE_OK],
    [CODE_OK],
    [CODE_OK] * 2,
]
FINAL_STATE = {"k": "v3", "counter": "3", "once": "x", "a/b": "c", "gone": None}


def build_chain(tx_lists: Sequence[tuple[bytes, ...]], parent: Block = GENESIS_BLOCK) -> list[Block]:
    blocks = []
    for txs in tx_lists:
        parent = make_block(parent, parent.view + 1, txs=txs)
        blocks.append(parent)
    return blocks


BLOCKS = build_chain(TXS)
# Three commits, as the replica would hand them over: heights 1-2, 3, 4-5.
COMMITS = [BLOCKS[0:2], BLOCKS[2:3], BLOCKS[3:5]]


def commit_of(blocks: list[Block]) -> Commit:
    """A commit of `blocks` (its proof is left out: the executor stores, not checks, it)."""
    return Commit(
        tuple(blocks), tuple(qc_for(b) for b in blocks), make_qc(blocks[-1].id, blocks[-1].view + 2)
    )


class Node:
    """The executing part of one node: ledger, block store and executor over one data directory.
    `close` without anything else is a crash: the ledger discards what it staged."""

    def __init__(self, home: Path, deferred: bool = False) -> None:
        home.mkdir(exist_ok=True)
        self.home = home
        self.app = KeyValueLedger(home / "app.sqlite")
        self.store = BlockStore(home / "blocks.sqlite", genesis_id=GENESIS_BLOCK.id)
        self.executor = Executor(self.app, self.store, deferred=deferred)

    def commit(self, commit: Commit) -> None:
        self.executor.on_commit(commit)

    def store_only(self, commit: Commit) -> None:
        """The block store's half of a commit, as if the process died right after it."""
        self.store.append(commit.blocks, commit.qcs, commit.commit_qc)

    def close(self) -> None:
        self.app.close()
        self.store.close()

    def reopen(self) -> Node:
        self.close()
        return Node(self.home)

    def record(self) -> dict[int, tuple[bytes | None, list[StoredResult | None]]]:
        """Per height (0 = genesis): the recorded app hash and each transaction's result."""
        return {
            h: (
                self.store.app_hash_at(h),
                [self.store.tx_result(h, i) for i in range(len(TXS[h - 1]) if h else 0)],
            )
            for h in range(self.store.height + 1)
        }

    def state(self) -> dict[str, str | None]:
        return {key: self.app.get(key)[0] for key in FINAL_STATE}


@pytest.fixture
def reference(tmp_path: Path) -> Node:
    """A node that executed every commit and never crashed."""
    node = Node(tmp_path / "reference")
    assert node.executor.start() == 0
    for blocks in COMMITS:
        node.commit(commit_of(blocks))
    return node


def assert_same_as(node: Node, reference: Node) -> None:
    assert node.app.info() == reference.app.info()
    assert node.executor.executed() == reference.executor.executed()
    assert node.record() == reference.record()
    assert node.state() == reference.state() == FINAL_STATE
    for h in range(len(BLOCKS) + 1):
        assert node.app.app_hash_at(h) == reference.app.app_hash_at(h)


def test_executes_committed_blocks_and_records_results(tmp_path: Path) -> None:
    node = Node(tmp_path / "node")
    assert node.executor.start() == 0
    assert node.executor.executed() == (0, GENESIS_APP_HASH)
    assert node.store.app_hash_at(0) == GENESIS_APP_HASH

    node.executor.on_commit(commit_of(COMMITS[0]))

    first = node.executor.take_executed()
    assert [e.block for e in first] == COMMITS[0]
    assert [[r.code for r in e.results] for e in first] == CODES[:2]
    assert node.executor.executed() == (2, first[-1].app_hash)
    assert node.app.get("k") == ("v2", 2)

    for blocks in COMMITS[1:]:
        node.commit(commit_of(blocks))
    assert node.executor.executed() == (5, node.app.info().app_hash)
    assert node.state() == FINAL_STATE
    assert node.store.last_executed() == (5, node.app.info().app_hash)
    hashes = [node.store.app_hash_at(h) for h in range(6)]
    assert hashes == [node.app.app_hash_at(h) for h in range(6)]
    assert hashes == [node.executor.app_hash_at(h) for h in range(6)]
    assert len(set(hashes)) == 6, "every height moves the hash chain"
    assert node.executor.app_hash_mismatches == 0

    # Results are found from a transaction's hash: its location, then its recorded result.
    for height, (txs, codes) in enumerate(zip(TXS, CODES, strict=True), start=1):
        for position, (tx, code) in enumerate(zip(txs, codes, strict=True)):
            assert node.store.tx_location(sha256(tx)) == (height, position)
            stored = node.store.tx_result(height, position)
            assert stored is not None and stored.code == code
    mismatch = node.store.tx_result(2, 1)
    assert mismatch is not None
    assert mismatch.data == b'"v2"', "a failed cas carries the value it found (set just before it)"
    assert node.store.tx_result(2, 3) is None
    assert node.store.tx_result(6, 0) is None
    node.close()


@pytest.mark.parametrize("executed_commits", [0, 1, 2])
def test_replay_after_a_crash_between_block_store_and_application(
    tmp_path: Path, reference: Node, executed_commits: int
) -> None:
    """The block store committed, the process died before the application applied anything of
    those commits: on start, exactly those blocks are executed, once each."""
    node = Node(tmp_path / "node")
    if executed_commits:
        node.executor.start()
    for blocks in COMMITS[:executed_commits]:
        node.commit(commit_of(blocks))
    for blocks in COMMITS[executed_commits:]:
        node.store_only(commit_of(blocks))
    applied = sum(len(c) for c in COMMITS[:executed_commits])
    assert node.app.info().last_height == applied
    assert node.store.height == len(BLOCKS)

    node = node.reopen()
    assert node.executor.start() == len(BLOCKS) - applied
    assert_same_as(node, reference)
    # Starting again finds nothing left to do.
    node = node.reopen()
    assert node.executor.start() == 0
    assert_same_as(node, reference)
    node.close()


def test_replay_then_later_commits_continue(tmp_path: Path, reference: Node) -> None:
    node = Node(tmp_path / "node")
    node.executor.start()
    node.commit(commit_of(COMMITS[0]))
    node.store_only(commit_of(COMMITS[1]))
    node = node.reopen()
    assert node.executor.start() == 1
    assert node.executor.executed()[0] == 3
    node.commit(commit_of(COMMITS[2]))
    assert_same_as(node, reference)
    node.close()


class Crash(Exception):
    """The process dies here."""


@pytest.mark.parametrize("failing_block", [0, 1])
def test_replay_after_a_crash_between_execution_record_and_application_commit(
    tmp_path: Path, reference: Node, monkeypatch: pytest.MonkeyPatch, failing_block: int
) -> None:
    """The execution record of a height is written, the application dies before making that
    height durable: replay re-executes it, with the same results and app hash as before."""
    node = Node(tmp_path / "node")
    node.executor.start()
    for blocks in COMMITS[:2]:
        node.commit(commit_of(blocks))
    crashing = COMMITS[2]  # two blocks: heights 4 and 5

    real_commit = node.app.commit
    calls = 0

    def commit_then_die() -> bytes:
        nonlocal calls
        calls += 1
        if calls == failing_block + 1:
            raise Crash
        return real_commit()

    monkeypatch.setattr(node.app, "commit", commit_then_die)
    with pytest.raises(Crash):
        node.commit(commit_of(crashing))
    crashed_height = crashing[failing_block].height
    # The crash point is the intended one: recorded, not applied.
    assert node.store.height == crashing[-1].height
    assert node.store.app_hash_at(crashed_height) == reference.store.app_hash_at(crashed_height)
    assert node.app.info().last_height == crashed_height - 1
    assert node.store.app_hash_at(crashed_height + 1) is None

    node = node.reopen()
    assert node.app.info().last_height == crashed_height - 1, "the staged block died with the process"
    assert node.executor.start() == crashing[-1].height - crashed_height + 1
    assert_same_as(node, reference)
    node.close()


def test_an_application_ahead_of_the_block_store_is_refused(tmp_path: Path, reference: Node) -> None:
    reference.store.close()
    empty = BlockStore(tmp_path / "lost-blocks.sqlite", genesis_id=GENESIS_BLOCK.id)
    with pytest.raises(StorageError, match="applied height 5 but the block store ends at 0"):
        Executor(reference.app, empty).start()
    # Nothing was recorded or executed on the way to the refusal.
    assert empty.app_hash_at(0) is None
    assert reference.app.info().last_height == 5
    empty.close()
    reference.app.close()


def test_an_application_from_another_chain_is_refused(tmp_path: Path, reference: Node) -> None:
    """Same height, different history: the execution record and the application disagree."""
    other = KeyValueLedger(tmp_path / "other-app.sqlite")
    for height, txs in enumerate(TXS[:2], start=1):
        other.execute_block(height, (*txs, put_tx("extra", str(height))))
        other.commit()
    with pytest.raises(StorageError, match=r"app hash \w+ at height 2, the execution record says"):
        Executor(other, reference.store).start()
    other.close()
    reference.close()


def test_a_wrong_number_of_results_is_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    class Forgetful(KeyValueLedger):
        def execute_block(self, height: int, txs: Sequence[bytes]) -> BlockResult:
            done = super().execute_block(height, txs)
            return replace(done, results=done.results[:-1])

    home = tmp_path / "node"
    home.mkdir()
    app = Forgetful(home / "app.sqlite")
    store = BlockStore(home / "blocks.sqlite", genesis_id=GENESIS_BLOCK.id)
    executor = Executor(app, store)
    executor.start()
    with pytest.raises(StateCorrupt, match="1 results for 2 transactions"):
        executor.on_commit(commit_of(COMMITS[0]))
    assert store.app_hash_at(1) is None
    assert store.tx_result(1, 0) is None
    assert app.info().last_height == 0
    app.close()
    store.close()


# --- app-hash claims ------------------------------------------------------------------------------


def app_hashes(tmp_path: Path, tx_lists: Sequence[tuple[bytes, ...]]) -> list[bytes]:
    """The ledger's app hash after each height, from a scratch ledger (heights 0..len)."""
    scratch = KeyValueLedger(tmp_path / "scratch.sqlite")
    hashes = [scratch.info().app_hash]
    for height, txs in enumerate(tx_lists, start=1):
        scratch.execute_block(height, txs)
        hashes.append(scratch.commit())
    scratch.close()
    return hashes


def claiming(block: Block, app_height: int, app_hash: bytes) -> Block:
    """`block` with a different app-hash claim (hence a different id: its QC must be for this one)."""
    claimed = replace(block, app_height=app_height, app_hash=app_hash)
    assert claimed.id != block.id
    return claimed


def test_app_hash_claims_are_checked_against_what_executed(tmp_path: Path) -> None:
    hashes = app_hashes(tmp_path, TXS)
    wrong = b"\x5a" * 32
    node = Node(tmp_path / "node")
    node.executor.start()
    b1, b2 = BLOCKS[0], claiming(make_block(BLOCKS[0], 2, txs=TXS[1]), 1, hashes[1])
    node.commit(commit_of([b1, b2]))  # b2's claim concerns b1, executed in the same commit
    assert node.executor.app_hash_mismatches == 0

    b3 = claiming(make_block(b2, 3, txs=TXS[2]), 2, wrong)
    node.commit(commit_of([b3]))
    assert node.executor.app_hash_mismatches == 1
    # A false claim is counted, not obeyed: the block still executed, to the honest hash.
    assert node.executor.executed() == (3, hashes[3])

    b4 = claiming(make_block(b3, 4, txs=TXS[3]), 3, hashes[3])
    b5 = claiming(make_block(b4, 5, txs=TXS[4]), 1, hashes[2])  # the right hash, of the wrong height
    node.commit(commit_of([b4, b5]))
    assert node.executor.app_hash_mismatches == 2
    assert node.executor.executed() == (5, hashes[5])
    node.close()


def test_genesis_claims_match_and_default_blocks_claim_genesis(tmp_path: Path) -> None:
    node = Node(tmp_path / "node")
    node.executor.start()
    assert (BLOCKS[0].app_height, BLOCKS[0].app_hash) == (0, GENESIS_APP_HASH)
    node.commit(commit_of(COMMITS[0]))
    assert node.executor.app_hash_mismatches == 0
    wrong_genesis = claiming(make_block(BLOCKS[1], 3, txs=TXS[2]), 0, b"\x01" * 32)
    node.commit(commit_of([wrong_genesis]))
    assert node.executor.app_hash_mismatches == 1
    node.close()


def test_each_mismatch_reaches_the_hook(tmp_path: Path) -> None:
    app = KeyValueLedger(tmp_path / "app.sqlite")
    store = BlockStore(tmp_path / "blocks.sqlite", genesis_id=GENESIS_BLOCK.id)
    seen: list[int] = []
    executor = Executor(app, store, on_mismatch=lambda: seen.append(1))
    executor.start()
    executor._check_claim(replace(BLOCKS[0], app_hash=b"\x07" * 32))  # height 0 is GENESIS_APP_HASH
    assert seen == [1] and executor.app_hash_mismatches == 1
    app.close()
    store.close()


def test_a_commit_costs_the_block_store_one_transaction_per_block(tmp_path: Path) -> None:
    """Group commit: the append, the first block's execution record and the journal's prune are
    one block-store transaction; each further block of a batch adds its own record."""
    db = counting_db()
    store = BlockStore.over(db, "counted", genesis_id=GENESIS_BLOCK.id)
    app = KeyValueLedger(tmp_path / "app.sqlite")
    executor = Executor(app, store)
    executor.start()
    store.add(BLOCKS)
    for commit, expected in zip(COMMITS, (2, 1, 2), strict=True):
        db.commits = 0
        executor.on_commit(commit_of(commit))
        assert db.commits == expected, f"{len(commit)} block(s): {db.commits} block-store commits"
    assert [b.height for b in store.blocks()] == [], "the journal let go of every committed block"
    assert executor.executed()[0] == 5 and store.app_hash_at(5) == executor.executed()[1]
    app.close()


# Under the quorum store two batches may carry one transaction: identical bytes are one
# transaction, executed where they first committed and nowhere else.
REPEATING: list[tuple[bytes, ...]] = [
    (cas_tx("r", None, "1"), put_tx("n", "a")),
    # The cas again (in another batch, a later block) and twice in one block.
    (cas_tx("r", None, "1"), cas_tx("r", "1", "2"), cas_tx("r", "1", "2")),
]


def _results(store: BlockStore, height: int, count: int) -> list[int]:
    return [r.code for i in range(count) if (r := store.tx_result(height, i)) is not None]


def test_a_transaction_committed_twice_is_executed_once(tmp_path: Path) -> None:
    blocks = build_chain(REPEATING)
    node = Node(tmp_path / "node")
    node.executor.start()
    node.commit(commit_of(blocks[:1]))
    node.commit(commit_of(blocks[1:]))
    assert _results(node.store, 1, 2) == [CODE_OK, CODE_OK]
    # Executed again, the cas would fail (CODE_CAS_MISMATCH) and the second cas of block 2 too.
    assert _results(node.store, 2, 3) == [CODE_REPEATED, CODE_OK, CODE_REPEATED]
    assert node.app.get("r")[0] == "2"
    assert node.store.tx_location(sha256(REPEATING[1][0])) == (1, 0)
    assert node.store.tx_location(sha256(REPEATING[1][2])) == (2, 1)
    hashes = [node.store.app_hash_at(h) for h in (1, 2)]
    # Replayed after a crash between the block store and the application (no fast path then),
    # the same results and app hashes.
    other = Node(tmp_path / "other")
    other.executor.start()
    other.commit(commit_of(blocks[:1]))
    other.store_only(commit_of(blocks[1:]))
    other = other.reopen()
    assert other.executor.start() == 1
    assert _results(other.store, 2, 3) == [CODE_REPEATED, CODE_OK, CODE_REPEATED]
    assert [other.store.app_hash_at(h) for h in (1, 2)] == hashes


def test_a_commit_repeating_one_transaction_in_a_thousand_skips_only_it(tmp_path: Path) -> None:
    txs = tuple(put_tx(f"key{i}", "v" * 200) for i in range(1000))
    blocks = build_chain([txs[:500], (*txs[500:], txs[7])])
    node = Node(tmp_path / "node")
    node.executor.start()
    node.commit(commit_of(blocks))
    codes = _results(node.store, 2, 501)
    assert codes[:500] == [CODE_OK] * 500 and codes[500] == CODE_REPEATED


# Deferred execution (the quorum store's decoupled execution): a commit is stored in the step
# that committed it and executed afterwards, or when a question about its height comes first.


def test_a_deferred_commit_is_stored_now_and_executed_later(tmp_path: Path) -> None:
    node = Node(tmp_path / "node", deferred=True)
    app, store, executor = node.app, node.store, node.executor
    executor.start()
    for blocks in COMMITS:
        executor.on_commit(commit_of(blocks))
    assert store.height == len(BLOCKS) and executor.pending == len(BLOCKS)
    assert app.info().last_height == 0 and not executor.take_executed()
    # A question about height 2 executes heights 1 and 2, no more.
    assert executor.app_hash_at(2) is not None
    assert app.info().last_height == 2 and executor.pending == len(BLOCKS) - 2
    assert executor.execute_pending(1) == 1 and app.info().last_height == 3
    assert executor.execute_pending() == len(BLOCKS) - 3 and executor.pending == 0
    assert [done.block.height for done in executor.take_executed()] == list(range(1, len(BLOCKS) + 1))
    assert {key: app.get(key)[0] for key in FINAL_STATE} == FINAL_STATE


def test_deferred_commits_lost_with_the_process_are_replayed(tmp_path: Path, reference: Node) -> None:
    deferred = Node(tmp_path / "node", deferred=True)
    deferred.executor.start()
    for blocks in COMMITS:
        deferred.commit(commit_of(blocks))
    deferred.executor.execute_pending(2)
    node = deferred.reopen()  # the process dies with three stored blocks not executed
    assert node.executor.start() == len(BLOCKS) - 2
    assert_same_as(node, reference)
