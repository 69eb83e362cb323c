"""The pacing of `bft bench`'s clients: a shared token bucket and per-client back-off.

Owns: `TokenBucket` (the `--rate` of the whole run, shared by every client), `bucket_for` (the
run's bucket, or none for an unlimited rate) and `Backoff` (delays after "mempool full" or an
unreachable node, doubling from the first to the cap).
May not: read a clock or sleep: callers pass the time and do the waiting.
"""

from __future__ import annotations

from typing import Final

# Back-off after "mempool full" or an unreachable node: doubles from the first to the cap.
BACKOFF_FIRST_S: Final = 0.05
BACKOFF_CAP_S: Final = 1.0


class TokenBucket:
    """Paces callers to `rate_per_s` tokens per second with bursts of at most `burst` tokens.

    `reserve(n, now)` takes `n` tokens and returns how long the caller must wait before using
    them. The balance may go negative: a reservation beyond the tokens at hand queues behind the
    earlier ones, so concurrent callers share the rate in the order they asked.
    """

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError(f"a token bucket needs a positive rate and burst, not {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._updated = now

    def reserve(self, n: float, now: float) -> float:
        if now > self._updated:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_s)
            self._updated = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate_per_s


def bucket_for(rate_per_s: float, batch: int, now: float) -> TokenBucket | None:
    """The shared pacer of a run: None for an unlimited rate; else bursts of one batch or a tenth
    of a second of the rate, whichever is larger."""
    if rate_per_s <= 0:
        return None
    return TokenBucket(rate_per_s, max(float(batch), rate_per_s / 10), now)


class Backoff:
    """Delays that double from `first_s` up to `cap_s`; `reset` after a success."""

    def __init__(self, first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_CAP_S) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._next_s = first_s

    def next(self) -> float:
        delay = self._next_s
        self._next_s = min(self.cap_s, self._next_s * 2)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s
