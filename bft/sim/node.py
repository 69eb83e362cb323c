"""One simulated node: its disk, safety store, durable commit log and running program.

Owns: `NodeContext` and `ProgramFactory` (how honest and Byzantine programs are built),
`SimPayload` (the node's transaction source), `ObservedStore` and `SimNode` (crash and restart).

A node's durable state is what survives `crash()`: the SimDisk's synced content (and with it
the safety state) and the committed chain (`MemoryChain`), which models the block store and
application committing with synchronous=FULL: a commit is durable once the replica handed it to
the executed-state port, as in the node. A restart builds a new program from the factory,
through the same builder as the node, over the same durable ports.
May not: schedule events or route messages (that is the world), or judge invariants.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from bft.core.actions import Commit
from bft.core.blocktree import genesis
from bft.core.builder import build_replica
from bft.core.chain import MemoryChain
from bft.core.config import ReplicaConfig
from bft.core.journal import MemoryJournal
from bft.core.messages import SafetyState
from bft.core.ports import Ports
from bft.core.program import Program
from bft.core.replica import Replica
from bft.core.safety_store import DurableFileStore, Filesystem, SafetyStore
from bft.core.types import ValidatorIndex, View
from bft.core.wire import decode_safety_state
from bft.sim.disk import SimDisk
from bft.sim.network import Instance
from bft.sim.settings import MAX_LARGE_TXS, SimSettings
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


class SimPayload:
    """A mempool's behaviour: each proposal offers the transactions offered before and not yet
    committed (as the node's mempool does until it hears of the commit), then 1 to 3 new unique
    ones, b"tx/<seed>/<instance>/<view>/<k>", some of them large (padded up to the settings'
    size, at most `MAX_LARGE_TXS` per instance and schedule).

    Survives restarts (it models the node's mempool client), so transactions stay unique.
    """

    # Offered-but-uncommitted transactions kept for re-offering (oldest dropped beyond this).
    MAX_PENDING = 32

    def __init__(
        self,
        seed: int,
        inst: Instance,
        rng: random.Random,
        committed: Callable[[bytes], bool],
        settings: SimSettings,
    ) -> None:
        self._prefix = f"tx/{seed}/{inst.index}.{inst.copy}/".encode()
        self._rng = rng
        self._next = 0
        self._committed = committed
        self._pending: list[bytes] = []
        self._settings = settings
        self._large_left = MAX_LARGE_TXS if settings.large_tx_rate > 0 else 0

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
            txs.append(self._maybe_large(tx))
        self._pending.extend(txs)
        return tuple(again + txs)

    def _maybe_large(self, tx: bytes) -> bytes:
        if self._large_left <= 0 or self._rng.random() >= self._settings.large_tx_rate:
            return tx
        self._large_left -= 1
        size = self._rng.randint(self._settings.max_large_tx_bytes // 8, self._settings.max_large_tx_bytes)
        return tx + b"/" + b"\x00" * max(0, size - len(tx) - 1)


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
        settings: SimSettings,
    ) -> None:
        self.inst = inst
        self.key = key
        self.config = config
        self.factory = factory
        self.sig_cache = sig_cache
        self.checked = checked
        self.rng = random.Random(f"node/{seed}/{inst.index}/{inst.copy}")
        self.chain = MemoryChain(*genesis(config.chain_id))
        self.payload = SimPayload(seed, inst, self.rng, self.chain.has_tx, settings)
        self.disk = SimDisk()
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
        return self.chain.height

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
        store = ObservedStore(DurableFileStore(self.disk), on_save, on_load)
        self.chain.set_listener(on_commit)
        ports = Ports(store, self.journal, self.chain, self.chain, self.payload)
        config, key, sig_cache = self.config, self.key, self.sig_cache

        def honest() -> Replica:
            return build_replica(config, key, ports, now, sig_cache)

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
