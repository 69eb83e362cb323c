"""The serving budget: what answering one validator's block and sync requests may cost, and the
rules for what it can plausibly need; an honest catch-up never meets it, a flood does at once.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    chain,
    config,
    leader,
    make_block,
    make_proposal,
    make_replica,
    refusals,
    vi,
)
from test_core_sync import committed_chain, sends

from bft.core import wire
from bft.core.actions import Action
from bft.core.app_state import block_chain_hash
from bft.core.blocktree import BlockTree
from bft.core.chain import MemoryChain
from bft.core.errors import InvariantViolation
from bft.core.fetcher import answer_block_request
from bft.core.journal import MemoryJournal
from bft.core.messages import Block, BlockRequest, BlockResponse, SyncRequest, SyncResponse
from bft.core.refusals import RefusalReason, Subject
from bft.core.serving import (
    ANSWER_BURST,
    SYNC_BURST,
    ServingBudget,
    ServingLimits,
    TokenBucket,
)
from bft.core.types import ValidatorIndex

RATE_LIMITED = RefusalReason.RATE_LIMITED


def test_a_bucket_starts_full_refills_at_its_rate_and_never_past_its_capacity() -> None:
    bucket = TokenBucket(10.0, 4.0)
    assert bucket.available(100.0) == 10.0
    bucket.take(10.0, 100.0)
    assert bucket.available(100.0) == 0.0
    assert bucket.available(100.5) == pytest.approx(2.0)
    assert bucket.available(1000.0) == 10.0, "capped at the capacity"
    bucket.take(3.0, 1000.0)
    assert bucket.available(999.0) == pytest.approx(7.0), "a clock that goes back refills nothing"
    assert bucket.available(1000.25) == pytest.approx(8.0)
    assert bucket.most_in(2.0) == 18.0
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0)


@pytest.fixture(scope="module")
def served() -> list[Block]:
    return chain(GENESIS_BLOCK, range(1, 603))  # 600 committed and the two above


def _server(blocks: list[Block]) -> tuple[BlockTree, MemoryChain]:
    store = committed_chain(blocks)
    tip = store.tip()
    assert tip is not None
    return BlockTree(*tip), store


def test_block_requests_are_limited_like_the_honest_askers_own_bound(served: list[Block]) -> None:
    """An honest replica has at most max_pending_blocks fetches outstanding and asks again only
    after a base timeout: that many a base timeout are answered, the next one is refused. (One
    block each here: answers of 32 blocks run into the byte budget first, 64 of them a second.)"""
    server = make_replica(1, chain=committed_chain(served))
    cfg = config(1)
    request = BlockRequest(served[300].id, 1)
    for i in range(cfg.max_pending_blocks):
        out = server.on_message(vi(2), request, 10.0)
        assert [type(m) for _, m in sends(out)] == [BlockResponse], f"request {i} was not answered"
    out = server.on_message(vi(2), request, 10.0)
    assert sends(out) == []
    [refusal] = refusals(out)
    assert (refusal.what, refusal.reason, refusal.sender) == (
        Subject.BLOCK_REQUEST,
        RefusalReason.RATE_LIMITED,
        2,
    )
    # Another validator has a budget of its own; the first one's refills over a base timeout.
    assert sends(server.on_message(vi(3), request, 10.0)) != []
    assert sends(server.on_message(vi(2), request, 10.0 + cfg.base_timeout_s)) != []
    assert server.statistics()["serving_peers"] == 2
    server.check_invariants()


def test_a_sync_range_answered_within_a_base_timeout_is_a_repeat(served: list[Block]) -> None:
    server = make_replica(1, chain=committed_chain(served))
    first = server.on_message(vi(2), SyncRequest(1, 256), 5.0)
    [(_, answer)] = sends(first)
    assert isinstance(answer, SyncResponse) and answer.blocks[0].height == 1
    # The same range again (a duplicate on the wire, or a replay): refused, cheaply.
    again = server.on_message(vi(2), SyncRequest(1, 256), 5.5)
    assert sends(again) == [] and [r.reason for r in refusals(again)] == [RefusalReason.REPEATED_REQUEST]
    # The next range, what an honest asker asks for once the first lands, is answered; so is the
    # same range for another validator, and the first range once a base timeout has passed.
    assert sends(server.on_message(vi(2), SyncRequest(257, 256), 5.5)) != []
    assert sends(server.on_message(vi(3), SyncRequest(1, 256), 5.5)) != []
    assert sends(server.on_message(vi(2), SyncRequest(1, 256), 6.0)) != []


def test_a_range_above_our_committed_height_costs_nothing(served: list[Block]) -> None:
    server = make_replica(1, chain=committed_chain(served))
    for i in range(5_000):
        out = server.on_message(vi(2), SyncRequest(601 + i, 256), 1.0)
        assert sends(out) == [(2, SyncResponse((), None))] and refusals(out) == []
    # None of it was spent: a full burst of real ranges is still answered.
    for k in range(SYNC_BURST):
        [(_, answer)] = sends(server.on_message(vi(2), SyncRequest(1 + k * 50, 50), 1.0))
        assert isinstance(answer, SyncResponse) and answer.blocks
    out = server.on_message(vi(2), SyncRequest(500, 50), 1.0)
    assert [r.reason for r in refusals(out)] == [RefusalReason.RATE_LIMITED]
    assert "sync ranges a second" in refusals(out)[0].detail


def test_answer_bytes_are_budgeted_and_charged_at_least_their_encoded_size() -> None:
    big = (b"x" * 900_000,)
    blocks = [make_block(GENESIS_BLOCK, 1, txs=big)]
    for v in range(2, 3 * ANSWER_BURST + 3):
        blocks.append(make_block(blocks[-1], v, txs=big))
    tree, store = _server(blocks)
    cfg = config(1)
    limits = ServingLimits.of(cfg)
    budget = ServingBudget(limits)
    sent, answers = 0, 0
    for request in range(3 * ANSWER_BURST):
        refused = budget.admit_block_request(vi(2), 0.0)
        if refused is not None:
            break
        answer = answer_block_request(BlockRequest(blocks[-3 - request].id, 32), tree, store, cfg)
        assert isinstance(answer, BlockResponse) and len(answer.blocks) == 4
        assert len(wire.encode(answer)) <= limits.charge(answer.blocks) <= limits.answer_bytes
        budget.answered_blocks(vi(2), answer, 0.0)
        sent += limits.charge(answer.blocks)
        answers += 1
    # Answers of 3.6 MB each: the burst's 8 full answers' worth, and not a byte over it.
    assert refused is not None and refused.reason is RefusalReason.RATE_LIMITED
    assert "answer bytes" in refused.detail
    assert ANSWER_BURST <= answers <= ANSWER_BURST + 1
    assert sent <= limits.bytes_capacity
    # A second later, a second's worth of bytes is back.
    assert budget.admit_block_request(vi(2), 1.0) is None
    # Tiny blocks are charged what reading and encoding them costs: 256 of them, a full answer.
    tiny = chain(GENESIS_BLOCK, range(1, 257))
    assert limits.charge(tuple(tiny)) == limits.overhead_bytes + 256 * limits.block_floor_bytes
    assert limits.charge(tuple(tiny)) <= limits.answer_bytes


def test_the_budget_table_is_bounded_by_the_validator_set(served: list[Block]) -> None:
    server = make_replica(0, chain=committed_chain(served))
    for step in range(2_000):
        for peer in (1, 2, 3):
            server.on_message(vi(peer), SyncRequest(1 + step % 600, 256), step * 0.01)
            server.on_message(vi(peer), BlockRequest(served[step % 600].id, 32), step * 0.01)
    stats = server.statistics()
    assert stats["serving_peers"] == 3
    assert stats["serving_refused"] > 0
    server.check_invariants()
    budget = ServingBudget(ServingLimits.of(config(0)))
    for peer in range(5):
        budget.admit_block_request(ValidatorIndex(peer), 0.0)
    with pytest.raises(InvariantViolation, match="5 peers"):
        budget.check_bounds(4)


def test_an_honest_catch_up_at_three_times_the_nodes_commit_speed_is_never_refused() -> None:
    """The node commits about 1.7 ranges of 256 blocks a second (see `bft.core.serving`); an asker
    that takes 0.2 s a round trip, three times as fast, syncs 3,000 blocks without one refusal."""
    blocks = chain(GENESIS_BLOCK, range(1, 3003))
    top = blocks[-1]
    view = top.view + 1
    proposer = leader(view)
    lag = next(i for i in range(4) if i != proposer)
    journal = MemoryJournal()
    journal.add(blocks[-2:])
    server = make_replica(proposer, chain=committed_chain(blocks), journal=journal)
    lagging = make_replica(lag)
    claimed = blocks[-3]
    block = replace(make_block(top, view), app_height=claimed.height, app_hash=block_chain_hash(claimed))
    now = 100.0
    queue = [(to, m) for to, m in sends(lagging.on_message(vi(proposer), make_proposal(block), now))]
    answered: list[Action] = []
    for _ in range(1_000):
        requests = [m for to, m in queue if to == proposer]
        if not requests:
            break
        queue = []
        now += 0.2
        for request in requests:
            out = server.on_message(vi(lag), request, now)
            answered += out
            for to, m in sends(out):
                if to == lag:
                    queue += sends(lagging.on_message(vi(proposer), m, now + 0.1))
    assert refusals(answered) == []
    assert lagging.committed_height == len(blocks) - 2
    assert lagging.safety_state.last_voted_view == view, "caught up, it voted for the proposal"
