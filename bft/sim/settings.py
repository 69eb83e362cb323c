"""The consensus settings and payload shape of one schedule, drawn from its seed.

Owns: `SimSettings` and `draw_settings`. As VOPR's swarm testing does, each seed runs the core
with a different configuration within the ranges an operator may set (`[consensus]` in a node's
config.toml): batch delay, timeout cap, block limits; and a payload that sometimes carries large
transactions, so block sync, hash fetches and their byte budgets run at their limits, arriving
at a rate that makes the batch delay matter (from bursts far faster than views to a trickle
that leaves most blocks empty).
May not: run anything; the world builds each node's ReplicaConfig and payload from these values.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bft.core.config import DEFAULT_MAX_BLOCK_BYTES, DEFAULT_MAX_BLOCK_TXS

# Block limits an operator might choose: the node's default, a small-block setting, a tiny one.
_BLOCK_LIMITS = ((DEFAULT_MAX_BLOCK_TXS, DEFAULT_MAX_BLOCK_BYTES), (64, 256 * 1024), (4, 64 * 1024))
# Large transactions per instance in one schedule: enough to overflow a frame's worth of blocks
# in a fetch, few enough to keep a schedule's memory small.
MAX_LARGE_TXS = 24


@dataclass(frozen=True, slots=True)
class SimSettings:
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

    def describe(self) -> str:
        return (
            f"settings: batch delay {self.max_batch_delay_s}s, timeout cap {self.max_timeout_s}s, "
            f"blocks <= {self.max_block_txs} txs / {self.max_block_bytes} bytes, "
            f"fetch {self.max_fetch_blocks} blocks, "
            f"large txs {self.large_tx_rate:.0%} up to {self.max_large_tx_bytes} bytes, "
            f"txs arriving every {self.tx_interval_s}s per node"
        )


def fixed_settings(max_timeout_s: float) -> SimSettings:
    """What a schedule runs with when the spec does not draw: proposals at once (no batch delay),
    the default block limits, small payloads arriving every 0.25 s per node."""
    txs, size = _BLOCK_LIMITS[0]
    return SimSettings(0.0, max_timeout_s, txs, size, 32, 0.0, 0, 0.25)


def draw_settings(seed: int, base_timeout_s: float, max_timeout_s: float) -> SimSettings:
    """The settings of schedule `seed`; `max_timeout_s` is the spec's cap (one of the choices)."""
    rng = random.Random(f"settings/{seed}")
    delays = [d for d in (0.0, 0.005, 0.02, 0.05) if d < base_timeout_s]
    txs, size = rng.choice(_BLOCK_LIMITS)
    large_rate = rng.choice((0.0, 0.0, 0.1, 0.3))
    return SimSettings(
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
