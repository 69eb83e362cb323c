"""Byzantine noise: garbage and oversized frames, far- and near-future views, replayed messages,
messages signed for a sibling chain.

Owns: GarbageSender, FarFuture, NearFuture, Replayer, CrossChain, and SiblingChain (a record of
what honest validators signed on a sibling chain, for CrossChain to carry over).
May not: break the Behaviour frame; remembered messages and sibling blocks are bounded.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour, spread
from bft.core import wire
from bft.core.actions import Action, Broadcast, Send, SendRaw
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
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
from bft.core.types import BlockId, ValidatorIndex, ValidatorSet, View
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

MAX_REPLAY_MEMORY = 128
# Near-future timeouts: how far ahead of the current view, and how often an input triggers some.
NEAR_FUTURE_VIEWS = (1, 2, 3)
NEAR_FUTURE_RATE = 0.3
# The sibling chain whose messages CrossChain signs: same validators and keys, another chain id.
SIBLING_CHAIN_SUFFIX = "-fork"
MAX_CROSS_MEMORY = 32
# The sibling chain is ahead of ours by this many views when its QCs are carried over, and a
# third of inputs carry one; it grows by at most MAX_SIBLING_GROWTH blocks per call, remembering
# the last MAX_SIBLING_BLOCKS (enough to answer a fetch).
SIBLING_AHEAD_VIEWS = (1, 2, 3)
SIBLING_RATE = 0.3
MAX_SIBLING_GROWTH = 64
MAX_SIBLING_BLOCKS = 64


class GarbageSender(Behaviour):
    """Alongside its honest traffic, sends random bytes, frames over the size limit, and real
    messages with bytes flipped, truncated or appended."""

    name = "garbage"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not isinstance(action, Broadcast | Send):
            return [action]
        to = action.to if isinstance(action, Send) else self.rng.choice(self.peers)
        return [action, SendRaw(to, self._garbage(action.msg))]

    def _garbage(self, msg: Message) -> bytes:
        kind = self.rng.randrange(20)
        if kind < 4:
            return self.rng.randbytes(self.rng.randrange(1, 512))
        if kind == 4:
            return b"\x9f" * (wire.MAX_MESSAGE_SIZE_BYTES + 1)
        data = bytearray(wire.encode(msg))
        if kind < 10:
            i = self.rng.randrange(len(data))
            data[i] ^= 1 << self.rng.randrange(8)
        elif kind < 15:
            del data[self.rng.randrange(len(data)) :]
        else:
            data += self.rng.randbytes(self.rng.randrange(1, 16))
        return bytes(data)


class FarFuture(Behaviour):
    """Signs and sends votes, timeouts and proposals for views far ahead of the current one (a
    few timeouts for distinct far views with every vote or timeout it sends)."""

    name = "far-future"

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not isinstance(action, Broadcast | Send):
            return [action]
        jump = self.rng.choice((self.config.max_views_ahead + 1, 10**6, 2**62))
        view = View(self.inner.view + jump)
        msg = action.msg
        extra: list[Action] = []
        if isinstance(msg, Vote):
            extra.append(
                Send(
                    action.to if isinstance(action, Send) else self.peers[0],
                    self.vote_for(view, msg.block_id),
                )
            )
        if isinstance(msg, Vote | Timeout):
            # A few distinct far views at every vote or timeout: a replica that kept whatever it
            # is sent would grow without bound.
            for k in range(self.rng.randint(1, 2)):
                far = self.certifier.sign_timeout(self.key, self.me, View(view + k), self.inner.high_qc)
                extra.append(Broadcast(far))
        elif isinstance(msg, Proposal):
            extra.append(Broadcast(self.propose(replace(msg.block, view=view), msg.tc)))
        return [action, *extra]


class Replayer(Behaviour):
    """Re-sends old messages, its own and other validators' (as if forwarding them), to random
    peers, alongside its honest traffic."""

    name = "replay"

    _memory: deque[Message] | None = None

    @property
    def memory(self) -> deque[Message]:
        if self._memory is None:
            self._memory = deque(maxlen=MAX_REPLAY_MEMORY)
        return self._memory

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        self.memory.append(msg)
        return self._replay()

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if isinstance(action, Broadcast | Send):
            self.memory.append(action.msg)
        return [action]

    def _replay(self) -> list[Action]:
        if not self.memory or self.rng.random() < 0.5:
            return []
        old = self.memory[self.rng.randrange(len(self.memory))]
        return spread([self.rng.choice(self.peers)], old)


class NearFuture(Behaviour):
    """Signs valid timeouts for views 1 to 3 ahead of its current view, over and over: at every
    timer and on about a third of its inputs, for one to three of those views, with its high QC
    (now and then an older real QC), to all peers or to a random few. Inside every replica's view
    window, so each is checked and counted: it tries to drag honest replicas forward, or to make
    them join views early by the f+1 rule (which must need at least one honest timeout), and to
    complete TCs for views nobody honest gave up on. `far-future` sends views outside the window."""

    name = "near-future"

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        return self._near_timeouts() if self.rng.random() < NEAR_FUTURE_RATE else []

    def on_timer(self, now: float) -> list[Action]:
        return super().on_timer(now) + self._near_timeouts()

    def _near_timeouts(self) -> list[Action]:
        current = self.inner.view
        ahead = self.rng.sample(NEAR_FUTURE_VIEWS, self.rng.randint(1, len(NEAR_FUTURE_VIEWS)))
        out: list[Action] = []
        for k in sorted(ahead):
            timeout = self.certifier.sign_timeout(self.key, self.me, View(current + k), self._some_qc())
            if self.rng.random() < 0.7:
                out.append(Broadcast(timeout))
            else:
                out.extend(spread(self.rng.sample(self.peers, self.rng.randint(1, len(self.peers))), timeout))
        return out

    def _some_qc(self) -> QuorumCert:
        high = self.inner.high_qc
        if self.rng.random() < 0.8:
            return high
        older = [b.qc for b in self.blocks.values() if b.qc.view < high.view]
        return self.rng.choice(older) if older else high


class SiblingChain:
    """What honest validators signed on a sibling chain: the same validators with the same keys
    under another chain id (as a testnet may run beside its mainnet), growing one block a view
    from its own genesis, each block certified by a quorum of its validators' votes.

    Why it models something honest: validators that run one key on two chains sign, on the
    sibling chain, exactly these votes (one per view, for that chain's block), and an attacker
    that watches the sibling chain's traffic holds them all. It forges nothing: every signature
    here is a sibling-chain vote, which the chain id in the signed bytes makes worthless on
    ours. The simulator, which plays the whole network, stands in for that traffic and builds
    the record from the validators' keys; a real node has no such record (CrossChain then
    carries over only what it signs itself)."""

    def __init__(self, chain_id: str, validators: ValidatorSet, keys: Sequence[PrivateKey]) -> None:
        self.chain_id = chain_id
        self._certifier = Certifier(chain_id, validators, genesis(chain_id)[1], SignatureCache())
        self._signers = [(ValidatorIndex(i), key) for i, key in enumerate(keys)][: validators.quorum]
        self._n = validators.n
        self._tip = genesis(chain_id)
        self._blocks: OrderedDict[BlockId, Block] = OrderedDict({self._tip[0].id: self._tip[0]})

    def certified(self, view: View) -> tuple[Block, QuorumCert]:
        """Its highest block (and the QC for it) once grown towards `view`, by at most
        MAX_SIBLING_GROWTH blocks; a view at or below its tip changes nothing."""
        block, qc = self._tip
        for _ in range(min(MAX_SIBLING_GROWTH, max(0, view - block.view))):
            next_view = View(block.view + 1)
            txs = (b"%s/%d" % (self.chain_id.encode(), next_view),)
            block = Block(next_view, block.height + 1, block.id, ValidatorIndex(next_view % self._n), qc, txs)
            votes = [self._certifier.sign_vote(key, i, next_view, block.id) for i, key in self._signers]
            qc = QuorumCert(next_view, block.id, tuple((v.author, v.signature) for v in votes))
            self._blocks[block.id] = block
            while len(self._blocks) > MAX_SIBLING_BLOCKS:
                self._blocks.popitem(last=False)
        self._tip = (block, qc)
        return block, qc

    def answer(self, request: BlockRequest) -> BlockResponse | None:
        """The sibling chain's answer to a fetch of one of its blocks (newest first), as any of
        its nodes would give it; None for a block it does not remember."""
        blocks: list[Block] = []
        block = self._blocks.get(request.block_id)
        while block is not None and len(blocks) < min(request.max_blocks, wire.MAX_BLOCKS_PER_RESPONSE):
            blocks.append(block)
            block = self._blocks.get(block.parent_id)
        return BlockResponse(tuple(blocks)) if blocks else None


class CrossChain(Behaviour):
    """A replayer across chains: every vote, timeout and proposal it would send is also signed
    with its own key for a sibling chain (the chain id + "-fork": same validators, same keys) and
    sent too, before or after the real one, or instead of it; now and then it replays one of the
    last sibling-chain messages to a random peer. Given a `SiblingChain` record (the simulator
    gives one), it also carries over what honest validators signed there: on about a third of its
    inputs, a QC of the sibling chain, a few views ahead of ours, to a random peer, and it answers
    fetches of sibling blocks from the record. The chain id is in every signed byte string, so
    honest replicas must refuse each of these as badly signed (and a first-vote-wins collector
    must not let one shadow the real vote that follows); without it, a sibling QC is as good as
    ours, and a replica that takes it as its high QC follows a chain that is not ours."""

    name = "cross-chain"

    def __init__(self, *args: Any, record: SiblingChain | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sibling = self.config.chain_id + SIBLING_CHAIN_SUFFIX
        self.sibling = Certifier(sibling, self.config.validators, genesis(sibling)[1], SignatureCache())
        self.record = record
        self._crossed: deque[Message] = deque(maxlen=MAX_CROSS_MEMORY)

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        return self._carry_over(sender, msg) + self._replay_crossed()

    def _carry_over(self, sender: ValidatorIndex, msg: Message) -> list[Action]:
        record = self.record
        if record is None:
            return []
        if isinstance(msg, BlockRequest):
            answer = record.answer(msg)
            return [] if answer is None else [Send(sender, answer)]
        if self.rng.random() >= SIBLING_RATE:
            return []
        _, qc = record.certified(View(self.inner.view + self.rng.choice(SIBLING_AHEAD_VIEWS)))
        return [Send(self.rng.choice(self.peers), SyncInfo(qc, None))]

    def _replay_crossed(self) -> list[Action]:
        if not self._crossed or self.rng.random() < 0.8:
            return []
        old = self._crossed[self.rng.randrange(len(self._crossed))]
        return spread([self.rng.choice(self.peers)], old)

    def rewrite(self, action: Action, now: float) -> list[Action]:
        if not isinstance(action, Broadcast | Send):
            return [action]
        crossed = self.cross_signed(action.msg)
        if crossed is None:
            return [action]
        self._crossed.append(crossed)
        other = replace(action, msg=crossed)
        draw = self.rng.random()
        if draw < 0.2:
            return [other]
        return [other, action] if draw < 0.6 else [action, other]

    def cross_signed(self, msg: Message) -> Message | None:
        """`msg` as we would sign it on the sibling chain; None for messages we do not sign."""
        if isinstance(msg, Vote):
            return self.sibling.sign_vote(self.key, self.me, msg.view, msg.block_id)
        if isinstance(msg, Timeout):
            return self.sibling.sign_timeout(self.key, self.me, msg.view, msg.high_qc)
        if isinstance(msg, Proposal):
            return Proposal(msg.block, msg.tc, self.sibling.sign_proposal(self.key, msg.block))
        return None
