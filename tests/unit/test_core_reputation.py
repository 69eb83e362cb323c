"""Leader reputation (`bft.core.reputation`): the bench rules over a window, the schedule they
make, the failed-leader record, its encoding, and a cluster of replicas with one validator down:
it costs its first term, and no view after that."""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_helpers import (
    GENESIS_BLOCK,
    Cluster,
    N,
    config,
    make_block,
    make_proposal,
    refusals,
    vi,
)

from bft.core import wire
from bft.core.errors import DecodeError
from bft.core.leader import TERM_VIEWS, leader_of
from bft.core.refusals import RefusalReason
from bft.core.reputation import (
    Record,
    benched,
    failed_leaders_between,
    reputation_leader,
    window_blocks,
)
from bft.core.types import ValidatorIndex, View

CONFIG = config(0, leader_reputation=True)


def rec(proposer: int, failed: tuple[int, ...] = (), voters: tuple[int, ...] = (0, 1, 2)) -> Record:
    return Record(vi(proposer), tuple(vi(v) for v in failed), frozenset(vi(v) for v in voters))


def healthy(length: int) -> list[Record]:
    """A window of `length` blocks proposed in turn by 0..n-1, each certified by everyone."""
    return [rec(i % N, voters=tuple(range(N))) for i in range(length)]


# The bench rules.


def test_nobody_is_benched_in_a_healthy_window() -> None:
    assert benched(N, healthy(window_blocks(N))) == frozenset()
    assert benched(N, []) == frozenset()


def test_a_validator_that_failed_and_shows_no_sign_of_life_is_benched() -> None:
    # Newest first: 3 failed just before the newest block, and has neither proposed nor voted since.
    window = [rec(1, voters=(0, 1, 2)), rec(0, failed=(3,), voters=(0, 1, 2)), *healthy(10)]
    assert benched(N, window) == {vi(3)}


def test_a_vote_after_the_failure_ends_the_bench() -> None:
    window = [rec(1, voters=(0, 1, 3)), rec(0, failed=(3,), voters=(0, 1, 2)), *healthy(10)]
    assert benched(N, window) == frozenset()


def test_a_proposal_after_the_failure_ends_the_bench() -> None:
    window = [rec(3, voters=(0, 1, 2)), rec(0, failed=(3,), voters=(0, 1, 2)), *healthy(10)]
    assert benched(N, window) == frozenset()


def test_two_failures_bench_a_validator_that_votes_but_does_not_lead() -> None:
    window = [
        rec(1, voters=(0, 1, 3)),
        rec(0, failed=(3,), voters=(0, 1, 3)),
        rec(2, voters=(0, 1, 3)),
        rec(0, failed=(3,), voters=(0, 1, 3)),
        *healthy(6),
    ]
    assert benched(N, window) == {vi(3)}


def test_a_validator_silent_for_a_whole_window_is_benched_but_not_before_it_is_full() -> None:
    silent = [rec(i % 3, voters=(0, 1, 2)) for i in range(window_blocks(N))]
    assert benched(N, silent) == {vi(3)}
    assert benched(N, silent[:-1]) == frozenset()  # a young chain: 3 may simply not have had a turn


def test_at_most_f_are_benched_the_most_failed_first() -> None:
    window = [
        rec(0, failed=(2, 3), voters=(0, 1)),
        rec(1, failed=(3,), voters=(0, 1)),
        *[rec(i % 2, voters=(0, 1)) for i in range(8)],
    ]
    assert benched(N, window) == {vi(3)}  # f = 1: 3 failed twice, 2 once


# The schedule.


def test_the_schedule_is_the_fixed_one_while_nobody_is_benched() -> None:
    window = healthy(window_blocks(N))
    for view in range(1, 400):
        assert reputation_leader(CONFIG, View(view), window) == leader_of(CONFIG, View(view))


def test_a_benched_validator_never_leads_and_its_terms_go_to_others() -> None:
    window = [rec(1, voters=(0, 1, 3)), rec(0, failed=(2,), voters=(0, 1, 3)), *healthy(10)]
    assert benched(N, window) == {vi(2)}
    leaders = [reputation_leader(CONFIG, View(v), window) for v in range(1, 400)]
    assert vi(2) not in leaders
    assert {vi(0), vi(1), vi(3)} == set(leaders)
    for v in range(1, 400):
        if leader_of(CONFIG, View(v)) != vi(2):
            assert leaders[v - 1] == leader_of(CONFIG, View(v))


def test_the_failed_leaders_record_names_the_skipped_views_leaders() -> None:
    window = healthy(12)
    assert failed_leaders_between(CONFIG, View(10), View(11), window) == ()
    expected = tuple(sorted({leader_of(CONFIG, View(v)) for v in range(11, 14)}))
    assert failed_leaders_between(CONFIG, View(10), View(14), window) == expected
    # A gap of a million views looks at a few rounds only, and names every leader.
    huge = failed_leaders_between(CONFIG, View(10), View(10**6), window)
    assert huge == tuple(vi(i) for i in range(N))


# The record on the wire.


def test_a_block_with_failed_leaders_round_trips_and_one_without_encodes_as_before() -> None:
    block = make_block(GENESIS_BLOCK, 3)
    blamed = replace(block, failed_leaders=(vi(1), vi(2)))
    assert wire.decode_block(wire.encode_block(blamed)) == blamed
    assert blamed.id != block.id  # the record is in the id
    assert len(wire.decode_block(wire.encode_block(block)).failed_leaders) == 0
    assert wire.encode_block(replace(blamed, failed_leaders=())) == wire.encode_block(block)


@pytest.mark.parametrize("bad", [[], [2, 1], [1, 1]])
def test_a_record_that_is_empty_unsorted_or_repeated_does_not_decode(bad: list[int]) -> None:
    import cbor2

    block = make_block(GENESIS_BLOCK, 3)
    fields = cbor2.loads(wire.encode_block(block))
    fields = [*fields, [], bad]
    with pytest.raises(DecodeError):
        wire.decode_block(cbor2.dumps(fields))


def test_a_chain_without_reputation_refuses_a_block_that_blames_anyone() -> None:
    cluster = Cluster()
    block = replace(
        make_block(GENESIS_BLOCK, 1, proposer=leader_of(config(0), View(1))), failed_leaders=(vi(3),)
    )
    actions = cluster.replicas[2].on_message(block.proposer, make_proposal(block), 0.0)
    assert [r.reason for r in refusals(actions)] == [RefusalReason.WRONG_LEADER]


def test_under_reputation_a_false_record_is_refused() -> None:
    cluster = Cluster(overrides={"leader_reputation": True})
    leader = leader_of(config(0), View(1))
    honest = make_block(GENESIS_BLOCK, 1, proposer=leader)
    false = replace(honest, failed_leaders=(ValidatorIndex((leader + 1) % N),))
    voter = next(i for i in range(N) if i != leader)
    actions = cluster.replicas[voter].on_message(leader, make_proposal(false), 0.0)
    refused = refusals(actions)
    assert [r.reason for r in refused] == [RefusalReason.WRONG_LEADER]
    assert "failed leaders" in refused[0].detail


# A cluster with one validator down.


def _failed_views(cluster: Cluster, replica: int) -> list[int]:
    """Views with no block in replica's committed chain, up to its last commit."""
    views = {b.view for b in cluster.commits[replica]}
    return [v for v in range(1, max(views)) if v not in views]


@pytest.mark.parametrize("reputation", [False, True])
def test_a_validator_down_costs_its_first_term_only_under_reputation(reputation: bool) -> None:
    overrides = {"leader_reputation": True} if reputation else {}
    cluster = Cluster(overrides=overrides)
    down = 3
    cluster.down.add(down)
    cluster.run(lambda: len(cluster.commits[0]) >= 120, max_steps=200_000)
    failed = _failed_views(cluster, 0)
    last = cluster.commits[0][-1].view
    turns = [v for v in range(1, last) if leader_of(config(0), View(v)) == down]
    if reputation:
        # Its first term fails (with the view before it, whose votes went to it), and nothing after.
        assert failed and max(failed) <= turns[0] + TERM_VIEWS, (failed, turns[:4])
        records = [b.failed_leaders for b in cluster.commits[0] if b.failed_leaders]
        assert len(records) == 1 and vi(down) in records[0], records
    else:
        # Every one of its terms fails, round after round.
        assert set(turns) <= set(failed)
        assert len(failed) > len(turns) > 20
