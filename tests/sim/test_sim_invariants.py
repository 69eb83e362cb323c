"""Each invariant fires on a hand-built violation and stays quiet on a clean history."""

from __future__ import annotations

from bft.core.actions import Commit
from bft.core.messages import Block, Proposal, QuorumCert, SafetyState, Timeout, Vote
from bft.core.types import BlockId, ValidatorIndex, View
from bft.sim.invariants import (
    AGREEMENT,
    CERTIFIED_COMMIT,
    DOUBLE_SIGN,
    LIVENESS,
    PERSIST_BEFORE_SEND,
    SAFETY_REGRESSION,
    SYNC_TARGET,
    UNJUSTIFIED_JOIN,
    VALIDITY,
    InvariantChecker,
)
from bft.sim.network import Instance

A, B, C = Instance(0), Instance(1), Instance(2)
BYZ = Instance(3)
GENESIS = BlockId(b"\x00" * 32)
SIG = b"\x01" * 64


def _qc(view: int, block_id: bytes) -> QuorumCert:
    return QuorumCert(View(view), BlockId(block_id), ())


def _block(height: int, parent: bytes, txs: tuple[bytes, ...], view: int | None = None) -> Block:
    v = height if view is None else view
    return Block(View(v), height, BlockId(parent), ValidatorIndex(0), _qc(v - 1, parent), txs)


def _chain(*txs: tuple[bytes, ...]) -> list[Block]:
    blocks, parent = [], GENESIS
    for h, t in enumerate(txs, 1):
        b = _block(h, parent, t)
        blocks.append(b)
        parent = b.id
    return blocks


def _commit(*blocks: Block) -> Commit:
    """A commit of `blocks` with the evidence an honest replica gives: a QC per block, and
    (b', b'') directly above the last one in consecutive views, b'' certified."""
    last = blocks[-1]
    middle = _block(last.height + 1, last.id, (), last.view + 1)
    top = _block(last.height + 2, middle.id, (), last.view + 2)
    return Commit(
        tuple(blocks), tuple(_qc(b.view, b.id) for b in blocks), _qc(top.view, top.id), (middle, top)
    )


def _propose(c: InvariantChecker, *blocks: Block) -> None:
    for b in blocks:
        c.observe_proposal(Proposal(b, None, SIG))


def _state(voted: int, locked: int = 0, timeout: int = 0) -> SafetyState:
    return SafetyState(View(voted), _qc(locked, GENESIS), View(timeout), None, None)


def _vote(view: int, block: bytes, author: int = 0) -> Vote:
    return Vote(View(view), BlockId(block), ValidatorIndex(author), SIG)


def _timeout(view: int, qc_view: int, author: int = 0) -> Timeout:
    return Timeout(View(view), _qc(qc_view, GENESIS), ValidatorIndex(author), SIG)


def _checker() -> InvariantChecker:
    return InvariantChecker([A, B, C], min_new_commits=2)


def _kinds(c: InvariantChecker) -> list[str]:
    return [v.kind for v in c.violations]


def test_clean_history_is_quiet() -> None:
    c = _checker()
    b1, b2, b3 = _chain((b"t1",), (b"t2", b"t3"), (b"t4",))
    _propose(c, b1, b2, b3)
    c.start_liveness()
    c.on_save(0.1, A, _state(1))
    c.on_send(0.1, A, _vote(1, b1.id), _state(1))
    c.on_send(0.2, A, _vote(1, b1.id), _state(1))  # re-sending the same bytes is fine
    c.on_save(0.3, A, _state(1, timeout=2))
    c.on_send(0.3, A, _timeout(2, 1), _state(1, timeout=2))
    c.on_commit(1.0, A, _commit(b1, b2))
    c.on_commit(1.0, B, _commit(b1))
    c.on_commit(1.1, B, _commit(b2, b3))
    c.on_commit(1.2, A, _commit(b3))
    c.on_commit(1.2, C, _commit(b1, b2, b3))
    c.on_load(2.0, A, _state(1, timeout=2))
    c.on_load(2.0, B, None)
    assert c.lagging() == []
    c.finish_liveness(3.0, 10.0)
    assert c.violations == []


def test_agreement_two_blocks_at_one_height() -> None:
    c = _checker()
    (b1,) = _chain((b"x",))
    other = _block(1, GENESIS, (b"y",), view=2)
    _propose(c, b1, other)
    c.on_commit(1.0, A, _commit(b1))
    c.on_commit(1.0, B, _commit(other))
    assert _kinds(c) == [AGREEMENT]
    assert "height 1" in c.violations[0].message


def test_agreement_ignores_byzantine_commits() -> None:
    c = _checker()
    (b1,) = _chain((b"x",))
    other = _block(1, GENESIS, (b"y",), view=2)
    _propose(c, b1, other)
    c.on_commit(1.0, A, _commit(b1))
    c.on_commit(1.0, BYZ, _commit(other))
    assert c.violations == []


def test_commits_must_be_consecutive_and_extend_the_previous() -> None:
    c = _checker()
    b1, b2, b3 = _chain((b"1",), (b"2",), (b"3",))
    _propose(c, b1, b2, b3)
    c.on_commit(1.0, A, _commit(b1))
    c.on_commit(1.0, A, _commit(b3))  # skips height 2
    assert _kinds(c) == [AGREEMENT]
    c2 = _checker()
    _propose(c2, b1, b2)
    c2.on_commit(1.0, A, _commit(b2))  # first commit must be height 1
    assert _kinds(c2) == [AGREEMENT]
    c3 = _checker()
    stray = _block(2, b"\x07" * 32, (b"s",))
    _propose(c3, b1, stray)
    c3.on_commit(1.0, A, _commit(b1, stray))  # height 2 not extending b1
    assert _kinds(c3) == [AGREEMENT]


def test_validity_unproposed_tx() -> None:
    c = _checker()
    (b1,) = _chain((b"never-proposed",))
    c.on_commit(1.0, A, _commit(b1))
    assert _kinds(c) == [VALIDITY]


def test_validity_tx_at_two_heights() -> None:
    c = _checker()
    b1, b2 = _chain((b"dup",), (b"dup",))
    _propose(c, b1, b2)
    c.on_commit(1.0, A, _commit(b1, b2))
    assert _kinds(c) == [VALIDITY]
    assert "heights 1 and 2" in c.violations[0].message


def test_double_vote_and_double_timeout() -> None:
    c = _checker()
    c.on_send(1.0, A, _vote(3, b"\x01" * 32), _state(3))
    c.on_send(1.5, A, _vote(3, b"\x02" * 32), _state(3))
    c.on_send(2.0, B, _timeout(4, 1, author=1), _state(0, timeout=4))
    c.on_send(2.5, B, _timeout(4, 2, author=1), _state(0, timeout=4))
    assert _kinds(c) == [DOUBLE_SIGN, DOUBLE_SIGN]
    # Byzantine instances may equivocate.
    c.on_send(3.0, BYZ, _vote(3, b"\x01" * 32, author=3), None)
    c.on_send(3.0, BYZ, _vote(3, b"\x02" * 32, author=3), None)
    assert len(c.violations) == 2


def test_a_join_by_timeouts_needs_an_honest_timeout_for_the_view() -> None:
    c = _checker()
    c.on_send(1.0, BYZ, _timeout(5, 1, author=3), None)
    c.on_view_change(1.1, A, 5, "timeouts")  # the Byzantine timeout alone
    c.on_send(2.0, B, _timeout(6, 1, author=1), _state(0, timeout=6))
    c.on_view_change(2.1, A, 6, "timeouts")  # one honest timeout among them: fine
    c.on_view_change(2.2, A, 8, "tc")  # a TC or a QC is not a join
    c.on_view_change(2.3, BYZ, 9, "timeouts")  # nor is a Byzantine instance's view
    assert _kinds(c) == [UNJUSTIFIED_JOIN]
    assert "view 5" in c.violations[0].message


def test_a_sync_target_above_every_certified_block_is_flagged() -> None:
    c = _checker()  # no certifier: no QC counts as seen, so no block is certified
    c.on_sync_target(1.0, A, 0)
    c.on_sync_target(1.0, BYZ, 50)  # a Byzantine instance's target is its own business
    c.on_sync_target(2.0, A, 7)
    assert _kinds(c) == [SYNC_TARGET]
    assert "height 7" in c.violations[0].message


def test_vote_or_timeout_sent_before_it_is_durable() -> None:
    c = _checker()
    c.on_send(1.0, A, _vote(5, b"\x01" * 32), _state(4))
    c.on_send(1.0, B, _vote(1, b"\x01" * 32, author=1), None)
    c.on_send(1.0, C, _timeout(5, 1, author=2), _state(9, timeout=4))
    assert _kinds(c) == [PERSIST_BEFORE_SEND] * 3


def test_safety_state_regression_on_save() -> None:
    for older, newer in [
        (_state(5), _state(4)),
        (_state(5, locked=3), _state(6, locked=2)),
        (_state(5, timeout=7), _state(5, timeout=6)),
    ]:
        c = _checker()
        c.on_save(1.0, A, older)
        c.on_save(2.0, A, newer)
        assert _kinds(c) == [SAFETY_REGRESSION]


def test_load_must_equal_last_completed_save() -> None:
    c = _checker()
    c.on_save(1.0, A, _state(5))
    c.on_load(2.0, A, _state(4))
    c.on_load(2.0, B, _state(1))  # B never saved
    assert _kinds(c) == [SAFETY_REGRESSION, SAFETY_REGRESSION]


def test_liveness() -> None:
    c = _checker()
    b1, b2, b3 = _chain((b"1",), (b"2",), (b"3",))
    _propose(c, b1, b2, b3)
    c.on_commit(0.5, A, _commit(b1))
    c.start_liveness()  # baseline: A at 1, B and C at 0
    c.on_commit(1.0, A, _commit(b2))
    c.on_commit(1.0, B, _commit(b1, b2))
    assert c.lagging() == [A, C]
    assert c.lagging(exclude=[C]) == [A]
    c.on_commit(1.5, A, _commit(b3))
    c.finish_liveness(60.0, 50.0, exclude=[])
    assert _kinds(c) == [LIVENESS]
    assert c.violations[0].instance == "2"


def test_certified_commit_needs_a_consecutive_three_chain_and_its_qcs() -> None:
    b1, b2 = _chain((b"t1",), (b"t2",))
    good = _commit(b1)
    middle, top = good.proof
    skipped = _block(top.height, middle.id, (), top.view + 1)  # a view between b' and b''
    bad = [
        Commit((b1,), (), good.commit_qc, good.proof),  # no QC for the block
        Commit((b1,), (_qc(b1.view, b2.id),), good.commit_qc, good.proof),  # a QC for another block
        Commit((b1,), good.qcs, good.commit_qc, ()),  # no proof
        Commit((b1,), good.qcs, _qc(skipped.view, skipped.id), (middle, skipped)),  # views skip
        Commit((b1,), good.qcs, _qc(middle.view, middle.id), good.proof),  # QC for b', not b''
        Commit((b1,), good.qcs, good.commit_qc, (b2, top)),  # b' is not above the block
    ]
    for commit in bad:
        c = _checker()
        _propose(c, b1, b2)
        c.on_commit(1.0, A, commit)
        assert CERTIFIED_COMMIT in _kinds(c), commit
    c = _checker()
    _propose(c, b1)
    c.on_commit(1.0, A, good)
    assert CERTIFIED_COMMIT not in _kinds(c)
