"""What answering peers' block and sync requests may cost us, per requesting validator.

Owns: `TokenBucket` (deterministic: time comes in as `now`), `ServingLimits` (the budgets and
why they are what they are) and `ServingBudget`: one `_PeerBudget` per validator index (a
bounded table: at most n entries), holding token buckets on BlockRequests, on SyncRequests
answered with blocks and on answer bytes, and the start heights of sync ranges recently
answered. It says whether a request may be answered (None) or why not (a `Refused`), and is
charged what the answer cost once it is built.
May not: build answers (`bft.core.fetcher` does), read a clock or the network, or keep anything
for a sender that is not a validator (the replica refuses those before they reach the fetcher).

Why: a validator's key makes its requests authentic, not reasonable. One that asked for block
ranges faster than it read the answers had an honest node build and queue a thousand
multi-megabyte answers (38 KB of requests took it from 86 MB to 3.2 GB) while its drive task,
busy reading SQLite and encoding, stopped committing for over a minute. Each answer was within
its frame budget; nothing bounded how many. Now every requesting validator has its own budget,
sized to what an honest asker can plausibly use, and beyond it a request is refused
(`rate-limited`, or `repeated-request` for a range it was just sent), logged and counted:
the asker's own retry (after a base timeout, to the next peer) is what an honest node does
anyway when an answer does not come.

What an honest asker sends one peer (`bft.core.fetcher`):
- Block sync: one range in flight at a time, the next only once the last has landed and was
  committed; retries go to the next peer. Its rate is its commit speed. Measured on the node's
  own block store and ledger (`/tmp/budget/bench_serve.py`, SQLite synchronous=FULL): 9 MB/s of
  1 MB blocks, about 2.2 full answers a second, and about 420 empty blocks a second, 1.7 ranges
  of 256 blocks. Answering costs the answering node about 22 ms per full answer (SQLite read and
  encode, 180 MB/s).
- Fetches by hash: at most `max_pending_blocks` outstanding, each asked again only after a base
  timeout; the orphans they bring are bounded by `max_pending_blocks` blocks.
So the budgets below are about four times what an honest node consumes on that machine, and
they bound the drive task's time spent answering one peer to about 8 full answers (~180 ms) a
second, whatever that peer sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from bft.core import wire
from bft.core.config import ReplicaConfig
from bft.core.errors import InvariantViolation
from bft.core.messages import Block, BlockResponse, SyncResponse
from bft.core.refusals import RefusalReason, Refused
from bft.core.types import ValidatorIndex

# Full answers (one response budget each) a peer may be sent per second, and in one burst.
ANSWERS_PER_S: Final = 8
ANSWER_BURST: Final = 8
# SyncRequests answered with blocks per second, and in one burst (honest: under 2 a second).
SYNC_ANSWERS_PER_S: Final = 8
SYNC_BURST: Final = 8


@dataclass(slots=True)
class TokenBucket:
    """`capacity` tokens, refilled at `rate_per_s` up to the capacity. Starts full."""

    capacity: float
    rate_per_s: float
    tokens: float = -1.0
    updated_s: float | None = None

    def __post_init__(self) -> None:
        if self.capacity <= 0 or self.rate_per_s <= 0:
            raise ValueError("a token bucket needs a positive capacity and rate")
        if self.tokens < 0:
            self.tokens = self.capacity

    def available(self, now: float) -> float:
        """The tokens at `now` (a clock that went back refills nothing)."""
        if self.updated_s is not None and now > self.updated_s:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated_s) * self.rate_per_s)
        if self.updated_s is None or now > self.updated_s:
            self.updated_s = now
        return self.tokens

    def take(self, amount: float, now: float) -> None:
        """Spend `amount`; the caller checked `available` first, so it never goes below zero."""
        self.tokens = max(0.0, self.available(now) - amount)

    def most_in(self, window_s: float) -> float:
        """The most a bucket lets through in any interval of `window_s`: what is in it at the
        start (at most its capacity) and what drips in during it."""
        return self.capacity + self.rate_per_s * window_s


@dataclass(frozen=True, slots=True)
class ServingLimits:
    """The budgets of one requesting validator, from the replica's configuration."""

    # The most one answer is charged: a whole message (its blocks within the response budget,
    # `wire.response_budget_bytes`, with its own and its QC's bytes).
    answer_bytes: int
    # What an answer's blocks count as at least, per block: a 256-block range of tiny blocks
    # costs about as much to read and encode as a full answer (per-block decoding and encoding
    # dominate), so it is charged as one.
    block_floor_bytes: int
    # The message's own bytes and its QC's, beyond its blocks.
    overhead_bytes: int
    bytes_capacity: float
    bytes_per_s: float
    block_requests_capacity: float
    block_requests_per_s: float
    sync_capacity: float
    sync_per_s: float
    # A SyncRequest for a start height answered within this long is a repeat: an honest asker
    # moves on to the next range once one lands, and asks the next peer when one does not.
    repeat_window_s: float

    @classmethod
    def of(cls, config: ReplicaConfig) -> ServingLimits:
        blocks = wire.response_budget_bytes(config.validators.n)
        answer = wire.MAX_MESSAGE_SIZE_BYTES
        return cls(
            answer_bytes=answer,
            block_floor_bytes=blocks // wire.MAX_BLOCKS_PER_RESPONSE,
            overhead_bytes=answer - blocks,
            bytes_capacity=float(ANSWER_BURST * answer),
            bytes_per_s=float(ANSWERS_PER_S * answer),
            # The honest asker's own bound: max_pending_blocks fetches, each re-asked only after
            # a base timeout.
            block_requests_capacity=float(config.max_pending_blocks),
            block_requests_per_s=config.max_pending_blocks / config.base_timeout_s,
            sync_capacity=float(SYNC_BURST),
            sync_per_s=float(SYNC_ANSWERS_PER_S),
            repeat_window_s=config.base_timeout_s,
        )

    def charge(self, blocks: tuple[Block, ...]) -> int:
        """What an answer carrying `blocks` costs the byte budget: at least its encoded size
        (`wire.block_size_bound` of its blocks, and the message's own and its QC's bytes), at
        least `block_floor_bytes` a block, and at most `answer_bytes` (its blocks were picked
        within the response budget, and at most 256 of them)."""
        size = sum(wire.block_size_bound(b) for b in blocks)
        return self.overhead_bytes + max(size, len(blocks) * self.block_floor_bytes)


@dataclass(slots=True)
class _PeerBudget:
    answer_bytes: TokenBucket
    block_requests: TokenBucket
    sync_requests: TokenBucket
    # Start heights answered with blocks, and when; pruned past the repeat window, so at most
    # what the sync bucket lets through in one window.
    answered_starts: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class ServingBudget:
    limits: ServingLimits
    _peers: dict[ValidatorIndex, _PeerBudget] = field(default_factory=dict)
    # Answers refused, by reason: statistics for metrics and tests.
    refused: dict[RefusalReason, int] = field(default_factory=dict)

    def _peer(self, peer: ValidatorIndex) -> _PeerBudget:
        budget = self._peers.get(peer)
        if budget is None:
            lim = self.limits
            budget = _PeerBudget(
                TokenBucket(lim.bytes_capacity, lim.bytes_per_s),
                TokenBucket(lim.block_requests_capacity, lim.block_requests_per_s),
                TokenBucket(lim.sync_capacity, lim.sync_per_s),
            )
            self._peers[peer] = budget
        return budget

    def _refuse(self, reason: RefusalReason, detail: str) -> Refused:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return Refused(reason, detail)

    def _check_bytes(self, budget: _PeerBudget, now: float) -> Refused | None:
        # A full answer must fit what is left, so an answer never overdraws the bucket.
        left = budget.answer_bytes.available(now)
        if left < self.limits.answer_bytes:
            detail = f"answer bytes: {int(left)} left, a full answer is {self.limits.answer_bytes}"
            return self._refuse(RefusalReason.RATE_LIMITED, detail)
        return None

    def admit_block_request(self, peer: ValidatorIndex, now: float) -> Refused | None:
        """Whether a BlockRequest from `peer` may be answered now; if so it is counted."""
        budget = self._peer(peer)
        refused = self._check_bytes(budget, now)
        if refused is not None:
            return refused
        if budget.block_requests.available(now) < 1:
            per_s = self.limits.block_requests_per_s
            return self._refuse(RefusalReason.RATE_LIMITED, f"more than {per_s:g} block requests a second")
        budget.block_requests.take(1, now)
        return None

    def admit_sync_request(self, peer: ValidatorIndex, start_height: int, now: float) -> Refused | None:
        """Whether a SyncRequest from `peer` for a range we have may be answered now. Nothing is
        spent until `answered_sync` (an empty answer costs nothing)."""
        budget = self._peer(peer)
        window = self.limits.repeat_window_s
        starts = budget.answered_starts
        for start in [s for s, at in starts.items() if now - at >= window or at > now]:
            del starts[start]
        if start_height in starts:
            ago = now - starts[start_height]
            detail = f"range from height {start_height} was answered {ago:.3f}s ago"
            return self._refuse(RefusalReason.REPEATED_REQUEST, detail)
        refused = self._check_bytes(budget, now)
        if refused is not None:
            return refused
        if budget.sync_requests.available(now) < 1:
            per_s = self.limits.sync_per_s
            return self._refuse(RefusalReason.RATE_LIMITED, f"more than {per_s:g} sync ranges a second")
        return None

    def answered_sync(
        self, peer: ValidatorIndex, response: SyncResponse, start_height: int, now: float
    ) -> None:
        """A SyncResponse goes to `peer`: spend what it cost (nothing if it is empty)."""
        if not response.blocks:
            return
        budget = self._peer(peer)
        budget.sync_requests.take(1, now)
        budget.answer_bytes.take(self.limits.charge(response.blocks), now)
        budget.answered_starts[start_height] = now

    def answered_blocks(self, peer: ValidatorIndex, response: BlockResponse, now: float) -> None:
        """A BlockResponse goes to `peer`: spend its bytes (the request was counted at admission)."""
        self._peer(peer).answer_bytes.take(self.limits.charge(response.blocks), now)

    def statistics(self) -> dict[str, int]:
        return {
            "serving_peers": len(self._peers),
            "serving_recent_starts": sum(len(b.answered_starts) for b in self._peers.values()),
            "serving_refused": sum(self.refused.values()),
        }

    def check_bounds(self, validators: int) -> None:
        """Raise InvariantViolation if the table outgrew the validator set or a bucket its bounds."""
        if len(self._peers) > validators:
            raise InvariantViolation(f"serving budgets for {len(self._peers)} peers, only {validators} exist")
        most_starts = self.limits.sync_capacity + self.limits.sync_per_s * self.limits.repeat_window_s
        for peer, budget in self._peers.items():
            for name, bucket in (
                ("answer bytes", budget.answer_bytes),
                ("block requests", budget.block_requests),
                ("sync requests", budget.sync_requests),
            ):
                if not 0 <= bucket.tokens <= bucket.capacity:
                    raise InvariantViolation(f"peer {peer}'s {name} bucket holds {bucket.tokens}")
            if len(budget.answered_starts) > most_starts + 1:
                kept = len(budget.answered_starts)
                raise InvariantViolation(f"peer {peer}: {kept} recent sync starts kept")
