"""Byzantine noise: garbage and oversized frames, far- and near-future views, replayed messages,
messages signed for a sibling chain.

Owns: GarbageSender, FarFuture, NearFuture, Replayer, CrossChain.
May not: break the Behaviour frame; remembered messages are bounded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from bft.adversary.base import Behaviour, spread
from bft.core import wire
from bft.core.actions import Action, Broadcast, Send, SendRaw
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.messages import Message, Proposal, QuorumCert, Timeout, Vote
from bft.core.types import ValidatorIndex, View
from crypto.signing import SignatureCache

MAX_REPLAY_MEMORY = 128
# Near-future timeouts: how far ahead of the current view, and how often an input triggers some.
NEAR_FUTURE_VIEWS = (1, 2, 3)
NEAR_FUTURE_RATE = 0.3
# The sibling chain whose messages CrossChain signs: same validators and keys, another chain id.
SIBLING_CHAIN_SUFFIX = "-fork"
MAX_CROSS_MEMORY = 32


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


class CrossChain(Behaviour):
    """A replayer across chains: every vote, timeout and proposal it would send is also signed
    with its own key for a sibling chain (the chain id + "-fork": same validators, same keys) and
    sent too, before or after the real one, or instead of it; now and then it replays one of the
    last sibling-chain messages to a random peer. The chain id is in every signed byte string, so
    honest replicas must refuse each of these as badly signed (and a first-vote-wins collector
    must not let one shadow the real vote that follows)."""

    name = "cross-chain"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sibling = self.config.chain_id + SIBLING_CHAIN_SUFFIX
        self.sibling = Certifier(sibling, self.config.validators, genesis(sibling)[1], SignatureCache())
        self._crossed: deque[Message] = deque(maxlen=MAX_CROSS_MEMORY)

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
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
