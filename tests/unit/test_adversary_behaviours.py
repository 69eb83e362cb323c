"""The newer Byzantine behaviours really misbehave: each test drives one behaviour among three
honest replicas over an instant network and inspects what it sent (so a behaviour that silently
did nothing, or only sent messages refused for a simpler reason, fails here, not just in a sim)."""

from __future__ import annotations

import random
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from core_helpers import GENESIS_BLOCK, GENESIS_QC, KEYS, N, certifier, config, make_replica, refusals, vi

from bft.adversary import BEHAVIOURS
from bft.adversary.base import Behaviour
from bft.adversary.noise import MAX_SIBLING_GROWTH, SIBLING_CHAIN_SUFFIX, CrossChain, SiblingChain
from bft.core.actions import Action, Broadcast, Refusal, Send, ViewChange
from bft.core.chain import MemoryChain
from bft.core.commit_rule import THREE_CHAIN
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    SyncInfo,
    Timeout,
    Vote,
)
from bft.core.program import Program
from bft.core.proposal_rules import app_claim, check_app_claim, check_proposal
from bft.core.refusals import RefusalReason, Refused
from bft.core.replica import Replica
from bft.core.types import BlockId, ValidatorIndex, View

BYZ = 0


@dataclass
class Step:
    """One input handled by the Byzantine node: its inner replica's view and high QC before and
    after, and every action it returned."""

    view_before: View
    view_after: View
    high_qc: QuorumCert
    actions: list[Action]


@dataclass
class Pump:
    """N programs, node BYZ running a behaviour, over an instant FIFO network; timers fire only
    when the network is idle. Records the Byzantine node's steps and the honest nodes' actions."""

    name: str
    seed: int = 0
    chains: list[MemoryChain] = field(init=False)
    honest: dict[int, Replica] = field(init=False)
    byz: Behaviour = field(init=False)
    steps: list[Step] = field(init=False, default_factory=list)
    honest_out: list[tuple[int, Action]] = field(init=False, default_factory=list)
    queue: deque[tuple[int, int, Message]] = field(init=False, default_factory=deque)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.chains = [MemoryChain(GENESIS_BLOCK, GENESIS_QC) for _ in range(N)]
        replicas = [make_replica(i, chain=self.chains[i]) for i in range(N)]
        self.honest = {i: r for i, r in enumerate(replicas) if i != BYZ}
        cls = BEHAVIOURS[self.name]
        self.byz = cls(replicas[BYZ], KEYS[BYZ], config(BYZ), random.Random(self.seed))

    def programs(self) -> dict[int, Program]:
        return {**self.honest, BYZ: self.byz}

    def _call(self, i: int, call: Callable[[Program], list[Action]]) -> None:
        if i != BYZ:
            self._route(i, call(self.honest[i]))
            return
        inner = self.byz.inner
        before = inner.view
        actions = call(self.byz)
        self.steps.append(Step(before, inner.view, inner.high_qc, actions))
        self._route(i, actions)

    def _route(self, i: int, actions: list[Action]) -> None:
        for a in actions:
            if i != BYZ:
                self.honest_out.append((i, a))
            if isinstance(a, Send) and a.to != i:
                self.queue.append((i, a.to, a.msg))
            elif isinstance(a, Broadcast):
                self.queue.extend((i, j, a.msg) for j in range(N) if j != i)

    def step(self) -> None:
        if self.queue:
            src, dst, msg = self.queue.popleft()
            self._call(dst, lambda p: p.on_message(vi(src), msg, self.now))
            return
        programs = self.programs()
        deadlines = [d for p in programs.values() if (d := p.next_deadline()) is not None]
        self.now = max(self.now, min(deadlines))
        for i, p in programs.items():
            deadline = p.next_deadline()
            if deadline is not None and deadline <= self.now:
                self._call(i, lambda p: p.on_timer(self.now))

    def run_until(self, done: Callable[[], bool], max_steps: int = 20_000, every: int = 25) -> None:
        """Step until `done()` (asked every `every` steps: it may look at the whole history)."""
        for n in range(max_steps):
            if n % every == 0 and done():
                return
            self.step()
        raise AssertionError(f"{self.name}: condition not reached in {max_steps} steps")

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step()

    def byz_sends(self) -> list[tuple[ValidatorIndex | None, Message]]:
        """(recipient, message) of everything the Byzantine node sent; None: to all."""
        out: list[tuple[ValidatorIndex | None, Message]] = []
        for s in self.steps:
            for a in s.actions:
                if isinstance(a, Send):
                    out.append((a.to, a.msg))
                elif isinstance(a, Broadcast):
                    out.append((None, a.msg))
        return out

    def honest_refusals(self) -> list[Refusal]:
        return [a for i, a in self.honest_out if isinstance(a, Refusal) and a.sender == BYZ]

    def honest_votes(self) -> list[Vote]:
        out: list[Vote] = []
        for _, a in self.honest_out:
            if isinstance(a, Send | Broadcast) and isinstance(a.msg, Vote):
                out.append(a.msg)
        # Votes for the replica's own next view stay inside it: its safety state has the last.
        return out


def test_every_new_behaviour_is_registered() -> None:
    for name in ("equivocate-same", "fork-parent", "near-future", "cross-chain"):
        assert BEHAVIOURS[name].name == name


# equivocate-same


def _both_blocks_to_every_peer(pump: Pump) -> View | None:
    """A view for which every peer was sent two different proposals and both got our vote."""
    blocks: dict[View, dict[ValidatorIndex, set[BlockId]]] = defaultdict(lambda: defaultdict(set))
    votes: dict[View, set[BlockId]] = defaultdict(set)
    for to, msg in pump.byz_sends():
        if isinstance(msg, Proposal) and to is not None:
            blocks[msg.view][to].add(msg.block.id)
        elif isinstance(msg, Vote):
            votes[msg.view].add(msg.block_id)
    for view, per_peer in blocks.items():
        ids = set().union(*per_peer.values())
        if (
            len(ids) == 2
            and len(per_peer) == N - 1
            and all(got == ids for got in per_peer.values())
            and votes[view] == ids
        ):
            return view
    return None


def test_equivocate_same_sends_both_blocks_to_the_same_peers_and_votes_for_both() -> None:
    pump = Pump("equivocate-same")
    pump.run_until(lambda: _both_blocks_to_every_peer(pump) is not None)
    view = _both_blocks_to_every_peer(pump)
    # Both blocks are valid for the view: honest replicas refuse the second only by the vote rule.
    proposals = {m.block.id: m for _, m in pump.byz_sends() if isinstance(m, Proposal) and m.view == view}
    assert len(proposals) == 2
    for proposal in proposals.values():
        assert check_proposal(config(1), certifier(), View(proposal.view), vi(BYZ), proposal, False) is None
    # In varying orders: over the run, peers got the original first and the twin first.
    firsts: set[tuple[ValidatorIndex, BlockId]] = set()
    seen: set[tuple[ValidatorIndex, View]] = set()
    for to, msg in pump.byz_sends():
        if isinstance(msg, Proposal) and to is not None and (to, msg.view) not in seen:
            seen.add((to, msg.view))
            firsts.add((to, msg.block.id))
    pump.run(300)
    assert len({b for _, b in firsts}) > len({v for _, v in seen}) // 2, "always the same block first"
    # Every honest replica saw both, and voted at most once per view.
    by_author_view: dict[tuple[ValidatorIndex, View], set[BlockId]] = defaultdict(set)
    for vote in pump.honest_votes():
        by_author_view[(vote.author, vote.view)].add(vote.block_id)
    assert by_author_view, "no honest votes at all"
    assert all(len(ids) == 1 for ids in by_author_view.values()), by_author_view
    assert min(r.committed_height for r in pump.honest.values()) > 0


# fork-parent


def _forks(pump: Pump) -> list[tuple[Proposal, QuorumCert]]:
    """The Byzantine node's proposals whose QC is older than its inner replica's high QC."""
    out: list[tuple[Proposal, QuorumCert]] = []
    for s in pump.steps:
        for a in s.actions:
            if (
                isinstance(a, Broadcast)
                and isinstance(a.msg, Proposal)
                and a.msg.block.qc.view < s.high_qc.view
            ):
                out.append((a.msg, s.high_qc))
    return out


def test_fork_parent_extends_an_older_certified_block_with_a_valid_claim_and_a_tc() -> None:
    pump = Pump("fork-parent")
    pump.run_until(lambda: len(_forks(pump)) >= 3)
    honest_chain = pump.chains[1]
    for proposal, high_qc in _forks(pump):
        block = proposal.block
        # A TC for the previous view justifies skipping from the older QC; every check passes.
        assert proposal.tc is not None and proposal.tc.view + 1 == block.view
        assert check_proposal(config(1), certifier(), block.view, vi(BYZ), proposal, False) is None
        assert block.parent_id == block.qc.block_id
        assert certifier().check_qc(block.qc) is None
        # The parent is a real certified ancestor of the high QC's block, below it.
        chain_down = _ancestors(pump.byz.blocks, high_qc.block_id)
        assert block.parent_id in {b.id for b in chain_down[1:]} | {GENESIS_BLOCK.id}
        parent = pump.byz.blocks.get(block.parent_id, GENESIS_BLOCK)
        assert block.height == parent.height + 1
        assert block.qc.view < high_qc.view
        grandparent = pump.byz.blocks.get(parent.parent_id, GENESIS_BLOCK) if parent.height > 0 else None
        assert check_app_claim(block, app_claim(parent, grandparent, honest_chain, THREE_CHAIN)) is None
    # Honest replicas refused the forks, if at all, only by the vote rule (the lock, the view).
    pump.run(500)
    fork_views = {p.view for p, _ in _forks(pump)}
    reasons = [r.reason for r in pump.honest_refusals() if r.what == "proposal" and r.view in fork_views]
    vote_rule = {
        RefusalReason.LOCK_CONFLICT,
        RefusalReason.ALREADY_VOTED,
        RefusalReason.ALREADY_TIMED_OUT,
        RefusalReason.NOT_CURRENT_VIEW,
    }
    assert set(reasons) <= vote_rule, reasons


def _ancestors(blocks: dict[BlockId, Block], block_id: BlockId) -> list[Block]:
    out: list[Block] = []
    block = blocks.get(block_id)
    while block is not None:
        out.append(block)
        block = blocks.get(block.parent_id)
    return out


# near-future


def test_near_future_sends_valid_timeouts_one_to_three_views_ahead_again_and_again() -> None:
    pump = Pump("near-future")
    pump.run(1_200)
    ahead: list[tuple[int, Timeout]] = []
    for st in pump.steps:
        for t in _timeouts(st):
            if t.view > st.view_after:
                # Ahead of the view it was signed in: before the input, or after a timer fired.
                offsets = [t.view - st.view_before, t.view - st.view_after]
                assert any(1 <= o <= 3 for o in offsets), (t.view, st.view_before, st.view_after)
                ahead.append((min(o for o in offsets if o >= 1), t))
    assert len(ahead) >= 10, f"only {len(ahead)} timeouts ahead of the current view"
    assert {o for o, _ in ahead} == {1, 2, 3}
    assert all(
        certifier().check_timeout(t) is None and certifier().check_qc(t.high_qc) is None for _, t in ahead
    )
    assert len({t.view for _, t in ahead}) < len(ahead), "each view only once: not repeated"
    # Honest replicas took them (no refusals of our timeouts) and kept committing.
    assert not [r for r in pump.honest_refusals() if r.what == "timeout" and "stale" not in r.reason]
    assert min(r.committed_height for r in pump.honest.values()) > 5
    # No honest replica joined a view on the f+1 rule without an honest timeout for it.
    honest_timeout_views = {
        a.msg.view for _, a in pump.honest_out if isinstance(a, Broadcast) and isinstance(a.msg, Timeout)
    }
    for _, a in pump.honest_out:
        if isinstance(a, ViewChange) and a.via == "timeouts":
            assert a.view in honest_timeout_views


def _timeouts(step: Step) -> list[Timeout]:
    return [a.msg for a in step.actions if isinstance(a, Send | Broadcast) and isinstance(a.msg, Timeout)]


# cross-chain


def test_cross_chain_signs_votes_timeouts_and_proposals_for_the_sibling_chain_only() -> None:
    pump = Pump("cross-chain")
    ours, sibling = certifier(), certifier(config(0).chain_id + SIBLING_CHAIN_SUFFIX)
    crossed: dict[type, int] = defaultdict(int)
    real: dict[type, int] = defaultdict(int)

    def check(msg: Message) -> tuple[Refused | None, Refused | None]:
        if isinstance(msg, Vote):
            return ours.check_vote(msg), sibling.check_vote(msg)
        if isinstance(msg, Timeout):
            return ours.check_timeout(msg), sibling.check_timeout(msg)
        assert isinstance(msg, Proposal)
        block = msg.block
        return ours.check_proposal_signature(block, msg.signature), sibling.check_proposal_signature(
            block, msg.signature
        )

    def tally() -> bool:
        crossed.clear()
        real.clear()
        for _, msg in pump.byz_sends():
            if isinstance(msg, Vote | Timeout | Proposal):
                here, there = check(msg)
                # Each verifies under exactly one of the two chain ids.
                assert (here is None) != (there is None), (msg, here, there)
                (real if here is None else crossed)[type(msg)] += 1
        return all(crossed[t] >= 2 for t in (Vote, Timeout, Proposal))

    pump.run_until(tally)
    assert all(real[t] >= 1 for t in (Vote, Proposal)), dict(real)
    # The honest replicas refused every one of them as badly signed.
    pump.run(200)
    tally()
    bad = [r for r in pump.honest_refusals() if r.reason is RefusalReason.BAD_SIGNATURE]
    assert len(bad) >= sum(crossed.values()) // 2
    assert {r.what for r in bad} >= {"vote", "timeout", "proposal"}
    for r in pump.honest.values():
        assert ours.check_qc(r.high_qc) is None


def test_the_sibling_record_carries_honest_sibling_qcs_that_our_chain_refuses() -> None:
    chain_id = config(0).chain_id + SIBLING_CHAIN_SUFFIX
    ours, sibling = certifier(), certifier(chain_id)
    record = SiblingChain(chain_id, config(0).validators, KEYS)
    block, qc = record.certified(View(10))
    assert (block.view, block.height, qc.view, qc.block_id) == (10, 10, 10, block.id)
    assert sibling.check_qc(qc) is None and ours.check_qc(qc) is not None
    # Bounded growth per call; a fetch is answered from the blocks it remembers, newest first.
    far, _ = record.certified(View(10**9))
    assert far.view == 10 + MAX_SIBLING_GROWTH
    answer = record.answer(BlockRequest(far.id, 5))
    assert answer is not None and [b.view for b in answer.blocks] == [far.view - k for k in range(5)]
    # Carried over by cross-chain, an honest replica refuses each as a bad QC.
    byz = CrossChain(make_replica(BYZ), KEYS[BYZ], config(BYZ), random.Random(0), record=record)
    honest = make_replica(1)
    carried = [
        a.msg for _ in range(40) for a in byz.on_message(vi(2), _sync_info(), 0.0) if isinstance(a, Send)
    ]
    infos = [m for m in carried if isinstance(m, SyncInfo)]
    assert infos and all(sibling.check_qc(m.high_qc) is None for m in infos)
    for info in infos:
        refused = refusals(honest.on_message(vi(BYZ), info, 0.0))
        assert [r.reason for r in refused] == [RefusalReason.BAD_QC]
    assert honest.high_qc == GENESIS_QC
    fetched = byz.on_message(vi(1), BlockRequest(infos[-1].high_qc.block_id, 4), 0.0)
    assert any(isinstance(a, Send) and isinstance(a.msg, BlockResponse) for a in fetched)


def _sync_info() -> SyncInfo:
    return SyncInfo(GENESIS_QC, None)


# detached-parent


def _detached(pump: Pump) -> list[Proposal]:
    return [
        m for _, m in pump.byz_sends() if isinstance(m, Proposal) and m.block.parent_id != m.block.qc.block_id
    ]


def test_detached_parent_hangs_a_block_off_the_parent_of_the_locked_block_after_a_tc() -> None:
    pump = Pump("detached-parent")
    pump.run_until(lambda: len(_detached(pump)) >= 2)
    honest_chain = pump.chains[1]
    for proposal in _detached(pump):
        block, tc = proposal.block, proposal.tc
        # A TC for the previous view whose high QC is the block's own QC (for b'), newer than the
        # lock on b; the parent is b's parent, with b's height and the claim an honest replica makes.
        assert tc is not None and tc.view + 1 == block.view and tc.high_qc == block.qc
        assert certifier().check_tc(tc) is None
        middle = pump.byz.blocks[block.qc.block_id]
        locked = pump.byz.blocks[middle.parent_id]
        assert block.parent_id == locked.parent_id and block.height == locked.height
        parent = pump.byz.blocks.get(block.parent_id, GENESIS_BLOCK)
        grandparent = pump.byz.blocks.get(parent.parent_id, GENESIS_BLOCK) if parent.height > 0 else None
        assert check_app_claim(block, app_claim(parent, grandparent, honest_chain, THREE_CHAIN)) is None
        # Only the parent link refuses it.
        refused = check_proposal(config(1), certifier(), block.view, vi(BYZ), proposal, False)
        assert refused is not None and refused.reason is RefusalReason.PARENT_MISMATCH
    pump.run(500)
    detached_views = {p.block.view for p in _detached(pump)}
    reasons = {r.reason for r in pump.honest_refusals() if r.what == "proposal" and r.view in detached_views}
    assert RefusalReason.PARENT_MISMATCH in reasons
    assert min(r.committed_height for r in pump.honest.values()) > 0
