"""Byzantine requests: a validator that asks for more than it could ever use.

Owns: RequestFlood.
May not: break the Behaviour frame; it keeps nothing but what the inner replica already holds.

Why: block and sync requests cost the answering node SQLite reads, encoding and queue space,
and a validator's key makes them authentic. Asked faster than they are read, the answers once
took an honest node from 86 MB to 3.2 GB and stopped commits for over a minute; the serving
budget (`bft.core.serving`) is what this behaviour runs into.
"""

from __future__ import annotations

from typing import Final

from bft.adversary.base import Behaviour
from bft.core import wire
from bft.core.actions import Action, Send
from bft.core.messages import BlockRequest, BlockResponse, Message, SyncRequest, SyncResponse
from bft.core.types import ValidatorIndex

# Sync ranges asked of every peer at each step (each from another start height, so that none is
# a repeat), and a block request every this many steps.
SYNC_REQUESTS_PER_STEP: Final = 2
BLOCK_REQUEST_EVERY_STEPS: Final = 2


class RequestFlood(Behaviour):
    """Alongside its honest traffic, at every timer and every message that is not an answer (the
    answers it provokes would feed back into ever more requests), asks each peer for the largest
    sync ranges from random committed heights and for the largest walk back by hash from the
    last committed block, and never waits for an answer."""

    name = "request-flood"

    _steps: int = 0

    def on_input(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        if isinstance(msg, BlockResponse | SyncResponse):
            return []
        return self._flood()

    def on_timer(self, now: float) -> list[Action]:
        return super().on_timer(now) + self._flood()

    def _flood(self) -> list[Action]:
        self._steps += 1
        top = self.inner.committed_height
        out: list[Action] = []
        for peer in self.peers:
            for _ in range(SYNC_REQUESTS_PER_STEP):
                start = self.rng.randint(1, max(1, top))
                out.append(Send(peer, SyncRequest(start, wire.MAX_BLOCKS_PER_RESPONSE)))
            if self._steps % BLOCK_REQUEST_EVERY_STEPS == 0:
                tip = self.inner.last_committed.id
                out.append(Send(peer, BlockRequest(tip, wire.MAX_BLOCKS_PER_RESPONSE)))
        return out
