"""The outgoing queue of one peer: bounded in frames and in bytes, and aged out.

Owns: `OutgoingQueue`, a FIFO of opaque payloads with the time each was queued, and the rules
for what it holds: never more than `max_frames` payloads or `max_bytes` bytes of payload, and
nothing older than `max_age_s` is ever handed out (`take` and `expire` drop it and count it).
May not: block, wait, read a clock (times come in as arguments) or know about connections; the
transport decides when to call `expire` and who waits for payloads.

Why bytes and age, not only frames: a validator that sends requests faster than it reads the
answers once made an honest node queue a thousand multi-megabyte answers for it (86 MB -> 3.2 GB
resident), kept for as long as the process lived. Bounded in bytes, the queue holds at most
`max_bytes`; aged out, what was queued for a peer that went away is released within `max_age_s`
instead of being sent, stale, when (if ever) it comes back. Consensus messages that old are
useless anyway: timeouts are re-sent on every local deadline, and a node that missed blocks
catches up by block sync.
"""

from __future__ import annotations

from collections import deque


class OutgoingQueue:
    """A FIFO of payloads within `max_frames` and `max_bytes`, each stamped with its queue time.

    Contract: `put` never blocks and refuses (returns False) what does not fit; `take` and
    `expire` drop, and count in `expired`, every payload older than `max_age_s`, and `take`
    returns only fresh ones. `size_bytes` is the sum of the lengths of the payloads held.
    """

    __slots__ = ("_items", "_size_bytes", "expired", "max_age_s", "max_bytes", "max_frames")

    def __init__(self, max_frames: int, max_bytes: int, max_age_s: float) -> None:
        if max_frames < 1 or max_bytes < 1 or max_age_s <= 0:
            raise ValueError("need max_frames >= 1, max_bytes >= 1 and max_age_s > 0")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._items: deque[tuple[float, bytes]] = deque()
        self._size_bytes = 0
        # Payloads dropped because they grew older than max_age_s before they could be sent.
        self.expired = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def oldest_queued_at(self) -> float | None:
        """When the oldest payload held was queued, or None if the queue is empty."""
        return self._items[0][0] if self._items else None

    def put(self, payload: bytes, now: float) -> bool:
        """Append `payload` (queued at `now`) if it fits in frames and bytes; whether it did.

        Stale payloads at the head are dropped first, so they never crowd out fresh ones."""
        self.expire(now)
        if len(self._items) >= self.max_frames or self._size_bytes + len(payload) > self.max_bytes:
            return False
        self._items.append((now, payload))
        self._size_bytes += len(payload)
        return True

    def expire(self, now: float) -> int:
        """Drop (and count) every payload queued more than `max_age_s` before `now`; how many."""
        dropped = 0
        cutoff = now - self.max_age_s
        while self._items and self._items[0][0] < cutoff:
            _, payload = self._items.popleft()
            self._size_bytes -= len(payload)
            dropped += 1
        self.expired += dropped
        return dropped

    def take(self, now: float, max_bytes: int) -> list[bytes]:
        """Remove and return the oldest fresh payloads: at least one if any is fresh, then more
        while their total stays within `max_bytes`. Stale ones are dropped on the way."""
        self.expire(now)
        taken: list[bytes] = []
        total = 0
        while self._items and (not taken or total + len(self._items[0][1]) <= max_bytes):
            _, payload = self._items.popleft()
            self._size_bytes -= len(payload)
            taken.append(payload)
            total += len(payload)
        return taken
