"""The safety rules: the vote rule, the lock, timeouts, persist-before-release, and restarts."""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_helpers import (
    CHAIN,
    GENESIS_BLOCK,
    GENESIS_QC,
    KEYS,
    MemoryStore,
    certifier,
    chain,
    encoded,
    make_block,
    make_qc,
    qc_for,
    safety_rules,
    sign_timeout,
    sign_vote,
    tree_with,
    vi,
    with_state,
)

from bft.core import wire
from bft.core.errors import InvariantViolation
from bft.core.messages import Block, Timeout, Vote
from bft.core.refusals import RefusalReason, Refused
from bft.core.safety import SafetyRules, first_state
from bft.core.safety_store import DurableFileStore
from bft.core.types import View


def voted(result: Vote | Refused) -> Vote:
    assert isinstance(result, Vote), f"expected a vote, got refusal {result!r}"
    return result


def refused(result: object, reason: RefusalReason | None = None) -> str:
    """The detail of a refusal (of `reason`, if given)."""
    assert isinstance(result, Refused), f"expected a refusal, got {result!r}"
    assert reason is None or result.reason is reason, f"{result.reason} is not {reason}"
    return result.detail


# --- the vote rule ---------------------------------------------------------------------------


def test_vote_is_signed_by_me_for_the_block_and_verifies() -> None:
    b1 = make_block(GENESIS_BLOCK, 1)
    tree = tree_with([b1])
    vote = voted(safety_rules(me=2).vote(b1, tree))
    assert (vote.view, vote.block_id, vote.author) == (1, b1.id, 2)
    assert certifier().check_vote(vote) is None


def test_vote_requires_a_view_above_the_last_voted_view() -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    fork1 = make_block(GENESIS_BLOCK, 1, txs=(b"other",))
    low = make_block(GENESIS_BLOCK, 1, txs=(b"low",))
    tree = tree_with([b1, b2, fork1])
    s = safety_rules()
    voted(s.vote(b2, tree))
    # A lower view is refused, never signed.
    assert "already voted" in refused(s.vote(b1, tree), RefusalReason.ALREADY_VOTED)
    assert "already voted" in refused(s.vote(fork1, tree))
    tree.add(low)
    assert "already voted" in refused(s.vote(low, tree))
    assert s.state.last_voted_view == 2


def test_vote_refused_in_a_view_already_timed_out() -> None:
    blocks = chain(GENESIS_BLOCK, [5, 6])
    tree = tree_with(blocks)
    s = safety_rules()
    assert isinstance(s.timeout(View(5), GENESIS_QC), Timeout)
    assert "timed out" in refused(s.vote(blocks[0], tree), RefusalReason.ALREADY_TIMED_OUT)
    # The next view is still open.
    assert voted(s.vote(blocks[1], tree)).view == 6


def test_timeout_in_a_lower_view_refused_after_voting() -> None:
    (b3,) = chain(GENESIS_BLOCK, [3])
    s = safety_rules()
    voted(s.vote(b3, tree_with([b3])))
    refused(s.timeout(View(2), GENESIS_QC), RefusalReason.BELOW_LAST_VOTE)
    # Timing out the view just voted in is allowed (the view may still fail).
    assert isinstance(s.timeout(View(3), GENESIS_QC), Timeout)


def _locked_on_b1() -> tuple[SafetyRules, list[Block]]:
    """Safety rules locked on QC(b1) (view 1), after observing b2 certified; chain b1 <- b2 <- b3."""
    b1, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    s = safety_rules()
    s.observe_certified(b2, qc_for(b2))
    assert s.state.locked_qc.view == 1 and s.state.locked_qc.block_id == b1.id
    return s, [b1, b2, b3]


def test_lock_allows_a_block_extending_the_locked_block() -> None:
    s, (b1, b2, b3) = _locked_on_b1()
    # Its QC (for b1) is not newer than the lock, but it extends b1.
    sibling = make_block(b1, 4, txs=(b"sibling",))
    tree = tree_with([b1, b2, b3, sibling])
    assert sibling.qc.view == s.state.locked_qc.view
    assert voted(s.vote(sibling, tree)).block_id == sibling.id


def test_lock_allows_a_conflicting_block_with_a_newer_qc() -> None:
    s, (b1, b2, b3) = _locked_on_b1()
    fork = make_block(GENESIS_BLOCK, 2, txs=(b"fork",))
    newer = make_block(fork, 5, qc=make_qc(fork.id, 2))
    tree = tree_with([b1, b2, b3, fork, newer])
    assert not tree.extends(newer, b1.id)
    assert voted(s.vote(newer, tree)).block_id == newer.id


def test_lock_refuses_a_conflicting_block_with_an_older_qc() -> None:
    s, (b1, b2, b3) = _locked_on_b1()
    conflicting = make_block(GENESIS_BLOCK, 4, txs=(b"conflict",))
    assert conflicting.qc.view == 0
    tree = tree_with([b1, b2, b3, conflicting])
    assert "lock" in refused(s.vote(conflicting, tree), RefusalReason.LOCK_CONFLICT)
    assert s.state.last_voted_view == 0
    assert s.state.last_vote is None


def test_lock_refuses_a_conflicting_block_whose_qc_is_as_old_as_the_lock() -> None:
    s, (b1, b2, b3) = _locked_on_b1()
    # A fork certified in the lock's own view (only a forged quorum can do that): not newer.
    fork = make_block(GENESIS_BLOCK, 1, txs=(b"fork",))
    on_fork = make_block(fork, 4, qc=make_qc(fork.id, 1))
    tree = tree_with([b1, b2, b3, fork, on_fork])
    assert on_fork.qc.view == s.state.locked_qc.view
    assert "lock" in refused(s.vote(on_fork, tree))


def test_lock_only_moves_forward() -> None:
    _, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    s = safety_rules()
    s.observe_certified(b3, qc_for(b3))
    assert s.state.locked_qc.view == 2
    s.observe_certified(b2, qc_for(b2))
    assert s.state.locked_qc.view == 2


# --- persist before release ------------------------------------------------------------------


def test_vote_is_saved_before_it_is_returned() -> None:
    b1 = make_block(GENESIS_BLOCK, 1)
    store = MemoryStore()
    vote = voted(safety_rules(store).vote(b1, tree_with([b1])))
    assert len(store.saves) == 1
    saved = store.saves[0]
    assert saved.last_voted_view == 1
    assert saved.last_vote == encoded(vote)


def test_timeout_is_saved_before_it_is_returned() -> None:
    store = MemoryStore()
    timeout = safety_rules(store).timeout(View(4), GENESIS_QC)
    assert isinstance(timeout, Timeout)
    assert [(s.highest_timeout_view, s.last_timeout) for s in store.saves] == [(4, encoded(timeout))]


def test_a_failing_save_releases_no_vote_and_changes_no_state() -> None:
    b1 = make_block(GENESIS_BLOCK, 1)
    store = MemoryStore()
    s = safety_rules(store)
    before = s.state
    store.fail = True
    with pytest.raises(OSError):
        s.vote(b1, tree_with([b1]))
    with pytest.raises(OSError):
        s.timeout(View(1), GENESIS_QC)
    assert s.state == before
    assert store.saves == []
    # Once the disk works again the same request is signed (nothing was half-remembered).
    store.fail = False
    assert voted(s.vote(b1, tree_with([b1]))).view == 1


def test_the_lock_is_saved_with_the_next_vote() -> None:
    b1, b2, b3 = chain(GENESIS_BLOCK, [1, 2, 3])
    store = MemoryStore()
    s = safety_rules(store)
    s.observe_certified(b2, qc_for(b2))
    voted(s.vote(b3, tree_with([b1, b2, b3])))
    assert store.saves[-1].locked_qc == qc_for(b1)


# --- restarts: never sign something different for a view already signed ----------------------


def test_crash_between_persist_and_send_resends_the_identical_vote() -> None:
    block_a = make_block(GENESIS_BLOCK, 1, txs=(b"A",))
    block_b = make_block(GENESIS_BLOCK, 1, txs=(b"B",))
    tree = tree_with([block_a, block_b])
    store = MemoryStore()
    vote_a = voted(safety_rules(store).vote(block_a, tree))
    # The process dies before sending; the restart rebuilds the rules from the same store.
    restarted = safety_rules(store)
    again = voted(restarted.vote(block_b, tree))
    assert again.block_id == block_a.id
    assert encoded(again) == encoded(vote_a)
    assert len(store.saves) == 1


def test_same_instance_asked_twice_in_a_view_resends_the_identical_vote() -> None:
    block_a = make_block(GENESIS_BLOCK, 1, txs=(b"A",))
    block_b = make_block(GENESIS_BLOCK, 1, txs=(b"B",))
    tree = tree_with([block_a, block_b])
    s = safety_rules()
    vote_a = voted(s.vote(block_a, tree))
    assert encoded(voted(s.vote(block_b, tree))) == encoded(vote_a)


def _restarted_at_view_10(store: MemoryStore) -> SafetyRules:
    (old,) = chain(GENESIS_BLOCK, [10])
    stored_vote = sign_vote(0, 10, old.id)
    stored_timeout = sign_timeout(0, 10, GENESIS_QC)
    store.state = with_state(
        last_voted_view=View(10),
        highest_timeout_view=View(10),
        last_vote=encoded(stored_vote),
        last_timeout=encoded(stored_timeout),
    )
    return safety_rules(store)


def test_stale_restart_never_signs_a_new_vote_in_old_views() -> None:
    store = MemoryStore()
    s = _restarted_at_view_10(store)
    assert store.state is not None
    stored_vote = store.state.last_vote
    new9, new10, new11 = (make_block(GENESIS_BLOCK, v, txs=(b"new",)) for v in (9, 10, 11))
    tree = tree_with([new9, new10, new11])
    refused(s.vote(new9, tree))
    ten = s.vote(new10, tree)
    # View 10: either refused or the stored bytes, never a signature for the new block.
    if isinstance(ten, Vote):
        assert encoded(ten) == stored_vote
        assert ten.block_id != new10.id
    assert store.saves == []
    # The rule is not "never vote": view 11 is signed.
    assert voted(s.vote(new11, tree)).block_id == new11.id


def test_restart_without_stored_vote_bytes_still_refuses_the_last_voted_view() -> None:
    store = MemoryStore(with_state(last_voted_view=View(10)))
    s = safety_rules(store)
    new10, new11 = (make_block(GENESIS_BLOCK, v, txs=(b"new",)) for v in (10, 11))
    tree = tree_with([new10, new11])
    assert "already voted" in refused(s.vote(new10, tree))
    assert store.saves == []
    assert voted(s.vote(new11, tree)).view == 11


def test_stale_restart_never_signs_a_new_timeout_in_old_views() -> None:
    store = MemoryStore()
    s = _restarted_at_view_10(store)
    assert store.state is not None
    stored_timeout = store.state.last_timeout
    higher_qc = make_qc(make_block(GENESIS_BLOCK, 3).id, 3)
    refused(s.timeout(View(9), GENESIS_QC))
    ten = s.timeout(View(10), higher_qc)
    assert isinstance(ten, Timeout)
    assert encoded(ten) == stored_timeout
    assert ten.high_qc == GENESIS_QC
    assert store.saves == []
    eleven = s.timeout(View(11), higher_qc)
    assert isinstance(eleven, Timeout) and eleven.high_qc == higher_qc


def test_timeout_resent_identically_for_the_same_view_across_restart() -> None:
    store = MemoryStore()
    first = safety_rules(store).timeout(View(3), GENESIS_QC)
    assert isinstance(first, Timeout)
    other_qc = make_qc(make_block(GENESIS_BLOCK, 2).id, 2)
    for rules in (safety_rules(store), safety_rules(store)):
        again = rules.timeout(View(3), other_qc)
        assert isinstance(again, Timeout)
        assert encoded(again) == encoded(first)
    assert len(store.saves) == 1
    assert certifier().check_timeout(first) is None


def test_stored_bytes_decode_to_the_message_released() -> None:
    b1 = make_block(GENESIS_BLOCK, 1)
    store = MemoryStore()
    vote = voted(safety_rules(store).vote(b1, tree_with([b1])))
    assert store.state is not None and store.state.last_vote is not None
    assert wire.decode(store.state.last_vote) == vote


# --- the state never regresses -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["last_voted_view", "highest_timeout_view", "locked_qc"])
def test_persisting_a_lower_state_is_an_invariant_violation(field: str) -> None:
    b1, b2 = chain(GENESIS_BLOCK, [1, 2])
    store = MemoryStore(
        with_state(last_voted_view=View(5), highest_timeout_view=View(5), locked_qc=qc_for(b2))
    )
    s = safety_rules(store)
    lower = {
        "last_voted_view": replace(s.state, last_voted_view=View(4)),
        "highest_timeout_view": replace(s.state, highest_timeout_view=View(4)),
        "locked_qc": replace(s.state, locked_qc=qc_for(b1)),
    }[field]
    with pytest.raises(InvariantViolation):
        s._persist(lower)
    assert store.saves == []
    assert s.state == store.state
    # Equal or higher is fine (so the check is not simply "always raise").
    s._persist(replace(s.state, last_voted_view=View(6)))
    assert store.saves[-1].last_voted_view == 6


# --- the durable record ------------------------------------------------------------------------


class RecordingFs:
    """A Filesystem that logs every operation; `synced` holds what a crash would leave."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, ...]] = []
        self.files: dict[str, bytes] = {}
        self.synced: dict[str, bytes] = {}
        self.fail_on: str | None = None

    def _log(self, *op: str) -> None:
        if op[0] == self.fail_on:
            raise OSError(f"{op[0]} failed")
        self.ops.append(op)

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)

    def write(self, name: str, data: bytes) -> None:
        self._log("write", name)
        self.files[name] = data

    def fsync(self, name: str) -> None:
        self._log("fsync", name)
        self.synced[name] = self.files[name]

    def rename(self, src: str, dst: str) -> None:
        self._log("rename", src, dst)
        self.files[dst] = self.files.pop(src)

    def fsync_dir(self) -> None:
        self._log("fsync_dir")
        self.synced = {k: v for k, v in self.files.items()}


def test_durable_store_writes_temp_fsyncs_renames_then_fsyncs_the_directory() -> None:
    fs = RecordingFs()
    store = DurableFileStore(fs)
    assert store.load() is None
    store.save(first_state(CHAIN))  # as `bft testnet` does
    fs.ops.clear()
    b1 = make_block(GENESIS_BLOCK, 1)
    s = SafetyRules(KEYS[0], vi(0), store, certifier(), GENESIS_QC)
    vote = voted(s.vote(b1, tree_with([b1])))
    record, temp = DurableFileStore.RECORD, DurableFileStore.TEMP
    assert fs.ops == [("write", temp), ("fsync", temp), ("rename", temp, record), ("fsync_dir",)]
    assert fs.synced[record] == fs.files[record]
    loaded = DurableFileStore(fs).load()
    assert loaded == s.state
    assert loaded is not None and loaded.last_vote == encoded(vote)
    # The restart re-sends the same bytes from the durable record.
    again = SafetyRules(KEYS[0], vi(0), DurableFileStore(fs), certifier(), GENESIS_QC)
    assert encoded(voted(again.vote(make_block(GENESIS_BLOCK, 1, txs=(b"B",)), tree_with([b1])))) == encoded(
        vote
    )


@pytest.mark.parametrize("failing", ["write", "fsync", "rename", "fsync_dir"])
def test_durable_store_failure_releases_nothing(failing: str) -> None:
    fs = RecordingFs()
    store = DurableFileStore(fs)
    store.save(first_state(CHAIN))
    s = SafetyRules(KEYS[0], vi(0), store, certifier(), GENESIS_QC)
    fs.fail_on = failing
    b1 = make_block(GENESIS_BLOCK, 1)
    with pytest.raises(OSError):
        s.vote(b1, tree_with([b1]))
    assert s.state.last_voted_view == 0
    assert s.state.last_vote is None
