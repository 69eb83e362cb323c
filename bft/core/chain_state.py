"""What a replica knows of the chain above its committed root, and what follows from a QC.

Owns: the block tree, the high QC, the count of blocks accepted per view, the checks a block
must pass to extend its parent (against the app-state claim, pending and committed
transactions), inserting fetched runs of blocks, and applying a QC: the lock (through the
safety rules), the commit rule, and the commit itself through the executed-state port.
May not: send, sign or choose views (the replica does); the commit rule lives in `commit_rule`.

Why commits happen here, synchronously: a vote later in the same input checks a claim about
the height just committed, so the executed state must answer for it before this returns. And
the journal lets go of the committed blocks only after the executed state has them, so that a
crash in between finds them in one place or the other.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Sequence

from bft.core.actions import Action, Commit
from bft.core.app_state import execution_lag
from bft.core.batches import payload_error
from bft.core.blocktree import BlockTree, genesis
from bft.core.commit_rule import commit_proof, committed_by
from bft.core.config import ReplicaConfig
from bft.core.errors import InvariantViolation
from bft.core.journal import reload_journal
from bft.core.leader import leader_of
from bft.core.messages import Block, QuorumCert
from bft.core.ports import Ports
from bft.core.proposal_rules import AppClaim, app_claim, check_extension
from bft.core.quorum_store import QuorumStore
from bft.core.refusals import RefusalReason, Refused
from bft.core.reputation import Record, benched, failed_leaders_without, leader_without, window_blocks
from bft.core.safety import SafetyRules
from bft.core.types import BlockId, ValidatorIndex, View

# Benched sets kept by block id (leader reputation), cleared whole past this many.
MAX_BENCHED_KEPT = 256


class ChainState:
    def __init__(self, config: ReplicaConfig, ports: Ports, safety: SafetyRules, store: QuorumStore) -> None:
        """Start from durable state: the committed chain's tip is the root, the journal's blocks
        go back in the tree and their QCs (and the lock) count towards the high QC."""
        self._ports = ports
        self._safety = safety
        self._store = store
        # The QC whose commit waits for batches not here yet (`bft.core.quorum_store`).
        self.waiting_qc: QuorumCert | None = None
        self._length = config.commit_chain
        self._lag = execution_lag(config.quorum_store)
        root = ports.committed.tip() or genesis(config.chain_id)
        self.tree = BlockTree(*root)
        reloaded = reload_journal(self.tree, ports.journal)
        self.high_qc = max((root[1], safety.state.locked_qc, *reloaded), key=lambda qc: qc.view)
        # A restart resumes from the journal's high QC, applied once actions can be returned.
        self.restart_qc = self.high_qc if self.high_qc.view > root[1].view else None
        self._blocks_in_view: dict[View, int] = {}
        # Leader reputation's view of the committed chain: the newest window's worth of its
        # blocks (root included), oldest first; the tree holds the rest of any window.
        self._config = config
        self._committed_records: collections.deque[Record] = collections.deque(
            maxlen=window_blocks(config.validators.n)
        )
        self._benched_by_block: dict[BlockId, frozenset[ValidatorIndex]] = {}
        if config.leader_reputation:
            self._load_committed_records(root[0])

    def _load_committed_records(self, root: Block) -> None:
        start = max(1, root.height - window_blocks(self._config.validators.n) + 1)
        height = start
        while height <= root.height:
            blocks, _ = self._ports.committed.committed_range(height, root.height - height + 1, 1 << 62)
            if not blocks:
                raise InvariantViolation(f"committed block {height} missing below the root {root.height}")
            self._committed_records.extend(Record.of(b) for b in blocks if b.height <= root.height)
            height = blocks[-1].height + 1

    def window(self, block: Block) -> list[Record]:
        """Leader reputation's window of `block` (in the tree or the root): it and its
        ancestors, newest first, at most `window_blocks(n)` (`bft.core.reputation`)."""
        size = window_blocks(self._config.validators.n)
        out = [Record.of(b) for b in itertools.islice(self.tree.ancestors(block), size)]
        for record in reversed(self._committed_records):
            if len(out) >= size:
                break
            out.append(record)
        return out

    def _benched(self, parent: Block) -> frozenset[ValidatorIndex]:
        """The validators `parent`'s window benches; kept by block id, since a window is a
        function of the block's ancestry (a step asks for the leader several times)."""
        out = self._benched_by_block.get(parent.id)
        if out is None:
            if len(self._benched_by_block) >= MAX_BENCHED_KEPT:
                self._benched_by_block.clear()
            out = benched(self._config.validators.n, self.window(parent))
            self._benched_by_block[parent.id] = out
        return out

    def leader(self, view: View, parent: Block) -> ValidatorIndex:
        """The leader of `view` for a block extending `parent` (in the tree or the root)."""
        if not self._config.leader_reputation:
            return leader_of(self._config, view)
        return leader_without(self._config, view, self._benched(parent))

    def failed_leaders(self, view: View, parent: Block) -> tuple[ValidatorIndex, ...]:
        """What a block of `view` extending `parent` must record as its failed leaders."""
        if not self._config.leader_reputation:
            return ()
        return failed_leaders_without(self._config, parent.view, view, self._benched(parent))

    def add_block(self, block: Block) -> Refused | None:
        """Check that `block` may extend its parent (in the tree), then keep it, journaled before
        this returns."""
        parent = self.tree.get(block.parent_id)
        if parent is None:
            raise InvariantViolation("block added before its parent")
        refused = self.check_extension(block, parent)
        if refused is None:
            refused = self._store.check_block(block, self.pending_batches(parent), self.tree.root.height)
        if refused is None:
            self.tree.add(block)
            self._blocks_in_view[block.view] = self._blocks_in_view.get(block.view, 0) + 1
            self._ports.journal.add((block,))
        return refused

    def check_extension(self, block: Block, parent: Block) -> Refused | None:
        count = self._blocks_in_view.get(block.view, 0)
        return check_extension(
            block, parent, count, self.claim(parent), self.pending_txs(parent), self._is_committed
        )

    def claim(self, parent: Block) -> AppClaim:
        grandparent = self._known_block(parent.parent_id) if parent.height > 0 else None
        return app_claim(parent, grandparent, self._ports.executed, self._length, self._lag)

    def pending_txs(self, tip: Block) -> set[bytes]:
        return {tx for b in self.tree.ancestors(tip) for tx in b.txs}

    def pending_batches(self, tip: Block) -> set[bytes]:
        """The batch digests `tip` and its uncommitted ancestors reference."""
        return {p.info.digest for b in self.tree.ancestors(tip) for p in b.batches}

    def awaits_descendants(self, tip: Block) -> bool:
        """Whether transactions near `tip` wait for blocks above it: `tip` or one of the
        ancestors a QC for it may commit (the commit chain's length less one: its grandparent
        under the three-chain rule, its parent under the two-chain; the committed root included,
        genesis never: its payload is the chain's name) holds some. Followers learn of that
        commit from the next proposal, which carries the QC; so even a just-committed block's
        transactions need one more block before every replica (and every waiting client)
        knows."""
        current: Block | None = tip
        for _ in range(self._length):
            if current is None or current.height == 0:
                return False
            if current.txs or current.batches:
                return True
            current = self.tree.parent(current)
        return False

    def _is_committed(self, tx: bytes) -> bool:
        # The executed-state port made every commit durable before returning, so the committed
        # chain already answers for blocks committed earlier in this same input.
        return self._ports.committed.has_tx(tx)

    def _known_block(self, block_id: BlockId) -> Block | None:
        return self.tree.get(block_id) or self._ports.committed.block_by_id(block_id)

    def is_missing(self, qc: QuorumCert) -> bool:
        """Whether `qc` certifies a block above the root that is neither here nor committed."""
        if qc.block_id in self.tree or qc.view <= self.tree.root.view:
            return False
        return self._ports.committed.block_by_id(qc.block_id) is None

    def apply_qc(self, qc: QuorumCert, now: float, out: list[Action]) -> Commit | None:
        """A verified QC: raise the high QC and, if its block is here, the lock and the commits.
        A commit whose batches are not all here waits for them (`waiting_qc`, `retry_commit`),
        and the quorum store asks their signers."""
        if qc.view > self.high_qc.view:
            self.high_qc = qc
        certified = self.tree.get(qc.block_id)
        if certified is None:
            return None
        self.tree.record_qc(qc)
        self._safety.observe_certified(certified, qc)
        block = committed_by(self.tree, certified, self._length)
        if block is None or block.height <= self.tree.root.height:
            return None
        # The blocks above `block` up to `certified` (b' and b'', or b' alone under the two-chain
        # rule) go with the commit as its proof.
        path = list(self.tree.ancestors(block))[::-1]
        filled = [self._store.fill(b) for b in path]
        missing = [b for b, full in zip(path, filled, strict=True) if full is None]
        if missing:
            if self.waiting_qc is None or qc.view > self.waiting_qc.view:
                self.waiting_qc = qc
            for lean in missing:
                self._store.want(lean, now, out)
            return None
        self.waiting_qc = None
        proof = commit_proof(self.tree, block, certified, self._length)
        _, qcs = self.tree.commit(block)
        blocks = tuple(b for b in filled if b is not None)
        if self._config.leader_reputation:
            self._committed_records.extend(Record.of(b) for b in blocks)
        commit = Commit(blocks, qcs, qc, proof)
        self._ports.executed.on_commit(commit)
        self._ports.journal.prune_to(block.height)
        # The committed chain holds the batches' transactions durably now: the store lets go.
        self._store.on_commit(blocks, block.height)
        return commit

    def retry_commit(self, now: float, out: list[Action]) -> Commit | None:
        """Apply the QC whose commit waited for batches again, now that some landed."""
        qc = self.waiting_qc
        return self.apply_qc(qc, now, out) if qc is not None else None

    def highest_commit_within(self, run: Sequence[Block]) -> QuorumCert | None:
        """The QC inside `run` (blocks in the tree, oldest first, each the parent of the next)
        that commits the most of it: the one a block carries for its parent, where that parent
        closes a commit chain of consecutive views above the root. None if no block does."""
        for child in reversed(run):
            certified = self.tree.get(child.qc.block_id)
            if certified is None or child.qc.view != certified.view:
                continue
            committed = committed_by(self.tree, certified, self._length)
            if committed is not None and committed.height > self.tree.root.height:
                return child.qc
        return None

    def insert_chain(self, chain: Sequence[Block]) -> tuple[list[Block], Refused | None]:
        """Insert fetched blocks, oldest first (hash-linked to a verified QC), journaled. Stops
        at the first block that does not follow its parent."""
        inserted: list[Block] = []
        refused = None
        for block in chain:
            parent = self.tree.get(block.parent_id)
            if parent is None or block.height != parent.height + 1 or block.view <= parent.view:
                refused = Refused(RefusalReason.BAD_CHAIN, "does not follow its parent")
                break
            # Its id is certified, but a full block's transactions are not in its id.
            wrong = payload_error(block.txs, block.batches)
            if wrong is not None:
                refused = Refused(RefusalReason.BAD_PAYLOAD, wrong)
                break
            self.tree.add(block)
            inserted.append(block)
        if inserted:
            self._ports.journal.add(inserted)
        return inserted, refused

    def on_view(self, view: View) -> None:
        self._blocks_in_view = {v: c for v, c in self._blocks_in_view.items() if v >= view - 1}
