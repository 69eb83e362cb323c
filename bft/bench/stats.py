"""The figures of `bft bench`: outcome counters, the measured window and latency percentiles.

Owns: `Tally` (the counters of one span of the run), `Recorder` (everything since the start, and
what falls inside the window [window_start, window_end)), the live rate and recent p50, and
nearest-rank percentiles.
May not: read a clock, sleep or do I/O: every event comes with the time it happened.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

# Latencies kept for the live p50.
RECENT_LATENCIES: Final = 2000


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The nearest-rank `p`-th percentile (0 < p <= 100) of ascending `sorted_values`; None if empty."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    if not sorted_values:
        return None
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p90 and p99 of `latencies_s`, in milliseconds (None for each if there are none)."""
    ordered = sorted(latencies_s)
    found = {name: percentile(ordered, p) for name, p in (("p50", 50), ("p90", 90), ("p99", 99))}
    return {name: None if v is None else round(v * 1000, 3) for name, v in found.items()}


@dataclass(slots=True)
class Tally:
    submitted: int = 0
    committed: int = 0
    rejected: int = 0
    uncommitted: int = 0
    errors: int = 0
    mempool_full_retries: int = 0
    latencies_s: list[float] = field(default_factory=list)


class Recorder:
    """The outcomes of the load. Everything counts toward `total` (the live view); what happens in
    the window [window_start, window_end) also counts toward `window` (the report)."""

    def __init__(self, window_start: float, window_end: float) -> None:
        self.window_start = window_start
        self.window_end = window_end
        self.total = Tally()
        self.window = Tally()
        self.recent_latencies_s: deque[float] = deque(maxlen=RECENT_LATENCIES)
        self.first_error: str | None = None

    def in_window(self, at: float) -> bool:
        return self.window_start <= at < self.window_end

    def _tallies(self, at: float) -> tuple[Tally, ...]:
        return (self.total, self.window) if self.in_window(at) else (self.total,)

    def on_submitted(self, count: int, at: float) -> None:
        for tally in self._tallies(at):
            tally.submitted += count

    def on_committed(self, latency_s: float, at: float) -> None:
        self.recent_latencies_s.append(latency_s)
        for tally in self._tallies(at):
            tally.committed += 1
            tally.latencies_s.append(latency_s)

    def on_rejected(self, at: float) -> None:
        for tally in self._tallies(at):
            tally.rejected += 1

    def on_uncommitted(self, at: float) -> None:
        for tally in self._tallies(at):
            tally.uncommitted += 1

    def on_retry(self, count: int, at: float) -> None:
        for tally in self._tallies(at):
            tally.mempool_full_retries += count

    def on_error(self, message: str, at: float) -> None:
        if self.first_error is None:
            self.first_error = message
        for tally in self._tallies(at):
            tally.errors += 1

    def recent_p50_ms(self) -> float | None:
        p50 = percentile(sorted(self.recent_latencies_s), 50)
        return None if p50 is None else p50 * 1000

    def rate_per_s(self, now: float, started: float) -> float:
        """Committed per second: over the window once it has begun, over the warm-up before."""
        if now >= self.window_start and self.window_start > started:
            elapsed = min(now, self.window_end) - self.window_start
            return self.window.committed / elapsed if elapsed > 0 else 0.0
        elapsed = now - started
        return self.total.committed / elapsed if elapsed > 0 else 0.0
