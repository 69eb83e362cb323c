"""The real replica under the simulator: honest campaigns stay safe and live, Twins stays safe,
replays are exact, and deliberately weakened replicas are caught."""

from __future__ import annotations

import dataclasses

import pytest

import bft.core.chain_state as chain_state_module
from bft.campaign import FACTORIES, factories_with
from bft.core.blocktree import BlockTree
from bft.core.builder import build_replica
from bft.core.commit_rule import TWO_CHAIN
from bft.core.messages import Block
from bft.core.program import Program
from bft.core.safety_store import DurableFileStore, Filesystem
from bft.sim import HONEST, NodeContext, SimSpec, run_campaign, run_schedule
from bft.sim.invariants import AGREEMENT, CERTIFIED_COMMIT, PERSIST_BEFORE_SEND
from bft.sim.world import TraceEntry


def _campaign(spec: SimSpec, seeds: range) -> None:
    result = run_campaign(spec, seeds, FACTORIES)
    print(f"\nn={spec.nodes} twins={spec.twins}: {result.summary()}")
    assert result.ok, result.report()
    assert result.schedules == len(seeds)
    assert result.total_commits >= spec.min_new_commits * len(seeds)


# CI's short version (the README's campaigns run hundreds of seeds each).
def test_honest_campaign_n4() -> None:
    _campaign(SimSpec(nodes=4), range(60))


def test_honest_campaign_n7() -> None:
    _campaign(SimSpec(nodes=7), range(40))


def test_twins_campaign_n4() -> None:
    _campaign(SimSpec(nodes=4, twins=True), range(60))


def test_twins_campaign_n7() -> None:
    _campaign(SimSpec(nodes=7, twins=True), range(30))


# The two-chain commit option (Jolteon), in CI's short version too.
@pytest.mark.parametrize(
    ("spec", "seeds"),
    [
        (SimSpec(nodes=4, commit_chain=TWO_CHAIN), 24),
        (SimSpec(nodes=7, commit_chain=TWO_CHAIN), 12),
        (SimSpec(nodes=4, twins=True, commit_chain=TWO_CHAIN), 24),
        (SimSpec(nodes=4, short_timeouts=True, commit_chain=TWO_CHAIN), 24),
    ],
    ids=["n4", "n7", "twins-n4", "short-timeouts-n4"],
)
def test_two_chain_campaign(spec: SimSpec, seeds: int) -> None:
    _campaign(spec, range(seeds))


# The quorum store (batches, proofs of availability, deferred execution), CI's short version.
@pytest.mark.parametrize(
    ("spec", "seeds"),
    [
        (SimSpec(nodes=4, quorum_store=True), 24),
        (SimSpec(nodes=7, quorum_store=True), 8),
        (SimSpec(nodes=4, twins=True, quorum_store=True), 20),
        (SimSpec(nodes=4, short_timeouts=True, quorum_store=True), 16),
    ],
    ids=["n4", "n7", "twins-n4", "short-timeouts-n4"],
)
def test_quorum_store_campaign(spec: SimSpec, seeds: int) -> None:
    _campaign(spec, range(seeds))


def test_replay_is_exact() -> None:
    spec = SimSpec(nodes=4)
    for seed in (3, 17):
        t1: list[TraceEntry] = []
        t2: list[TraceEntry] = []
        assert run_schedule(spec, seed, FACTORIES, trace=t1) == run_schedule(spec, seed, FACTORIES, trace=t2)
        assert t1 == t2


def test_weakened_commit_rule_is_caught_by_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Commit a block as soon as it is certified (a one-chain): unsafe under equivocation.
    def one_chain(tree: BlockTree, certified: Block, length: int) -> Block | None:
        return certified

    monkeypatch.setattr(chain_state_module, "committed_by", one_chain)
    spec = SimSpec(nodes=4, twins=True)
    for seed in range(300):
        r = run_schedule(spec, seed, FACTORIES)
        # A one-chain commit has no consecutive three-chain above it (certified-commit), and
        # the twins' equivocation then splits honest replicas (agreement).
        if any(v.kind in (AGREEMENT, CERTIFIED_COMMIT) for v in r.violations):
            assert f"bft sim --nodes 4 --byzantine twins --seed {seed}" in r.failure_report()
            return
    pytest.fail("Twins did not catch a one-chain commit rule in 300 seeds")


class _NoDirSync:
    """A filesystem whose fsync_dir does nothing: renames never become durable."""

    def __init__(self, fs: Filesystem) -> None:
        self._fs = fs

    def read(self, name: str) -> bytes | None:
        return self._fs.read(name)

    def write(self, name: str, data: bytes) -> None:
        self._fs.write(name, data)

    def fsync(self, name: str) -> None:
        self._fs.fsync(name)

    def rename(self, src: str, dst: str) -> None:
        self._fs.rename(src, dst)

    def fsync_dir(self) -> None:
        pass


def test_store_without_directory_sync_is_caught() -> None:
    def sloppy(ctx: NodeContext) -> Program:
        store = DurableFileStore(_NoDirSync(ctx.fs))
        ports = dataclasses.replace(ctx.ports, safety_store=store)
        return build_replica(ctx.config, ctx.key, ports, ctx.now, ctx.sig_cache, bytes(16))

    r = run_schedule(SimSpec(nodes=4), 1, factories_with({HONEST: sloppy}))
    assert PERSIST_BEFORE_SEND in {v.kind for v in r.violations}
