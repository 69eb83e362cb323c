"""One simulated node: its disk, safety store, durable commit log and running program.

Owns: `NodeContext` and `ProgramFactory` (how honest and Byzantine programs are built),
`SimPayload` (the node's transaction source), `ObservedStore` and `SimNode` (crash and restart).

A node's durable state is what survives `crash()`: the SimDisk's synced content (and with it
the safety state) and the commit log, which models an application database committing with
synchronous=FULL: a Commit action is durable once the harness has processed it. A restart builds
a new program from the factory with `root` = the last committed (block, QC) and a store that
loads from the disk.
May not: schedule events or route messages (that is the world), or judge invariants.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from bft.core.config import ReplicaConfig
from bft.core.journal import MemoryJournal
from bft.core.messages import Block, QuorumCert, SafetyState
from bft.core.program import Program
from bft.core.replica import PayloadSource, Replica
from bft.core.safety_store import DurableFileStore, Filesystem, SafetyStore
from bft.core.types import ValidatorIndex, View
from bft.core.wire import decode_safety_state
from bft.sim.disk import SimDisk
from bft.sim.network import Instance
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Everything a program needs to start (or restart) on a simulated node."""

    index: ValidatorIndex
    copy: int
    key: PrivateKey
    config: ReplicaConfig
    store: SafetyStore
    payload: PayloadSource
    root: tuple[Block, QuorumCert] | None
    now: float
    rng: random.Random
    sig_cache: SignatureCache
    # Whether a transaction is durably committed on this node (its commit log survives crashes).
    committed_tx: Callable[[bytes], bool]
    # The node's disk, under `store`; for programs that bring their own storage discipline.
    fs: Filesystem
    # Builds the honest replica from this same context; Byzantine wrappers wrap what it returns.
    honest: Callable[[], Replica] = field(compare=False)


ProgramFactory = Callable[[NodeContext], Program]


def honest_factory(ctx: NodeContext) -> Program:
    """The honest program: the real replica."""
    return ctx.honest()


class SimPayload:
    """A mempool's behaviour: each proposal offers the transactions offered before and not yet
    committed (as the node's mempool does until it hears of the commit), then 1 to 3 new unique
    ones, b"tx/<seed>/<instance>/<view>/<k>".

    Survives restarts (it models the node's mempool client), so transactions stay unique.
    Every payload handed out is added to `issued`.
    """

    # Offered-but-uncommitted transactions kept for re-offering (oldest dropped beyond this).
    MAX_PENDING = 32

    def __init__(
        self,
        seed: int,
        inst: Instance,
        rng: random.Random,
        issued: set[bytes],
        committed: Callable[[bytes], bool],
    ) -> None:
        self._prefix = f"tx/{seed}/{inst.index}.{inst.copy}/".encode()
        self._rng = rng
        self._next = 0
        self._committed = committed
        self._pending: list[bytes] = []
        self.issued = issued

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        self._pending = [tx for tx in self._pending if not self._committed(tx)][-self.MAX_PENDING :]
        again = [tx for tx in self._pending if tx not in exclude]
        txs: list[bytes] = []
        for _ in range(self._rng.randint(1, 3)):
            while True:
                tx = self._prefix + b"%d/%d" % (view, self._next)
                self._next += 1
                if tx not in exclude:
                    break
            txs.append(tx)
        self.issued.update(txs)
        self._pending.extend(txs)
        return tuple(again + txs)


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
        sig_cache: SignatureCache,
        checked: bool,
        issued: set[bytes],
    ) -> None:
        self.inst = inst
        self.key = key
        self.config = config
        self.factory = factory
        self.sig_cache = sig_cache
        self.checked = checked
        self.rng = random.Random(f"node/{seed}/{inst.index}/{inst.copy}")
        self.committed_txs: set[bytes] = set()
        self.payload = SimPayload(seed, inst, self.rng, issued, self.committed_txs.__contains__)
        self.disk = SimDisk()
        self.commit_log: list[tuple[Block, QuorumCert]] = []
        # Uncommitted blocks, durable like the commit log (a synced store), survive crashes.
        self.journal = MemoryJournal()
        self.program: Program | None = None
        # Set when the program raised: the node stays down for the rest of the schedule.
        self.halted = False
        self.crash_after_step = False
        self.timer_generation = 0
        self.timer_at: float | None = None
        self.incarnation = 0
        self.refusals = 0

    @property
    def alive(self) -> bool:
        return self.program is not None

    @property
    def committed_height(self) -> int:
        return self.commit_log[-1][0].height if self.commit_log else 0

    def record_commit(self, blocks: tuple[Block, ...], qcs: tuple[QuorumCert, ...]) -> None:
        """Append to the durable commit log."""
        self.commit_log.extend(zip(blocks, qcs, strict=True))
        for block in blocks:
            self.committed_txs.update(block.txs)

    def durable_safety_state(self) -> SafetyState | None:
        """The safety state a crash right now would leave on disk."""
        data = self.disk.durable_read(DurableFileStore.RECORD)
        return None if data is None else decode_safety_state(data)

    def context(
        self,
        now: float,
        on_save: Callable[[SafetyState], None],
        on_load: Callable[[SafetyState | None], None],
    ) -> NodeContext:
        store = ObservedStore(DurableFileStore(self.disk), on_save, on_load)
        root = self.commit_log[-1] if self.commit_log else None
        config, key, payload, sig_cache = self.config, self.key, self.payload, self.sig_cache
        committed_tx = self.committed_txs.__contains__
        journal = self.journal

        def honest() -> Replica:
            return Replica(
                config,
                key,
                store,
                payload,
                root=root,
                now=now,
                sig_cache=sig_cache,
                committed_tx=committed_tx,
                journal=journal,
            )

        return NodeContext(
            index=ValidatorIndex(self.inst.index),
            copy=self.inst.copy,
            key=key,
            config=config,
            store=store,
            payload=payload,
            root=root,
            now=now,
            rng=self.rng,
            sig_cache=sig_cache,
            committed_tx=committed_tx,
            fs=self.disk,
            honest=honest,
        )

    def start(
        self,
        now: float,
        on_save: Callable[[SafetyState], None],
        on_load: Callable[[SafetyState | None], None],
    ) -> None:
        """(Re)start the program from durable state. Exceptions propagate to the caller."""
        self.incarnation += 1
        self.crash_after_step = False
        self.timer_at = None
        self.timer_generation += 1
        self.program = self.factory(self.context(now, on_save, on_load))

    def crash(self) -> None:
        """The process dies: the program and everything unsynced are gone."""
        self.program = None
        self.crash_after_step = False
        self.disk.crash()
        self.timer_generation += 1
        self.timer_at = None

    def halt(self) -> None:
        """The program raised: stop it for good (keeping the disk as it is)."""
        self.program = None
        self.halted = True
        self.timer_generation += 1
        self.timer_at = None
