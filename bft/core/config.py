"""The replica's static configuration: identity, validator set, timing and limits.

Owns: ReplicaConfig and its defaults, the DEFAULT_* constants: the one place the consensus
defaults are written. The node's [consensus] settings (`bft.node.config.ConsensusSettings`), the
simulator's `SimSpec` and generated testnets take theirs from here.
May not: read files or the environment (drivers build it from theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN, check_commit_chain
from bft.core.types import ValidatorIndex, ValidatorSet
from bft.core.wire import check_block_limits

# The production defaults: what a node runs with when its config says nothing.
DEFAULT_BASE_TIMEOUT_S: Final = 1.0
DEFAULT_MAX_TIMEOUT_S: Final = 10.0
DEFAULT_MAX_VIEWS_AHEAD: Final = 64
DEFAULT_MAX_BLOCK_TXS: Final = 1000
DEFAULT_MAX_BLOCK_BYTES: Final = 1_000_000
DEFAULT_MAX_BATCH_DELAY_S: Final = 0.05
# The quorum store's (`bft.core.quorum_store`): a batch's transactions and bytes, how many heights
# a batch lives, and how many stored batches an author may have at once.
DEFAULT_MAX_BATCH_TXS: Final = 500
DEFAULT_MAX_BATCH_BYTES: Final = 256 * 1024
DEFAULT_BATCH_LIFETIME_HEIGHTS: Final = 64
DEFAULT_MAX_STORED_BATCHES: Final = 32
DEFAULT_MAX_BLOCK_BATCHES: Final = 32


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    chain_id: str
    validators: ValidatorSet
    me: ValidatorIndex
    base_timeout_s: float = DEFAULT_BASE_TIMEOUT_S
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    timeout_backoff: float = 2.0
    # Votes and timeouts further ahead than this are refused, not buffered.
    max_views_ahead: int = DEFAULT_MAX_VIEWS_AHEAD
    max_block_txs: int = DEFAULT_MAX_BLOCK_TXS
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    # Blocks asked for in one BlockRequest (a node further behind than this syncs by height),
    # and blocks (proposals, orphans, QCs, fetches) that wait for missing ancestors, in count and
    # in bytes.
    max_fetch_blocks: int = 32
    max_pending_blocks: int = 256
    max_buffered_bytes: int = 16 * 1024 * 1024
    # An idle leader (nothing in its mempool, no transactions in the chain waiting for blocks to
    # commit or for the news of their commit) waits at most this long before proposing an empty
    # block; transactions arriving end the wait (`bft.core.proposer`). Paces an idle cluster.
    # 0: propose at once, always. Must stay below base_timeout_s or idle views would time out.
    max_batch_delay_s: float = DEFAULT_MAX_BATCH_DELAY_S
    # Leaders of views 1, 2, ... len(leaders); round-robin (view mod n) after. Twins sets it.
    leaders: tuple[ValidatorIndex, ...] = ()
    # The commit rule's chain length, a genesis parameter (`bft.core.commit_rule`): 3 (chained
    # HotStuff) or 2 (Jolteon's two-chain with its vote and timeout rules).
    commit_chain: int = DEFAULT_COMMIT_CHAIN
    # Data dissemination apart from ordering, a genesis parameter (`bft.core.quorum_store`):
    # proposals carry proofs of availability of batches instead of transactions. Under it a
    # block's limits (max_block_txs, max_block_bytes) bound what its proofs reference.
    quorum_store: bool = False
    # Leaders chosen from the recent history of the chain, a genesis parameter
    # (`bft.core.reputation`): a validator that failed its turn and shows no sign of life is
    # skipped until it votes again. Off: `bft.core.leader.leader_of`'s fixed schedule.
    leader_reputation: bool = False
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    # A batch made at committed height h expires at h + batch_lifetime_heights: no block above
    # that height may reference it. Replicas accept batches expiring up to twice that far above
    # their own committed height (they may lag its author).
    batch_lifetime_heights: int = DEFAULT_BATCH_LIFETIME_HEIGHTS
    # Batches of one author a replica stores at once (uncommitted, unexpired); an honest author
    # keeps at most half as many in flight, so that peers lagging on its commits still take them.
    max_stored_batches: int = DEFAULT_MAX_STORED_BATCHES
    # Proofs one block may carry.
    max_block_batches: int = DEFAULT_MAX_BLOCK_BATCHES

    def __post_init__(self) -> None:
        if not self.validators.contains(self.me):
            raise ValueError(f"validator index {self.me} is not in a set of {self.validators.n}")
        if self.base_timeout_s <= 0 or self.max_timeout_s < self.base_timeout_s:
            raise ValueError("timeouts must satisfy 0 < base_timeout_s <= max_timeout_s")
        if not 0 <= self.max_batch_delay_s < self.base_timeout_s:
            raise ValueError("max_batch_delay_s must satisfy 0 <= max_batch_delay_s < base_timeout_s")
        check_commit_chain(self.commit_chain)
        if self.timeout_backoff < 1:
            raise ValueError("timeout_backoff must be >= 1")
        if self.max_batch_txs < 1 or self.max_batch_bytes < 1 or self.max_stored_batches < 2:
            raise ValueError("batches need max_batch_txs, max_batch_bytes >= 1 and max_stored_batches >= 2")
        if self.batch_lifetime_heights < 1:
            raise ValueError("batch_lifetime_heights must be >= 1")
        too_big = self.max_batch_bytes > self.max_block_bytes or self.max_batch_txs > self.max_block_txs
        if self.quorum_store and too_big:
            raise ValueError("a batch must fit a block: max_batch_txs/bytes <= max_block_txs/bytes")
        reason = check_block_limits(self.max_block_bytes, self.max_block_txs, self.validators.n)
        if reason is not None:
            raise ValueError(reason)
