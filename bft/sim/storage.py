"""A simulated node's durable state besides its safety record, and its application's
transactions: injected into the simulator, as Byzantine behaviours are.

Owns: the `NodeStorage` protocol (what the simulator asks of one node's committed chain, journal
and executed state), `StorageContext` and `StorageFactory` (how a node gets one), the
`Transactions` protocol (how the simulated clients encode the application's transactions), and
`ObservedExecuted` (the executed-state port with the simulator's commit listener on it).
May not: implement storage or an application: `bft.campaign` supplies the node's own (its
`BlockStore`, `Executor` and `KeyValueLedger`, on in-memory SQLite), so the simulator runs the
code that ships without importing `bft.node` or `bft.app`.

The durability contract a `NodeStorage` keeps is SQLite's with `synchronous=FULL`, which the
node relies on: a write transaction is durable once its COMMIT returned, and one that had not is
rolled back. The simulated process dies in three ways (`bft.sim.faults.CrashKind`): between
events and after a step (no transaction is open then: everything committed survives), and at an
injected crash point. Each COMMIT first calls `StorageContext.crash_point`, which is the node's
SimDisk counting one more operation: an armed mid-save crash can fall on it as on any file
operation of the safety store, and then it raises SimCrash before the COMMIT, the transaction
rolls back, and the replica's step dies with its actions unsent. So a journal write (a block
journaled before a vote, the highest TC) is lost with the vote it would have allowed, and a
crash between the block store's append and the application's commit leaves blocks the
application has not applied, which the next start's `info` handshake replays. Half of the
long crashes after GST and a third of the mid-save crashes (`bft.sim.world`) are aimed there:
the node dies at its application's next commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bft.core.actions import Commit
from bft.core.app_state import ExecutedState
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN
from bft.core.ports import PayloadSource, Ports
from bft.core.safety_store import SafetyStore
from bft.core.types import BlockId, ValidatorSet


@dataclass(frozen=True, slots=True)
class StorageOptions:
    """The genesis' and the config's storage choices a simulated node runs with, as a node does:
    claims naming a verifiable state ("state_sync", `bft.node.tx_set`) and a retention
    ([storage] retain_blocks: the node prunes older blocks after each step, `catch_up`)."""

    state_sync: bool = False
    retain_blocks: int = 0
    # The genesis' leader reputation: a state sync brings the window of blocks below its anchor.
    leader_reputation: bool = False


DEFAULT_STORAGE_OPTIONS: Final = StorageOptions()


class SyncLater(Exception):
    """A state sync found snapshots offered but none it could verify: try again later."""


@dataclass(frozen=True, slots=True)
class StorageContext:
    """What a node's storage is made from."""

    # The instance it belongs to, for names in errors ("2", "1'1").
    name: str
    chain_id: str
    # Called before each durable write takes effect (with what it is, starting with APP_COMMIT
    # for the application's commit); raises SimCrash when an injected crash falls on it.
    crash_point: Callable[[str], None]
    # The genesis' commit rule (`bft.core.commit_rule`), which the block store's proofs follow.
    commit_chain: int = DEFAULT_COMMIT_CHAIN
    # The genesis runs the quorum store: the node defers execution (`catch_up`).
    quorum_store: bool = False
    options: StorageOptions = DEFAULT_STORAGE_OPTIONS
    # The genesis' validators, which a state sync verifies the blocks it is sent against.
    validators: ValidatorSet | None = None


class NodeStorage(Protocol):
    """One node's committed chain, journal and application state; it outlives the node's
    processes (crashes included) for the whole schedule."""

    def open(self, safety_store: SafetyStore, payload: PayloadSource) -> Ports:
        """The ports a (re)starting process runs its replica on, built as the node builds them:
        new objects over the durable state, the application replayed to the committed chain."""
        ...

    @property
    def height(self) -> int:
        """The durable committed height (0: only genesis)."""
        ...

    def app_hash_at(self, height: int) -> bytes | None:
        """The application's own durable app hash after `height` (0: its initial hash), or on a
        state-sync chain the state claim it is part of (`bft.node.tx_set`): what blocks claim;
        None if it has not applied that height (or it was pruned)."""
        ...

    def restore_from(self, peers: Sequence[tuple[NodeStorage, bool]]) -> tuple[int, BlockId] | None:
        """State sync, as a node started with `--state-sync` does: the application and the
        committed chain replaced by those of the newest snapshot the `peers` serve that verifies
        (`bft.node.statesync`); the height and block id restored, or None (no state-sync chain,
        or no snapshot above what it holds). A peer flagged True lies (a Byzantine validator's
        API). SyncLater if snapshots are offered but none verifies; may raise SimCrash."""
        ...

    def catch_up(self) -> None:
        """Execute the committed blocks whose execution the node deferred (under the quorum
        store), as the node's executor task does once a step's messages are out, then prune to
        the retention as the node does after its commits; may raise SimCrash at a crash point of
        the application's or the block store's commit."""
        ...

    def close(self) -> None:
        """Release everything; the schedule is over."""
        ...


StorageFactory = Callable[[StorageContext], NodeStorage]

# How a storage describes the application's own commit to `StorageContext.crash_point` (the
# description starts with it), so that a crash can be aimed at it: between the block store's
# append and the application's commit.
APP_COMMIT = "application commit"
# The same for the block store's commits (the chain's append, with the first block's execution
# record and the journal's prune): a crash aimed there catches an application that commits first.
BLOCKS_COMMIT = "block store commit"


class Transactions(Protocol):
    """The application's transaction encoding, for the simulated clients."""

    def put(self, key: str, value: str, nonce: str) -> bytes: ...

    def delete(self, key: str, nonce: str) -> bytes: ...

    def compare_and_set(self, key: str, expect: str | None, value: str, nonce: str) -> bytes: ...


class ObservedExecuted:
    """The executed-state port, telling `on_commit` of every commit once it is durable: once the
    storage's committed height covers it, even if the process died right after (a crash between
    the block store's append and the application's commit: the commit happened, the
    application catches up at the next start)."""

    def __init__(
        self, inner: ExecutedState, storage: NodeStorage, on_commit: Callable[[Commit], None]
    ) -> None:
        self._inner = inner
        self._storage = storage
        self._on_commit = on_commit

    def on_commit(self, commit: Commit) -> None:
        try:
            self._inner.on_commit(commit)
        finally:
            if commit.blocks and self._storage.height >= commit.blocks[-1].height:
                self._on_commit(commit)

    def app_hash_at(self, height: int) -> bytes | None:
        return self._inner.app_hash_at(height)
