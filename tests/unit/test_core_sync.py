"""Block sync and the fetcher's buffers: a replica thousands of blocks behind catches up by height
ranges, every answer fits one message whatever the block sizes, bad answers are refused without
a trace in the tree, and what waits for missing blocks stays within its bounds in count and bytes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    GENESIS_QC,
    KEYS,
    VALIDATORS,
    chain,
    config,
    leader,
    make_block,
    make_proposal,
    make_qc,
    make_replica,
    qc_for,
    refusals,
    vi,
)

from bft.core import wire
from bft.core.actions import Action, Commit, Refusal, Send
from bft.core.app_state import block_chain_hash
from bft.core.blocktree import BlockTree
from bft.core.chain import MemoryChain
from bft.core.fetcher import SYNC_BATCH_BLOCKS, answer_block_request, answer_sync_request
from bft.core.journal import MemoryJournal
from bft.core.messages import Block, BlockRequest, BlockResponse, Message, Proposal, SyncRequest, SyncResponse
from bft.core.refusals import RefusalReason
from bft.core.replica import Replica
from bft.core.types import ValidatorIndex, View


def committed_chain(blocks: list[Block]) -> MemoryChain:
    """A committed chain holding all but the last two of `blocks` (consecutive views), which
    are the three-chain's b' and b''; each block's QC is the next one's."""
    store = MemoryChain(GENESIS_BLOCK, GENESIS_QC)
    committed = blocks[:-2]
    qcs = tuple(b.qc for b in blocks[1:-1])
    store.on_commit(Commit(tuple(committed), qcs, qc_for(blocks[-1]), (blocks[-2], blocks[-1])))
    return store


def sends(actions: list[Action]) -> list[tuple[int, Message]]:
    return [(a.to, a.msg) for a in actions if isinstance(a, Send)]


def pump(
    lagging: Replica,
    server: Replica,
    lag_index: int,
    server_index: int,
    first: list[Action],
    out: list[Action],
) -> int:
    """Deliver every message between the two until none is left; returns round trips made. The
    lagging replica's actions go to `out` too."""
    queue = [(lag_index, to, m) for to, m in sends(first) if to == server_index]
    trips = 0
    for _ in range(10_000):
        if not queue:
            return trips
        src, dst, msg = queue.pop(0)
        if dst == server_index:
            trips += 1
            out = server.on_message(vi(src), msg, 0.0)
            queue += [(server_index, to, m) for to, m in sends(out) if to == lag_index]
        else:
            actions = lagging.on_message(vi(src), msg, 0.0)
            out += actions
            queue += [(lag_index, to, m) for to, m in sends(actions) if to == server_index]
    raise AssertionError("the exchange did not end")


@pytest.fixture(scope="module")
def long_chain() -> list[Block]:
    return chain(GENESIS_BLOCK, range(1, 1203))  # 1,200 committed and the two above


def _far_behind(long_chain: list[Block]) -> tuple[Replica, Replica, int, ValidatorIndex, Proposal]:
    """A server that committed all but the top two of `long_chain` (its journal holds those), a
    fresh replica far behind it, and the server's proposal for the next view, which shows the lag;
    it claims the app hash after the height the QC for its parent commits (`claim_height`)."""
    top = long_chain[-1]
    view = top.view + 1
    proposer = leader(view)
    lag = next(i for i in range(4) if i != proposer)
    journal = MemoryJournal()
    journal.add(long_chain[-2:])
    server = make_replica(proposer, chain=committed_chain(long_chain), journal=journal)
    claimed = long_chain[-3]
    block = replace(make_block(top, view), app_height=claimed.height, app_hash=block_chain_hash(claimed))
    return make_replica(lag), server, lag, proposer, make_proposal(block)


def test_a_replica_far_behind_syncs_by_height_and_commits_the_same_chain(long_chain: list[Block]) -> None:
    lagging, server, lag, proposer, proposal = _far_behind(long_chain)
    view = proposal.block.view
    first = lagging.on_message(proposer, proposal, 0.0)
    msgs = [m for _, m in sends(first)]
    assert SyncRequest(1, SYNC_BATCH_BLOCKS) in msgs
    assert not any(isinstance(m, BlockRequest) for m in msgs), "no walk back by hash from that far"
    out: list[Action] = []
    trips = pump(lagging, server, lag, proposer, first, out)
    # Synced by height up to what the server committed, then the uncommitted tail by hash; the
    # proposal's QC then commits all but the top two, and the replica votes for the proposal.
    assert lagging.committed_height == len(long_chain) - 2
    assert lagging.last_committed.id == long_chain[-3].id
    assert trips <= len(long_chain) // SYNC_BATCH_BLOCKS + 4, f"{trips} round trips"
    assert lagging.safety_state.last_voted_view == view, "it voted for the proposal that showed the lag"
    lagging.check_invariants()


def test_sync_responses_fit_one_message_whatever_the_block_sizes() -> None:
    big = (b"x" * 900_000,)
    blocks = [make_block(GENESIS_BLOCK, 1, txs=big)]
    for v in range(2, 12):
        blocks.append(make_block(blocks[-1], v, txs=big))
    store = committed_chain(blocks)
    cfg = config(0)
    response = answer_sync_request(SyncRequest(1, SYNC_BATCH_BLOCKS), store, cfg)
    assert 1 <= len(response.blocks) < 9
    assert len(wire.encode(response)) <= wire.MAX_MESSAGE_SIZE_BYTES
    assert response.qc is not None and response.qc.block_id == response.blocks[-1].id
    # The largest block the limits allow goes alone, and still fits.
    largest = make_block(GENESIS_BLOCK, 1, txs=tuple(b"y" * 1000 for _ in range(1000)))
    alone = answer_sync_request(SyncRequest(1, 8), committed_chain([largest, *chain(largest, [2, 3])]), cfg)
    assert len(alone.blocks) == 1 and len(wire.encode(alone)) <= wire.MAX_MESSAGE_SIZE_BYTES
    # Above the tip: an empty answer, so the asker moves on.
    assert answer_sync_request(SyncRequest(99, 8), store, cfg) == SyncResponse((), None)


def test_block_responses_fit_one_message_whatever_the_block_sizes() -> None:
    big = (b"z" * 900_000,)
    blocks = [make_block(GENESIS_BLOCK, 1, txs=big)]
    for v in range(2, 40):
        blocks.append(make_block(blocks[-1], v, txs=big))
    store = committed_chain(blocks)
    tip = store.tip()
    assert tip is not None
    tree = BlockTree(*tip)
    response = answer_block_request(BlockRequest(blocks[-3].id, 32), tree, store, config(0))
    assert isinstance(response, BlockResponse) and 1 <= len(response.blocks) < 32
    assert len(wire.encode(response)) <= wire.MAX_MESSAGE_SIZE_BYTES


def test_a_block_limit_that_cannot_fit_a_message_is_refused_at_config() -> None:
    with pytest.raises(ValueError, match="message limit"):
        config(0, max_block_bytes=wire.MAX_MESSAGE_SIZE_BYTES - 100)
    config(0, max_block_bytes=4_000_000)  # fits, with its certificates


def _asked_lagging(long_chain: list[Block]) -> tuple[Replica, ValidatorIndex, SyncRequest]:
    top = long_chain[-1]
    view = top.view + 1
    proposer = leader(view)
    lag = next(i for i in range(4) if i != proposer)
    lagging = make_replica(lag)
    out = lagging.on_message(proposer, make_proposal(make_block(top, view)), 0.0)
    request = next(m for _, m in sends(out) if isinstance(m, SyncRequest))
    return lagging, proposer, request


@pytest.mark.parametrize(
    "flaw",
    ["unasked-peer", "wrong-start", "broken-link", "forged-qc", "qc-for-another-block", "no-qc"],
)
def test_bad_sync_responses_are_refused_and_leave_nothing(long_chain: list[Block], flaw: str) -> None:
    lagging, proposer, request = _asked_lagging(long_chain)
    run = tuple(long_chain[request.start_height - 1 : request.start_height - 1 + 40])
    qc = qc_for(run[-1])
    sender = proposer
    if flaw == "unasked-peer":
        sender = vi(next(i for i in range(4) if i not in (proposer, lagging._config.me)))
    elif flaw == "wrong-start":
        run = run[1:]
    elif flaw == "broken-link":
        run = (*run[:10], *run[11:])
    elif flaw == "forged-qc":
        qc = replace(qc, signatures=tuple((s, bytes(64)) for s, _ in qc.signatures))
    elif flaw == "qc-for-another-block":
        qc = qc_for(run[-2])
    response = SyncResponse(run, None if flaw == "no-qc" else qc)
    out = lagging.on_message(sender, response, 0.0)
    assert [r for r in refusals(out) if r.what == "sync response"], flaw
    assert lagging.committed_height == 0 and lagging.statistics()["tree_blocks"] == 1


def test_a_sync_request_unanswered_for_a_timeout_goes_to_another_peer(long_chain: list[Block]) -> None:
    lagging, proposer, request = _asked_lagging(long_chain)
    later: list[Action] = []
    for _ in range(3):  # the start-up timer, then the view's timeout
        deadline = lagging.next_deadline()
        assert deadline is not None
        later += lagging.on_timer(deadline)
    retried = [(to, m) for to, m in sends(later) if isinstance(m, SyncRequest)]
    assert retried and all(to != proposer for to, _ in retried)
    assert retried[0][1].start_height == request.start_height


def test_orphan_chains_are_bounded_in_blocks_and_bytes() -> None:
    """Hash-walk answers that do not reach the tree wait as orphans, within both bounds."""
    big = (b"o" * 200_000,)
    blocks = [make_block(GENESIS_BLOCK, 1, txs=big)]
    for v in range(2, 30):
        blocks.append(make_block(blocks[-1], v, txs=big))
    budget = 1_000_000  # five of these blocks
    me, peer = 0, vi(1)
    replica = make_replica(me, max_buffered_bytes=budget, max_fetch_blocks=64)
    refused: list[Refusal] = []
    # QCs for blocks near the top make the replica ask for them; answers hold four blocks each.
    for k in (27, 22, 17, 12):
        target = blocks[k]
        out = replica.on_message(peer, _qc_info(target), 0.0)
        assert any(isinstance(m, BlockRequest) and m.block_id == target.id for _, m in sends(out))
        answer = BlockResponse(tuple(reversed(blocks[k - 3 : k + 1])))
        refused += refusals(replica.on_message(peer, answer, 0.0))
        stats = replica.statistics()
        assert stats["orphan_bytes"] <= budget
        replica.check_invariants()
    full = [r for r in refused if r.reason is RefusalReason.BUFFER_FULL]
    assert any("orphan blocks" in r.detail for r in full), refused
    assert replica.statistics()["orphan_blocks"] <= 5


def _qc_info(block: Block) -> Message:
    from bft.core.messages import SyncInfo

    return SyncInfo(qc_for(block), None)


def test_waiting_proposals_are_bounded_in_bytes() -> None:
    big = tuple(b"p%d" % i + b"." * 99_000 for i in range(9))  # about 900 KB a proposal
    me = 0
    replica = make_replica(me, max_buffered_bytes=2_000_000)
    view = next(v for v in range(2, 100) if leader(v) != me)
    refused = 0
    for k in range(6):
        unknown = make_block(GENESIS_BLOCK, 1, txs=(b"u%d" % k,))
        qc = make_qc(unknown.id, 1)
        block = Block(View(view), 2, unknown.id, vi(leader(view)), qc, big)
        out = replica.on_message(leader(view), make_proposal(block), 0.0)
        refused += sum(
            r.reason is RefusalReason.BUFFER_FULL and "proposals" in r.detail for r in refusals(out)
        )
        assert replica.statistics()["waiting_proposal_bytes"] <= 2_000_000
        replica.check_invariants()
    assert refused >= 3 and replica.statistics()["waiting_proposals"] == 2


def test_validators_and_keys_are_the_test_chains() -> None:
    # The fixtures above sign with the test chain's keys; a guard against a silent change there.
    assert VALIDATORS.n == len(KEYS) == 4


@pytest.mark.parametrize("excess", [1, 10**9])
def test_a_height_no_chain_can_have_reached_is_refused_as_a_sync_target(
    long_chain: list[Block], excess: int
) -> None:
    """A Byzantine leader's proposal carries a real QC but claims a height above what the QC's
    view allows (one per view since the root): no sync towards it, and a typed refusal."""
    top = long_chain[-1]
    view = top.view + 1
    proposer = leader(view)
    lagging = make_replica(next(i for i in range(4) if i != proposer))
    honest = make_block(top, view)
    # The root is genesis (view 0, height 0) and the QC is of view top.view: the honest height
    # top.height + 1 is the highest a child of that QC's block can have.
    assert honest.height == top.view + 1
    inflated = replace(honest, height=honest.height + excess)
    out = lagging.on_message(proposer, make_proposal(inflated), 0.0)
    too_high = [r for r in refusals(out) if r.reason is RefusalReason.SYNC_TARGET_TOO_HIGH]
    assert too_high and f"height {inflated.height}" in too_high[0].detail
    assert not any(isinstance(m, SyncRequest) for _, m in sends(out))
    assert lagging.statistics()["sync_target"] == 0
    # The same proposal at its true height makes it sync (the cap is tight, not too tight).
    out = lagging.on_message(proposer, make_proposal(honest), 0.0)
    assert any(isinstance(m, SyncRequest) for _, m in sends(out))
    assert lagging.statistics()["sync_target"] == honest.height - 1
    lagging.check_invariants()


def _skipping_views(heights: int) -> list[int]:
    """Views for blocks 1..heights where the two blocks at the top of every sync range (heights
    256k - 1 and 256k) each skip a view (a timeout before them), so that no range's top blocks
    form a three-chain; the three-chains are inside the ranges."""
    views, view = [], 0
    for height in range(1, heights + 1):
        view += 2 if height % SYNC_BATCH_BLOCKS in (0, SYNC_BATCH_BLOCKS - 1) else 1
        views.append(view)
    return views


def test_a_synced_range_whose_top_is_no_three_chain_is_committed_by_the_one_inside() -> None:
    """Found by a chaos run: a node wiped and restarted 900 blocks behind synced two ranges whose
    top blocks skipped views, committed neither (only the top QC was applied), and then stopped
    syncing until a commit that could not come. Each range commits up to its highest inner
    three-chain now, so the replica catches up the whole chain."""
    long = chain(GENESIS_BLOCK, _skipping_views(1202))
    tops = [long[k * SYNC_BATCH_BLOCKS - 1] for k in range(1, 4)]
    assert all(t.view != long[k * SYNC_BATCH_BLOCKS - 2].view + 1 for k, t in enumerate(tops, 1))
    lagging, server, lag, proposer, proposal = _far_behind(long)
    first = lagging.on_message(proposer, proposal, 0.0)
    out: list[Action] = []
    pump(lagging, server, lag, proposer, first, out)
    assert lagging.committed_height == len(long) - 2
    assert lagging.last_committed.id == long[-3].id
    assert not [r for r in refusals(out) if r.reason is RefusalReason.BUFFER_FULL]
    lagging.check_invariants()
