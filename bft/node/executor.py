"""Executes committed blocks in the application, each exactly once, and answers for what executed.

Owns: skipping a transaction whose bytes committed earlier (two batches may carry one, under the
quorum store: it is executed once, where it first committed, and gets CODE_REPEATED elsewhere),
the order of the durable steps of a commit (block store append, then per block the
application's `execute_block`, the execution record in the block store, the application's
`commit`; the append, the first block's record and the journal's prune share one block-store
transaction), replay on start (`info` handshake), the check of every committed block's app-hash
claim, and the `ExecutedState` the replica commits through (synchronously: a vote later in the
same input checks a claim about the height just committed).
May not: decide what is committed (the replica does) or talk to peers and clients.

Why this order is crash-safe: the blocks are durable before anything executes, so replay always
has them. The application's `commit` is its durable point; a crash before it leaves the previous
height applied, and replay executes the block again with the same results (the execution record
is rewritten with identical values). A crash after it leaves nothing to redo. So every block is
applied exactly once, whatever instant the process dies at. Grouping the append with the first
block's execution record and the journal's prune (the block store is also the journal) changes
none of that: the three become durable together, still before the application commits, and the
committed blocks leave the journal in the transaction that puts them in the chain, so a crash
finds them in one place or the other. It saves two of the five SQLite commits of a view.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from bft.app.interface import CODE_REPEATED, AppInfo, Application, BlockResult, StateCorrupt, TxResult
from bft.core.actions import Commit
from bft.core.messages import Block
from bft.node.errors import StorageError
from bft.node.logs import kv
from bft.node.storage import BlockStore, StoredResult
from bft.node.tx_set import state_claim

log = logging.getLogger("bft.node")


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    """A committed block after execution: one result per transaction and the app hash after it."""

    block: Block
    results: tuple[TxResult, ...]
    app_hash: bytes


class Executor:
    """The one path from committed blocks to application state; `bft.core.app_state.ExecutedState`."""

    def __init__(
        self,
        app: Application,
        store: BlockStore,
        on_mismatch: Callable[[], None] = lambda: None,
        *,
        deferred: bool = False,
        state_claims: bool = False,
    ) -> None:
        """`on_mismatch` is called for each committed app-hash claim that differs from ours.
        `deferred` (the quorum store's decoupled execution, `bft.core.app_state.execution_lag`):
        `on_commit` only stores the blocks; `execute_pending` (the node runs it after each step's
        messages are out) or a question about a height (`app_hash_at`) executes them.
        `state_claims` (a genesis with "state_sync"): the execution record, which blocks' claims
        are checked against, holds `bft.node.tx_set.state_claim` of the app hash and the block
        store's transaction set at that height, not the app hash alone."""
        self._app = app
        self._state_claims = state_claims
        self._store = store
        self._deferred = deferred
        # Committed (stored) blocks not executed yet, oldest first (deferred execution only).
        self._pending: collections.deque[Block] = collections.deque()
        self._latest: tuple[int, bytes] = (0, b"")
        self._executed: list[ExecutedBlock] = []
        self.app_hash_mismatches = 0
        self._on_mismatch = on_mismatch

    def start(self) -> int:
        """The `info` handshake: replay every stored block the application has not applied, in
        order. Returns how many blocks were replayed. StorageError if the application is ahead of
        the block store (its data belongs to another chain or the block store was lost)."""
        info: AppInfo = self._app.info()
        if info.last_height > self._store.height:
            raise StorageError(
                f"the application has applied height {info.last_height} but the block store ends at "
                f"{self._store.height}: they belong to different chains, or the block store was lost"
            )
        if info.last_height < self._store.base:
            raise StorageError(
                f"the application has applied height {info.last_height} but the block store holds "
                f"heights above {self._store.base} only (pruned): restore the application's data, "
                "or wipe the data directory and join by state sync"
            )
        if info.last_height == 0 and self._store.app_hash_at(0) is None:
            self._store.record_execution(0, info.app_hash, ())
        recorded = self._store.app_hash_at(info.last_height)
        if recorded is not None and recorded != self._claim(info.last_height, info.app_hash):
            raise StorageError(
                f"the application reports app hash {info.app_hash.hex()[:16]} at height {info.last_height}, "
                f"the execution record says {recorded.hex()[:16]}"
            )
        self._latest = (info.last_height, info.app_hash)
        replayed = 0
        for height in range(info.last_height + 1, self._store.height + 1):
            stored = self._store.block_at(height)
            if stored is None:
                raise StorageError(f"block {height} is missing from the block store")
            self._execute(stored.block)
            replayed += 1
        if replayed:
            log.info(kv(event="replayed", blocks=replayed, height=self._latest[0]))
        return replayed

    def on_commit(self, commit: Commit) -> None:
        """Store one commit (with its proof, the commit chain's blocks above it) durably, then
        execute its blocks in order; `take_executed` hands them over for announcing. The replica
        calls this while handling the input that committed them."""
        first, rest = commit.blocks[0], commit.blocks[1:]
        if self._deferred:
            with self._store.batch(f"commit blocks {first.height}..{commit.blocks[-1].height}"):
                self._store.append(commit.blocks, commit.qcs, commit.commit_qc, commit.proof)
                self._store.prune_to(commit.blocks[-1].height)
            self._pending.extend(commit.blocks)
            return
        with self._store.batch(f"commit blocks {first.height}..{commit.blocks[-1].height}"):
            self._store.append(commit.blocks, commit.qcs, commit.commit_qc, commit.proof)
            self._store.prune_to(commit.blocks[-1].height)
            staged = self._stage(first)
        self._executed.append(self._apply(first, staged))
        self._executed.extend(self._execute(block) for block in rest)
        for block in commit.blocks:
            self._check_claim(block)

    @property
    def pending(self) -> int:
        """Committed blocks stored but not executed yet (deferred execution)."""
        return len(self._pending)

    def execute_pending(self, max_blocks: int | None = None) -> int:
        """Execute stored blocks in order, at most `max_blocks` (all if None); how many ran."""
        done = 0
        while self._pending and (max_blocks is None or done < max_blocks):
            block = self._pending.popleft()
            self._executed.append(self._execute(block))
            self._check_claim(block)
            done += 1
        return done

    def take_executed(self) -> list[ExecutedBlock]:
        """The blocks executed since the last call, oldest first."""
        done, self._executed = self._executed, []
        return done

    def _execute(self, block: Block) -> ExecutedBlock:
        return self._apply(block, self._stage(block))

    def _stage(self, block: Block) -> BlockResult:
        """Execute `block` in the application (not committed yet) and record the outcome in the
        block store."""
        repeated = self._store.repeated_positions(block)
        txs = [tx for pos, tx in enumerate(block.txs) if pos not in repeated] if repeated else block.txs
        result = self._app.execute_block(block.height, txs)
        if len(result.results) != len(txs):
            raise StateCorrupt(
                f"the application returned {len(result.results)} results for {len(txs)} transactions"
            )
        if repeated:
            result = replace(result, results=_with_repeats(result.results, repeated, len(block.txs)))
        self._store.record_execution(
            block.height,
            self._claim(block.height, result.app_hash),
            [StoredResult(r.code, r.log, r.data) for r in result.results],
            result.app_hash if self._state_claims else None,
        )
        return result

    def _claim(self, height: int, app_hash: bytes) -> bytes:
        """What blocks claim for `height` (its execution record): the app hash, or on a state-sync
        chain its `state_claim` with the transaction set (stored with the block, before this)."""
        if not self._state_claims:
            return app_hash
        digest = self._store.tx_set_digest_at(height)
        if digest is None:
            raise StorageError(f"no transaction set is stored for height {height}")
        return state_claim(height, app_hash, digest)

    def _apply(self, block: Block, result: BlockResult) -> ExecutedBlock:
        """Commit the application's execution of `block` (recorded durably already)."""
        committed = self._app.commit()
        if committed != result.app_hash:
            raise StateCorrupt(
                f"commit returned app hash {committed.hex()} after execution said {result.app_hash.hex()}"
            )
        self._latest = (block.height, committed)
        return ExecutedBlock(block, result.results, committed)

    def _check_claim(self, block: Block) -> None:
        """A committed block claims the app hash at an earlier height, which we executed, so
        compare. Honest voters refuse false claims (`bft.core.app_state`), so a difference means
        this node's application diverged from the quorum's: non-determinism or a corrupt state."""
        ours = self._store.app_hash_at(block.app_height)
        if ours is not None and ours != block.app_hash:
            self.app_hash_mismatches += 1
            self._on_mismatch()
            log.error(
                kv(
                    event="app_hash_mismatch",
                    height=block.height,
                    proposer=block.proposer,
                    app_height=block.app_height,
                    claimed=block.app_hash.hex()[:16],
                    ours=ours.hex()[:16],
                )
            )

    def executed(self) -> tuple[int, bytes]:
        """The latest executed height and the app hash after it."""
        return self._latest

    # bft.core.app_state.ExecutedState (with on_commit)

    def app_hash_at(self, height: int) -> bytes | None:
        """The app hash after `height`; a committed height not executed yet is executed now."""
        while self._pending and self._latest[0] < height:
            self.execute_pending(1)
        return self._store.app_hash_at(height)


_REPEATED = TxResult(CODE_REPEATED, "committed earlier: identical bytes are one transaction", b"")


def _with_repeats(
    results: tuple[TxResult, ...], repeated: frozenset[int], count: int
) -> tuple[TxResult, ...]:
    """The application's results for the executed positions, with CODE_REPEATED at the others."""
    executed = iter(results)
    return tuple(_REPEATED if pos in repeated else next(executed) for pos in range(count))
