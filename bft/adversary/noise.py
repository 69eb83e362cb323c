"""Byzantine noise: garbage and oversized frames, far-future views, replayed messages.

Owns: GarbageSender, FarFuture, Replayer.
May not: break the Behaviour frame; remembered messages are bounded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from bft.adversary.base import Behaviour, spread
from bft.core import wire
from bft.core.actions import Action, Broadcast, Send, SendRaw
from bft.core.messages import Message, Proposal, Timeout, Vote
from bft.core.types import ValidatorIndex, View

MAX_REPLAY_MEMORY = 128


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
