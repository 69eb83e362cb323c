"""The harness end to end with fake programs: determinism, faults, and violations caught.

The fake protocol: validator 0 proposes a block every tick and commits it at once; every
validator re-broadcasts its recent blocks so others catch up; followers commit in order, save
their safety state and vote. It is not BFT; it exercises the plumbing (delivery, codec, timers,
crashes and restarts, the disk, the commit log, invariants).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bft.campaign import factories_with
from bft.core.actions import Action, Broadcast, Commit, Send, SendRaw
from bft.core.app_state import claim_height
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.commit_rule import THREE_CHAIN
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SafetyState,
    Vote,
)
from bft.core.program import Program
from bft.core.types import BlockId, ValidatorIndex, View
from bft.sim import HONEST, NodeContext, SimSpec, run_campaign, run_schedule
from bft.sim.invariants import (
    AGREEMENT,
    DOUBLE_SIGN,
    LIVENESS,
    PERSIST_BEFORE_SEND,
    PROGRAM_ERROR,
)
from bft.sim.runner import sim_key
from bft.sim.world import TraceEntry
from crypto.hashing import sha256
from crypto.signing import SignatureCache

GENESIS = BlockId(b"\x00" * 32)
TICK_S = 0.5
KEEP = 60


class FakeChain:
    """A stand-in program for testing the harness: node 0 proposes a block each tick, everyone
    commits each block that extends its tip at once. It holds every validator's key, so its
    commits carry the evidence the checkers ask for (real QCs, a consecutive three-chain, the app
    hash the claim rule fixes, blocks in their view's leader's name), without any of the protocol."""

    def __init__(
        self, ctx: NodeContext, *, save_first: bool = True, salt: bytes = b"", revote: bool = False
    ) -> None:
        self.ctx = ctx
        self.me = ctx.index
        self.save_first = save_first
        self.salt = salt
        root = ctx.ports.committed.tip() or genesis(ctx.config.chain_id)
        below = ctx.ports.committed.block_by_id(root[0].parent_id) if root[0].height > 0 else None
        self.blocks: list[Block] = [root[0]] if below is None else [below, root[0]]
        journaled = [b for b in ctx.ports.journal.blocks() if b.parent_id == root[0].id]
        self.proposed: Block | None = journaled[0] if journaled else None
        self.announced = False
        loaded = ctx.ports.safety_store.load()
        self.voted = 0 if loaded is None else int(loaded.last_voted_view)
        self.deadline = ctx.now + TICK_S
        self.pending: SafetyState | None = None
        # Re-send the vote for the tip on the first tick after a (re)start.
        self.revote = revote

    @property
    def height(self) -> int:
        return self.blocks[-1].height

    @property
    def tip(self) -> BlockId:
        return self.blocks[-1].id

    def _qc(self, block: Block) -> QuorumCert:
        certifier = Certifier(
            self.ctx.config.chain_id, self.ctx.config.validators, GENESIS_QC_OF(self.ctx), SignatureCache()
        )
        votes = [certifier.sign_vote(sim_key(i), ValidatorIndex(i), block.view, block.id) for i in range(3)]
        return QuorumCert(block.view, block.id, tuple((v.author, v.signature) for v in votes))

    def _extend(self, block: Block) -> list[Action]:
        """`block` extends the tip: commit it at once, with a three-chain made up for the proof
        (it holds every key, so the certificates are real; nobody else ever sees those blocks)."""
        self.blocks = [*self.blocks[-KEEP:], block]
        acts: list[Action] = []
        if self.me != 0:  # votes for it (saved first, unless that is the bug under test)
            view = block.view
            state = SafetyState(view, QuorumCert(View(0), GENESIS, ()), View(0), None, None)
            vote = Vote(view, BlockId(sha256(block.id + self.salt)), self.me, b"\x05" * 64)
            if self.save_first:
                self.ctx.ports.safety_store.save(state)
            else:  # the bug: the vote leaves now, the state is saved on the next event
                self.pending = state
            acts.append(Send(ValidatorIndex(0), vote))
        qc = self._qc(block)
        middle = Block(View(block.view + 1), block.height + 1, block.id, self.me, qc, ())
        top = Block(View(block.view + 2), block.height + 2, middle.id, self.me, self._qc(middle), ())
        commit = Commit((block,), (qc,), self._qc(top), (middle, top))
        self.ctx.ports.executed.on_commit(commit)
        return [commit, *acts]

    def _flush(self) -> None:
        if self.pending is not None:
            self.ctx.ports.safety_store.save(self.pending)
            self.pending = None

    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        self._flush()
        acts: list[Action] = []
        blocks: tuple[Block, ...] = (msg.block,) if isinstance(msg, Proposal) else ()
        if isinstance(msg, BlockResponse):
            blocks = msg.blocks
        for b in sorted(blocks, key=lambda b: b.height):
            if b.height == self.height + 1 and b.parent_id == self.tip:
                acts += self._extend(b)
        return acts

    def on_timer(self, now: float) -> list[Action]:
        self._flush()
        self.deadline = now + TICK_S
        acts: list[Action] = []
        if self.revote and self.me != 0 and self.height > 0:
            self.revote = False
            v = self.blocks[-1].view
            vote = Vote(v, BlockId(sha256(self.tip + self.salt)), self.me, b"\x05" * 64)
            acts.append(Send(ValidatorIndex(0), vote))
        if self.me == 0:
            # Its own last proposal commits now, once the network (and the checkers) saw it; one
            # found in the journal after a restart goes out again first.
            if self.proposed is not None and self.proposed.parent_id == self.tip:
                if not self.announced:
                    self.announced = True
                    return [*acts, Broadcast(Proposal(self.proposed, None, b"\x00" * 64))]
                acts += self._extend(self.proposed)
            parent = self.blocks[-1]
            middle = self.blocks[-2] if len(self.blocks) > 1 else None
            app_height = claim_height(parent, middle, THREE_CHAIN)
            app_hash = self.ctx.ports.executed.app_hash_at(app_height)
            assert app_hash is not None
            txs = self.ctx.ports.payload.payload_for(View(parent.view + 1), ())
            qc = self._qc(parent) if parent.height > 0 else GENESIS_QC_OF(self.ctx)
            view = View(parent.view + 1)
            # In the name of the view's leader, as validity asks (it holds every key).
            leader = leader_of(self.ctx.config, view)
            block = Block(view, parent.height + 1, parent.id, leader, qc, txs, app_height, app_hash)
            # Journaled before it leaves, so a restart commits the same block, not another one.
            self.ctx.ports.journal.add((block,))
            acts.append(Broadcast(Proposal(block, None, b"\x00" * 64)))
            self.proposed, self.announced = block, True
        if self.blocks:
            acts.append(Broadcast(BlockResponse(tuple(self.blocks[-30:]))))
        return acts

    def on_payload(self, now: float) -> list[Action]:
        return []  # proposes on its timer; the simulator never calls this

    def next_deadline(self) -> float | None:
        return self.deadline


def GENESIS_QC_OF(ctx: NodeContext) -> QuorumCert:
    return genesis(ctx.config.chain_id)[1]


def fake(*, save_first: bool = True) -> Callable[[NodeContext], Program]:
    return lambda ctx: FakeChain(ctx, save_first=save_first)


FACTORIES = factories_with({HONEST: fake()})
# The fake chain is no consensus protocol: it cannot survive every node crashing at once, nor
# catch up after a long absence, nor a wiped data directory.
SPEC = SimSpec(
    nodes=4,
    max_gst_s=10.0,
    window_s=30.0,
    total_crashes=False,
    late_crashes=False,
    production=False,
    wipe_rate=0.0,
)


def test_same_seed_same_result_and_trace() -> None:
    t1: list[TraceEntry] = []
    t2: list[TraceEntry] = []
    r1 = run_schedule(SPEC, 11, FACTORIES, trace=t1)
    r2 = run_schedule(SPEC, 11, FACTORIES, trace=t2)
    assert r1 == r2
    assert t1 == t2 and len(t1) > 100
    r3 = run_schedule(SPEC, 12, FACTORIES)
    assert (r3.events, r3.sim_time_s) != (r1.events, r1.sim_time_s)


def test_clean_fake_campaign_has_no_violations_and_exercises_faults() -> None:
    seen: list[int] = []
    result = run_campaign(SPEC, range(60), FACTORIES, on_result=lambda r: seen.append(r.seed))
    assert seen == list(range(60))
    assert result.ok, result.report()
    assert result.schedules == 60
    assert result.total_commits > 60 * 3
    assert result.schedules_per_s > 0
    assert "60 schedules" in result.summary()


def test_crashes_and_restarts_happen_and_keep_state() -> None:
    for seed in range(40):
        trace: list[TraceEntry] = []
        r = run_schedule(SPEC, seed, FACTORIES, trace=trace)
        assert r.ok, r.failure_report()
        kinds = {c.kind for c in r.plan.crashes}
        if len(kinds) >= 2:
            assert any("crash" in what for _, _, what in trace)
            assert any("incarnation 2" in what for _, _, what in trace)
            return
    pytest.fail("no seed in 0..39 crashed a node twice kinds")


def test_vote_before_save_is_caught() -> None:
    result = run_campaign(SPEC, range(5), factories_with({HONEST: fake(save_first=False)}))
    kinds = {v.kind for _, v in result.failures}
    assert PERSIST_BEFORE_SEND in kinds
    r = result.failed[0]
    assert f"--seed {r.seed}" in r.failure_report()
    assert "bft sim --nodes 4 --seed" in r.failure_report()


def test_double_vote_across_restart_is_caught() -> None:
    # Each incarnation salts its votes differently: re-voting after a restart equivocates.
    counter = iter(range(10**6))

    def salty(ctx: NodeContext) -> Program:
        return FakeChain(ctx, salt=b"%d" % next(counter), revote=True)

    spec = SimSpec(
        nodes=4, max_gst_s=10.0, window_s=30.0, total_crashes=False, late_crashes=False, production=False
    )
    result = run_campaign(spec, range(40), factories_with({HONEST: salty}))
    assert DOUBLE_SIGN in {v.kind for _, v in result.failures}


def test_program_exception_is_a_violation_not_a_crash() -> None:
    class Boom(FakeChain):
        def on_timer(self, now: float) -> list[Action]:
            if now > 0.6 and self.me == 1:
                raise RuntimeError("kaboom")
            return super().on_timer(now)

    r = run_schedule(SPEC, 3, factories_with({HONEST: lambda ctx: Boom(ctx)}))
    assert [v.kind for v in r.violations] == [PROGRAM_ERROR]
    assert "kaboom" in r.violations[0].message and "on_timer" in r.violations[0].message


def test_liveness_violation_when_nothing_commits() -> None:
    class Mute(FakeChain):
        def on_timer(self, now: float) -> list[Action]:
            self.deadline = now + TICK_S
            return []

    spec = SimSpec(nodes=4, max_gst_s=2.0, window_s=5.0, stop_on_violation=False, production=False)
    r = run_schedule(spec, 1, factories_with({HONEST: lambda ctx: Mute(ctx)}))
    assert {v.kind for v in r.violations} == {LIVENESS}
    assert len(r.violations) == 4
    assert r.sim_time_s == pytest.approx(r.plan.last_fault_s + 5.0)


def test_byzantine_behaviour_is_injected_and_garbage_is_refused() -> None:
    class Garbage(FakeChain):
        def on_timer(self, now: float) -> list[Action]:
            acts = super().on_timer(now)
            return [*acts, SendRaw(ValidatorIndex((self.me + 1) % 4), b"\xff\x00garbage")]

    built: list[int] = []

    def garbage(ctx: NodeContext) -> Program:
        built.append(ctx.index)
        return Garbage(ctx)

    spec = SimSpec(
        nodes=4, byzantine={3: "garbage"}, max_gst_s=5.0, window_s=30.0, crashes=False, production=False
    )
    r = run_schedule(spec, 5, factories_with({HONEST: fake(), "garbage": garbage}))
    assert r.ok, r.failure_report()
    assert r.refusals > 0
    assert set(r.byzantine.values()) == {"garbage"}
    assert set(built) == set(r.byzantine)
    assert str(next(iter(r.byzantine))) not in r.heights
    assert "--byzantine garbage" in r.replay_command
    # Placement of behaviours is seeded.
    placements = {
        next(iter(run_schedule(spec, s, factories_with({HONEST: fake(), "garbage": garbage})).byzantine))
        for s in range(12)
    }
    assert len(placements) > 1


def test_unknown_behaviour_is_an_error() -> None:
    spec = SimSpec(nodes=4, byzantine={0: "nope"})
    with pytest.raises(ValueError, match="unknown Byzantine behaviour"):
        run_schedule(spec, 0, FACTORIES)


def test_twins_runs_two_instances_of_an_index() -> None:
    spec = SimSpec(nodes=4, twins=True, max_gst_s=10.0, window_s=30.0, production=False)
    trace: list[TraceEntry] = []
    r = run_schedule(spec, 2, FACTORIES, trace=trace)
    assert r.twins is not None and len(r.twins.twin_indices) == 1
    twin = r.twins.twin_indices[0]
    assert f"{twin}'1" in {who for _, who, _ in trace}
    assert str(twin) not in r.heights and len(r.heights) == 3
    assert "--byzantine twins" in r.replay_command
    assert r.ok or all(v.kind != AGREEMENT for v in r.violations), r.failure_report()
