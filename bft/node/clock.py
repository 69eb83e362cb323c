"""The node's clock: trio's monotonic clock, or one running fast or slow by a factor.

Owns: `NodeClock` (`now()`, and `trio_time(t)` for waiting until the node's time `t`).
May not: sleep, or be read by anything outside the node process (a client's timeouts are its
own).

Why a factor: a replica's view timeouts are its guess at how long an honest leader needs, and a
node whose clock runs fast (a VM after a host migration, an NTP-slewed clock) times out leaders
that are fine, while a slow one waits too long. `[chaos] clock_rate` makes that visible in a
real cluster: every time the runtime hands the core, and every deadline it waits for, goes
through this clock, so the node's timers run `rate` times as fast as real time.
"""

from __future__ import annotations

import trio


class NodeClock:
    def __init__(self, rate: float = 1.0) -> None:
        if not rate > 0:
            raise ValueError(f"clock rate must be positive, got {rate}")
        self.rate = rate

    def now(self) -> float:
        """The node's time: trio's clock scaled by `rate` (only differences of it mean anything,
        so no origin is needed)."""
        return trio.current_time() * self.rate

    def trio_time(self, t: float) -> float:
        """The trio time at which the node's clock reads `t` (for `trio.move_on_at`)."""
        return t / self.rate
