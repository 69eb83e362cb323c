"""One simulated node: its disk, safety store, durable storage, clients and running program.

Owns: `NodeContext` and `ProgramFactory` (how honest and Byzantine programs are built),
`Factories` (everything a schedule builds its nodes from), `SimPayload` (the node's mempool as
the proposer sees it), `SimClients` (the transactions arriving at the node), `ObservedStore`
and `SimNode` (crash and restart).

A node's durable state is what survives `crash()`: the SimDisk's synced content (and with it
the safety state) and its `NodeStorage` (`bft.sim.storage`: in campaigns, the node's own block
store, executor and key-value ledger on in-memory SQLite), whose committed transactions survive
and whose uncommitted one rolls back. A (re)start opens the storage as the node process does (a
new executor, replayed to the committed chain) and builds a new program from the factory,
through the same builder as the node, over those ports. The mempool is memory and is lost.
May not: schedule events or route messages (that is the world), or judge invariants.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from bft.core.actions import Commit
from bft.core.builder import build_replica
from bft.core.config import ReplicaConfig
from bft.core.messages import SafetyState
from bft.core.ports import Ports
from bft.core.program import Program
from bft.core.replica import Replica
from bft.core.safety import first_state
from bft.core.safety_store import DurableFileStore, Filesystem, SafetyStore
from bft.core.types import ValidatorIndex, View
from bft.core.wire import RECOVERY_NONCE_BYTES, decode_safety_state
from bft.sim.disk import SimDisk
from bft.sim.network import Instance
from bft.sim.settings import MAX_LARGE_TXS, SimSettings
from bft.sim.storage import (
    DEFAULT_STORAGE_OPTIONS,
    NodeStorage,
    ObservedExecuted,
    StorageContext,
    StorageFactory,
    StorageOptions,
    Transactions,
)
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Everything a program needs to start (or restart) on a simulated node."""

    index: ValidatorIndex
    copy: int
    key: PrivateKey
    config: ReplicaConfig
    # The node's durable ports (safety store, journal, committed chain) and payload, as the
    # node's are: a program commits through `ports.executed`, the only way commits count.
    ports: Ports
    now: float
    rng: random.Random
    sig_cache: SignatureCache
    # The node's disk, under the safety store; for programs that bring their own storage discipline.
    fs: Filesystem
    # Builds the honest replica from these ports; Byzantine wrappers wrap what it returns.
    honest: Callable[[], Replica] = field(compare=False)


ProgramFactory = Callable[[NodeContext], Program]


def honest_factory(ctx: NodeContext) -> Program:
    """The honest program: the real replica."""
    return ctx.honest()


@dataclass(frozen=True, slots=True)
class Factories:
    """What a schedule builds its nodes from: each program by behaviour name (`honest_factory`
    where HONEST is not named), each node's durable storage, and the application's transaction
    encoding for its clients. `bft.campaign.FACTORIES` holds the node's own."""

    programs: Mapping[str, ProgramFactory]
    storage: StorageFactory
    txs: Transactions

    def with_programs(self, programs: Mapping[str, ProgramFactory]) -> Factories:
        """The same storage and transactions under other programs."""
        return replace(self, programs=programs)


class SimPayload:
    """The node's mempool as its proposer sees it: transactions that arrived (`add`, from the
    simulated clients), offered oldest first to every proposal until they are committed, as the
    node's mempool offers them (each commit removes its transactions, `remove_committed`). At
    most `MAX_PENDING` are kept; an arrival beyond that is refused, as a full mempool refuses
    it. It is memory: a crash empties it (`clear`), as it empties the node's.

    Not the node's `Mempool` itself: that admits only what the application's `check_tx` does,
    and the key-value ledger refuses transactions over 70 KiB, while the large transactions
    drawn by seed (up to 512 KiB) are there to drive block sync, hash fetches and their byte
    budgets at their limits; the ledger executes them as refused (`CODE_TOO_LARGE`), a result
    its app hash covers like any other.
    """

    MAX_PENDING = 256

    def __init__(self) -> None:
        self._pending: dict[bytes, None] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, txs: Iterable[bytes]) -> int:
        """Admit arrivals while there is room; returns how many were admitted."""
        admitted = 0
        for tx in txs:
            if len(self._pending) < self.MAX_PENDING and tx not in self._pending:
                self._pending[tx] = None
                admitted += 1
        return admitted

    def clear(self) -> None:
        self._pending.clear()

    def remove_committed(self, txs: Iterable[bytes]) -> None:
        """The node committed `txs` (as the node's runtime tells its mempool of each commit)."""
        for tx in txs:
            self._pending.pop(tx, None)

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        return tuple(tx for tx in self._pending if tx not in exclude)


class SimClients:
    """The clients of one instance: every `gap_s()` on average one or two transactions arrive at its
    node (`draw`), each unique (its nonce names the seed, the instance and a counter), over a
    small key space so that puts, deletes and compare-and-sets of different nodes meet in the
    ledger's state; some are large (padded up to the settings' size, at most `MAX_LARGE_TXS`
    per instance and schedule). Outlive the node's crashes, so transactions stay unique.

    Under the quorum store a client also retries (`retry`): now and then it sends one of its
    recent transactions again, to another node, as a client does whose node stayed silent
    (silence is ambiguous: the first node may have batched it already). That transaction may then
    commit in two batches, so at two heights, and must execute once. The retries are drawn from a
    stream of their own, so the transactions drawn are those of a schedule without them."""

    KEYS = 8
    # The chance that an arrival also retries one of the last RECENT transactions elsewhere.
    RETRY_RATE = 0.2
    RECENT = 16

    def __init__(self, seed: int, inst: Instance, settings: SimSettings, txs: Transactions) -> None:
        self._rng = random.Random(f"clients/{seed}/{inst.index}/{inst.copy}")
        self._retries = random.Random(f"client-retries/{seed}/{inst.index}/{inst.copy}")
        self._recent: deque[bytes] = deque(maxlen=self.RECENT)
        self._prefix = f"{seed}/{inst.index}.{inst.copy}/"
        self._settings = settings
        self._txs = txs
        self._next = 0
        self._large_left = MAX_LARGE_TXS if settings.large_tx_rate > 0 else 0

    def gap_s(self) -> float:
        return self._rng.expovariate(1.0 / self._settings.tx_interval_s)

    def draw(self) -> list[bytes]:
        drawn = [self._one() for _ in range(self._rng.randint(1, 2))]
        self._recent.extend(drawn)
        return drawn

    def retry(self, others: Sequence[Instance]) -> tuple[Instance, bytes] | None:
        """Whether this arrival also sends a recent transaction again, and to which of `others`."""
        if not others or not self._recent or self._retries.random() >= self.RETRY_RATE:
            return None
        return self._retries.choice(list(others)), self._retries.choice(list(self._recent))

    def _one(self) -> bytes:
        nonce = self._prefix + str(self._next)
        self._next += 1
        key = f"k{self._rng.randrange(self.KEYS)}"
        value = f"v{self._next}"
        roll = self._rng.random()
        if roll < 0.1:
            return self._txs.delete(key, nonce)
        if roll < 0.25:
            expect = self._rng.choice((None, f"v{self._rng.randrange(self._next)}"))
            return self._txs.compare_and_set(key, expect, value, nonce)
        tx = self._txs.put(key, value, nonce)
        size = self._large_size()
        if size > len(tx) + 1:
            # One padding byte per character: the transaction is exactly `size` bytes.
            tx = self._txs.put(key, value + "/" + "x" * (size - len(tx) - 1), nonce)
        return tx

    def _large_size(self) -> int:
        if self._large_left <= 0 or self._rng.random() >= self._settings.large_tx_rate:
            return 0
        self._large_left -= 1
        return self._rng.randint(self._settings.max_large_tx_bytes // 8, self._settings.max_large_tx_bytes)


class ObservedStore:
    """A SafetyStore that reports completed saves and loads to `on_save` / `on_load`."""

    def __init__(
        self,
        inner: SafetyStore,
        on_save: Callable[[SafetyState], None],
        on_load: Callable[[SafetyState | None], None],
    ) -> None:
        self._inner = inner
        self._on_save = on_save
        self._on_load = on_load

    def load(self) -> SafetyState | None:
        state = self._inner.load()
        self._on_load(state)
        return state

    def save(self, state: SafetyState) -> None:
        self._inner.save(state)
        self._on_save(state)


class SimNode:
    """One instance's machine. `program` is None while the node is down."""

    def __init__(
        self,
        inst: Instance,
        *,
        seed: int,
        key: PrivateKey,
        config: ReplicaConfig,
        factory: ProgramFactory,
        storage: StorageFactory,
        txs: Transactions,
        sig_cache: SignatureCache,
        checked: bool,
        settings: SimSettings,
        storage_options: StorageOptions = DEFAULT_STORAGE_OPTIONS,
    ) -> None:
        self.inst = inst
        self.key = key
        self.config = config
        self.factory = factory
        self.sig_cache = sig_cache
        self.checked = checked
        self.rng = random.Random(f"node/{seed}/{inst.index}/{inst.copy}")
        self._seed = seed
        self._storage_factory = storage
        self._storage_options = storage_options
        self._new_disk(first_record=True)
        self.payload = SimPayload()
        self.clients = SimClients(seed, inst, settings, txs)
        self.program: Program | None = None
        # Set when the program raised: the node stays down for the rest of the schedule.
        self.halted = False
        self.crash_after_step = False
        self.timer_generation = 0
        self.timer_at: float | None = None
        self.incarnation = 0
        self.refusals = 0
        # The highest height whose app hash the checker was told of (-1: not even genesis's).
        self.reported_app_height = -1

    def _new_disk(self, first_record: bool) -> None:
        """A fresh disk, holding the validator's first safety record (as `bft testnet` writes
        it) if `first_record`, and fresh storage on it: the committed chain, the journal and
        the application, each COMMIT a crash point of the disk, so armed mid-save crashes fall
        on them too."""
        if hasattr(self, "storage"):
            self.storage.close()  # the old disk's: lost with it
        self.disk = SimDisk()
        if first_record:
            DurableFileStore(self.disk).save(first_state(self.config.chain_id))
        self.storage: NodeStorage = self._storage_factory(
            StorageContext(
                str(self.inst),
                self.config.chain_id,
                self.disk.commit_point,
                self.config.commit_chain,
                self.config.quorum_store,
                self._storage_options,
                self.config.validators,
            )
        )

    def wipe(self) -> None:
        """The node is down and its data directory is lost: an empty disk (no safety record:
        the next start recovers, `bft.core.recovery`) and empty storage."""
        assert self.program is None, "wipe a node that is down"
        self._new_disk(first_record=False)
        self.reported_app_height = -1

    @property
    def alive(self) -> bool:
        return self.program is not None

    @property
    def committed_height(self) -> int:
        return self.storage.height

    def durable_safety_state(self) -> SafetyState | None:
        """The safety state a crash right now would leave on disk."""
        data = self.disk.durable_read(DurableFileStore.RECORD)
        return None if data is None else decode_safety_state(data)

    def context(
        self,
        now: float,
        on_save: Callable[[SafetyState], None],
        on_load: Callable[[SafetyState | None], None],
        on_commit: Callable[[Commit], None],
    ) -> NodeContext:
        """Open the storage for a new process (may raise SimCrash at a crash point of its
        replay) and the context its program is built in."""
        store = ObservedStore(DurableFileStore(self.disk), on_save, on_load)
        opened = self.storage.open(store, self.payload)
        ports = replace(opened, executed=ObservedExecuted(opened.executed, self.storage, on_commit))
        config, key, sig_cache = self.config, self.key, self.sig_cache

        # Fresh for each start (`bft.core.recovery`), and drawn from no shared stream.
        nonce = hashlib.sha256(f"recovery/{self._seed}/{self.inst}/{self.incarnation}".encode()).digest()
        nonce = nonce[:RECOVERY_NONCE_BYTES]

        def honest() -> Replica:
            return build_replica(config, key, ports, now, sig_cache, nonce)

        return NodeContext(
            index=ValidatorIndex(self.inst.index),
            copy=self.inst.copy,
            key=key,
            config=config,
            ports=ports,
            now=now,
            rng=self.rng,
            sig_cache=sig_cache,
            fs=self.disk,
            honest=honest,
        )

    def start(
        self,
        now: float,
        on_save: Callable[[SafetyState], None],
        on_load: Callable[[SafetyState | None], None],
        on_commit: Callable[[Commit], None],
    ) -> None:
        """(Re)start the program from durable state. Exceptions propagate to the caller."""
        self.incarnation += 1
        self.crash_after_step = False
        self.timer_at = None
        self.timer_generation += 1
        self.program = self.factory(self.context(now, on_save, on_load, on_commit))

    def crash(self) -> None:
        """The process dies: the program, its mempool and everything unsynced are gone."""
        self.program = None
        self.crash_after_step = False
        self.disk.crash()
        self.payload.clear()
        self.timer_generation += 1
        self.timer_at = None

    def halt(self) -> None:
        """The program raised: stop it for good (keeping the disk as it is)."""
        self.program = None
        self.halted = True
        self.timer_generation += 1
        self.timer_at = None
