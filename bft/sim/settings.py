"""The consensus settings and payload shape of one schedule, drawn from its seed.

Owns: `SimSettings` and `draw_settings`. As VOPR's swarm testing does, each seed runs the core
with a different configuration within the ranges an operator may set (`[consensus]` in a node's
config.toml): batch delay, timeout cap, block limits; and a payload that sometimes carries large
transactions, so block sync, hash fetches and their byte budgets run at their limits, arriving
at a rate that makes the batch delay matter (from bursts far faster than views to a trickle
that leaves most blocks empty).
May not: run anything; the world builds each node's ReplicaConfig and payload from these values.

Short timeouts (issue 14): a node run with a base view timeout of a few tens of milliseconds and
a batch delay of a few (as on one machine) stalled for good at its first view: its deferred
proposal and its view timer were due in the same step. In that mode each seed also draws the
base timeout (20 to 50 ms), the batch delay (0 to 5 ms) and the network's delay bound after GST
(1 to 5 ms, as on localhost, and at most a quarter of the base timeout: the pacemaker resets its
backoff on every QC, so a delay bound near the base timeout would time out every fresh view,
which is not the bug looked for), from a stream of their own, so that every other draw of the
seed stays what it is without the mode.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from bft.core.config import (
    DEFAULT_BATCH_LIFETIME_HEIGHTS,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_TXS,
    DEFAULT_MAX_BLOCK_BATCHES,
    DEFAULT_MAX_BLOCK_BYTES,
    DEFAULT_MAX_BLOCK_TXS,
    DEFAULT_MAX_STORED_BATCHES,
)

# Block limits an operator might choose: the node's default, a small-block setting, a tiny one.
_BLOCK_LIMITS = ((DEFAULT_MAX_BLOCK_TXS, DEFAULT_MAX_BLOCK_BYTES), (64, 256 * 1024), (4, 64 * 1024))
# Large transactions per instance in one schedule: enough to overflow a frame's worth of blocks
# in a fetch, few enough to keep a schedule's memory small.
MAX_LARGE_TXS = 24


# Short-timeout mode: the ranges each seed draws from.
SHORT_BASE_TIMEOUT_S = (0.02, 0.05)
SHORT_MAX_BATCH_DELAY_S = 0.005
SHORT_DELTA_S = (0.001, 0.005)
# Of the short-timeout seeds, those that propose at once (no batch delay, no deferred proposal).
SHORT_NO_BATCH_DELAY_RATE = 0.25


@dataclass(frozen=True, slots=True)
class SimSettings:
    # The base view timeout and the network's delay bound after GST: the spec's, or drawn.
    base_timeout_s: float
    delta_s: float
    max_batch_delay_s: float
    max_timeout_s: float
    max_block_txs: int
    max_block_bytes: int
    # Blocks per hash fetch: a node further behind syncs by height ranges.
    max_fetch_blocks: int
    # The chance that a new transaction is large, and how large it may be.
    large_tx_rate: float
    max_large_tx_bytes: int
    # Mean time between two arrivals of client transactions (1 or 2 each) at one node.
    tx_interval_s: float
    # The quorum store's limits (used when the spec runs it): batch size, a batch's life in
    # heights, batches stored per author, proofs per block.
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    batch_lifetime_heights: int = DEFAULT_BATCH_LIFETIME_HEIGHTS
    max_stored_batches: int = DEFAULT_MAX_STORED_BATCHES
    max_block_batches: int = DEFAULT_MAX_BLOCK_BATCHES

    def describe(self) -> str:
        return (
            f"settings: base timeout {self.base_timeout_s}s, "
            f"batch delay {self.max_batch_delay_s}s, timeout cap {self.max_timeout_s}s, "
            f"blocks <= {self.max_block_txs} txs / {self.max_block_bytes} bytes, "
            f"fetch {self.max_fetch_blocks} blocks, "
            f"large txs {self.large_tx_rate:.0%} up to {self.max_large_tx_bytes} bytes, "
            f"txs arriving every {self.tx_interval_s}s per node; "
            f"batches <= {self.max_batch_txs} txs / {self.max_batch_bytes} bytes, living "
            f"{self.batch_lifetime_heights} heights, {self.max_stored_batches} stored per author, "
            f"{self.max_block_batches} per block"
        )


def fixed_settings(base_timeout_s: float, delta_s: float, max_timeout_s: float) -> SimSettings:
    """What a schedule runs with when the spec does not draw: the spec's timeouts and delay
    bound, proposals at once (no batch delay), the default block limits, small payloads arriving
    every 0.25 s per node."""
    txs, size = _BLOCK_LIMITS[0]
    return SimSettings(
        base_timeout_s=base_timeout_s,
        delta_s=delta_s,
        max_batch_delay_s=0.0,
        max_timeout_s=max_timeout_s,
        max_block_txs=txs,
        max_block_bytes=size,
        max_fetch_blocks=32,
        large_tx_rate=0.0,
        max_large_tx_bytes=0,
        tx_interval_s=0.25,
        max_batch_txs=min(DEFAULT_MAX_BATCH_TXS, txs),
        max_batch_bytes=min(DEFAULT_MAX_BATCH_BYTES, size),
    )


def draw_settings(
    seed: int, base_timeout_s: float, delta_s: float, max_timeout_s: float, *, short_timeouts: bool = False
) -> SimSettings:
    """The settings of schedule `seed`; `max_timeout_s` is the spec's cap (one of the choices).
    With `short_timeouts`, the base timeout, batch delay and delay bound are drawn (above), not
    the spec's `base_timeout_s` and `delta_s`."""
    rng = random.Random(f"settings/{seed}")
    delays = [d for d in (0.0, 0.005, 0.02, 0.05) if d < base_timeout_s]
    txs, size = rng.choice(_BLOCK_LIMITS)
    large_rate = rng.choice((0.0, 0.0, 0.1, 0.3))
    drawn = SimSettings(
        base_timeout_s=base_timeout_s,
        delta_s=delta_s,
        max_batch_delay_s=rng.choice(delays),
        max_timeout_s=rng.choice((max_timeout_s, max(max_timeout_s, 10.0))),
        max_block_txs=txs,
        max_block_bytes=size,
        max_fetch_blocks=rng.choice((32, 8, 4)),
        large_tx_rate=large_rate,
        max_large_tx_bytes=min(size, 512 * 1024) if large_rate else 0,
        # Drawn last, so that the draws above are what they were before arrivals existed.
        tx_interval_s=rng.choice((0.25, 1.0, 4.0)),
    )
    # The quorum store's, from a stream of their own (every draw above stays what it was).
    qs = random.Random(f"quorum-store/{seed}")
    drawn = replace(
        drawn,
        max_batch_txs=min(txs, qs.choice((DEFAULT_MAX_BATCH_TXS, 16, 1))),
        max_batch_bytes=qs.choice((size, max(size // 4, drawn.max_large_tx_bytes))),
        batch_lifetime_heights=qs.choice((DEFAULT_BATCH_LIFETIME_HEIGHTS, 8, 3)),
        max_stored_batches=qs.choice((DEFAULT_MAX_STORED_BATCHES, 8, 2)),
        max_block_batches=qs.choice((DEFAULT_MAX_BLOCK_BATCHES, 4, 1)),
    )
    if not short_timeouts:
        return drawn
    short = random.Random(f"short-timeouts/{seed}")
    base_s = round(short.uniform(*SHORT_BASE_TIMEOUT_S), 3)
    batch_s = short.uniform(0.0005, SHORT_MAX_BATCH_DELAY_S)
    if short.random() < SHORT_NO_BATCH_DELAY_RATE:
        batch_s = 0.0
    low_s, high_s = SHORT_DELTA_S
    return replace(
        drawn,
        base_timeout_s=base_s,
        delta_s=round(short.uniform(low_s, min(high_s, base_s / 4)), 4),
        max_batch_delay_s=round(batch_s, 4),
    )
