"""Where the simulator meets the Byzantine behaviours and the node's storage and application:
the factories campaigns run with, and campaigns run across worker processes.

Owns: FACTORIES (behaviour name -> simulator program factory; the node's storage; the key-value
ledger's transactions), `factories_with`, `NodeSimStorage` (a simulated node's block store,
executor and key-value ledger, on in-memory SQLite), `behaviour_names`, and `run_campaign_jobs`
(a campaign's seeds in N worker processes, results in seed order).
May not: hold behaviour logic (that is `bft.adversary`), simulation logic (that is `bft.sim`)
or a composition of the node's ports of its own (`bft.node.compose.open_ports` is the node's).

The simulated node's durable state is the node's own code over in-memory SQLite databases,
which live as long as the schedule: a simulated crash keeps them (SQLite's `synchronous=FULL`
contract, which the node relies on, is that a committed transaction survives and an
uncommitted one rolls back) and a restart opens a new `BlockStore`, `KeyValueLedger` and
`Executor` over them, as a restarted node process opens its files. Each COMMIT calls the
simulated disk's crash point first (`bft.sim.storage`), so an injected crash can fall between
a transaction's writes and its commit: `BlockStore` and `KeyValueLedger` then roll it back, as
SQLite would after a power cut.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sqlite3
import tempfile
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from bft.adversary import BEHAVIOURS, Behaviour
from bft.adversary.noise import SIBLING_CHAIN_SUFFIX, CrossChain, SiblingChain
from bft.app import kv
from bft.app.kv import KeyValueLedger
from bft.core.blocktree import genesis
from bft.core.ports import PayloadSource, Ports
from bft.core.safety_store import SafetyStore
from bft.core.types import BlockId
from bft.node.batch_store import BATCHES_COMMIT, SqliteBatchStore
from bft.node.compose import open_ports
from bft.node.executor import Executor
from bft.node.snapshot_serving import committed_block, records_page, served_snapshots
from bft.node.statesync import StateSyncError, SyncChain, sync_from
from bft.node.storage import BlockStore
from bft.node.tx_set import state_claim
from bft.sim.node import Factories, NodeContext, ProgramFactory, honest_factory
from bft.sim.runner import collect_campaign, run_campaign, run_schedule, sim_key
from bft.sim.spec import CampaignResult, ScheduleResult, SimSpec
from bft.sim.storage import APP_COMMIT, BLOCKS_COMMIT, NodeStorage, StorageContext, SyncLater
from crypto.signing import SignatureCache


def _factory(cls: type[Behaviour]) -> ProgramFactory:
    def build(ctx: NodeContext) -> Behaviour:
        return cls(ctx.honest(), ctx.key, ctx.config, ctx.rng)

    return build


def _cross_chain(ctx: NodeContext) -> Behaviour:
    """cross-chain with a record of the sibling chain's honest votes: the simulator plays the
    whole network, the sibling chain's too, so it has the validators' keys to stand in for that
    traffic (`bft.adversary.noise.SiblingChain` says why this forges nothing)."""
    validators = ctx.config.validators
    chain_id = ctx.config.chain_id + SIBLING_CHAIN_SUFFIX
    record = SiblingChain(chain_id, validators, [sim_key(i) for i in range(validators.n)])
    return CrossChain(ctx.honest(), ctx.key, ctx.config, ctx.rng, record=record)


class _CrashPointConnection(sqlite3.Connection):
    """A connection whose every COMMIT is first a crash point of the simulated disk."""

    crash_point: Callable[[str], None]
    label: str

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.crash_point(f"{self.label}: COMMIT")
        return super().execute(sql, parameters)


def _memory_db(label: str, crash_point: Callable[[str], None]) -> _CrashPointConnection:
    db = sqlite3.connect(":memory:", isolation_level=None, factory=_CrashPointConnection)
    assert isinstance(db, _CrashPointConnection)
    db.crash_point, db.label = crash_point, label
    return db


# The block store's transaction-index bounds (rows, heights) in the simulator: far below the
# node's, so that schedules of small blocks write the index often, and a crash loses the rows of
# up to 32 heights, which the restart must re-index: the window in which a client's retry
# (`bft.sim.node.SimClients.retry`) commits a second time (the mutation that skips the
# re-index is caught at seed 34 with these bounds; with (24, 3) the window was too short for
# 40 seeds to catch it).
SIM_TX_INDEX_BOUNDS = (64, 32)
# Under a retention the simulated nodes prune this many heights at a time (the node: 64), so that
# schedules of a few hundred heights prune often, crashes and replays included.
SIM_PRUNE_STEP_HEIGHTS = 4
# On a state-sync chain under a retention, the simulated ledgers write a snapshot this often (the
# node's default: 1,000), to a directory of their own on tmpfs where there is one.
SIM_SNAPSHOT_INTERVAL = 8
_SNAPSHOT_ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


class NodeSimStorage:
    """A simulated node's committed chain, journal and key-value ledger: `bft.sim.NodeStorage`
    over the node's own `BlockStore`, `Executor` and `KeyValueLedger`, composed by the node's
    `open_ports`."""

    def __init__(self, ctx: StorageContext) -> None:
        self._name = ctx.name
        self._genesis_id = genesis(ctx.chain_id)[0].id
        self._chain_id = ctx.chain_id
        self._commit_chain = ctx.commit_chain
        self._deferred = ctx.quorum_store
        self._options = ctx.options
        self._crash_point = ctx.crash_point
        self._validators = ctx.validators
        # Snapshots only where a wiped node can join from them (a state-sync chain with a
        # retention): elsewhere writing them would only cost time.
        self._snapshot_dir = (
            Path(tempfile.mkdtemp(prefix="bft-sim-snapshots-", dir=_SNAPSHOT_ROOT))
            if ctx.options.state_sync and ctx.options.retain_blocks
            else None
        )
        self._blocks_db = _memory_db(f"{BLOCKS_COMMIT}, the blocks of node {ctx.name}", ctx.crash_point)
        self._app_db = _memory_db(f"{APP_COMMIT}, the ledger of node {ctx.name}", ctx.crash_point)
        self._batches_db = _memory_db(f"{BATCHES_COMMIT}, the batches of node {ctx.name}", ctx.crash_point)
        self._blocks = self._open_blocks()
        self._app = self._open_app()
        self._executor: Executor | None = None

    def _open_blocks(self, db: sqlite3.Connection | None = None) -> BlockStore:
        return BlockStore.over(
            self._blocks_db if db is None else db,
            f"blocks:{self._name}",
            genesis_id=self._genesis_id,
            commit_chain=self._commit_chain,
            index_bounds=SIM_TX_INDEX_BOUNDS,
            tx_set=self._options.state_sync,
        )

    def _open_app(self) -> KeyValueLedger:
        if not self._options.state_sync:
            return KeyValueLedger.over(self._app_db, f"ledger:{self._name}")
        return KeyValueLedger.over(
            self._app_db,
            f"ledger:{self._name}",
            hash_version=2,
            snapshot_interval=SIM_SNAPSHOT_INTERVAL if self._snapshot_dir is not None else 0,
            snapshot_dir=self._snapshot_dir,
        )

    def restore_from(self, peers: Sequence[tuple[NodeStorage, bool]]) -> tuple[int, BlockId] | None:
        if not self._options.state_sync or self._validators is None:
            return None
        sources = [_PeerSource(p, lies) for p, lies in peers if isinstance(p, NodeSimStorage)]
        chain = SyncChain(
            self._chain_id, self._validators, self._commit_chain, self._options.leader_reputation
        )
        dbs: list[_CrashPointConnection] = []

        def new_store() -> BlockStore:
            dbs.append(
                _memory_db(f"{BLOCKS_COMMIT}, the synced blocks of node {self._name}", self._crash_point)
            )
            return self._open_blocks(dbs[-1])

        # New objects over the durable state, as the new process that syncs has.
        self._blocks, self._app = self._open_blocks(), self._open_app()
        try:
            done = sync_from(chain, self._app, sources, new_store, self._blocks.height)
        except StateSyncError as exc:
            raise SyncLater(str(exc)) from None
        if done is None:
            return None
        report, store = done
        # The new chain in place of the old, as the node renames its synced file over its own.
        self._blocks.close()
        self._blocks_db, self._blocks = dbs[-1], store
        tip = store.tip()
        assert tip is not None and tip[0].height == report.height
        return report.height, tip[0].id

    def open(self, safety_store: SafetyStore, payload: PayloadSource) -> Ports:
        # New objects, as a new process has: nothing the last one held in memory carries over.
        self._blocks, self._app = self._open_blocks(), self._open_app()
        batches = SqliteBatchStore.over(self._batches_db, f"batches:{self._name}")
        self._executor = Executor(
            self._app, self._blocks, deferred=self._deferred, state_claims=self._options.state_sync
        )
        return open_ports(safety_store, self._blocks, self._executor, payload, batches)

    def catch_up(self) -> None:
        if self._executor is not None:
            self._executor.execute_pending()
            executed = self._executor.executed()[0]
            self._blocks.keep_latest(self._options.retain_blocks, executed, SIM_PRUNE_STEP_HEIGHTS)

    @property
    def height(self) -> int:
        return self._blocks.height

    def app_hash_at(self, height: int) -> bytes | None:
        own = self._app.app_hash_at(height)
        if own is None or not self._options.state_sync:
            return own
        digest = self._blocks.tx_set_digest_at(height)
        return None if digest is None else state_claim(height, own, digest)

    def close(self) -> None:
        self._blocks.close()
        self._app.close()
        if self._snapshot_dir is not None:
            shutil.rmtree(self._snapshot_dir, ignore_errors=True)


class _PeerSource:
    """A live peer's storage as a state-sync source: what its API would serve
    (`bft.node.snapshot_serving`), read from its stores. A lying one (a Byzantine validator's)
    passes its older snapshot off as its newest: the older one's app hash, transaction set,
    chunks and records under the newer one's height, every part consistent with the others,
    so that only the check against the chain's claim for that height tells."""

    def __init__(self, peer: NodeSimStorage, lies: bool) -> None:
        self._peer = peer
        self._swap: dict[int, int] = {}
        if lies:
            heights = [s["height"] for s in served_snapshots(peer._app, peer._blocks)]
            if len(heights) >= 2:
                self._swap = {heights[0]: heights[1]}

    @property
    def name(self) -> str:
        return self._peer._name

    def snapshot_list(self) -> object | None:
        served = served_snapshots(self._peer._app, self._peer._blocks)
        by_height = {s["height"]: s for s in served}
        for newer, older in self._swap.items():
            if newer in by_height and older in by_height:
                by_height[newer] = {**by_height[older], "height": newer}
        return {"snapshots": list(by_height.values())}

    def block(self, height: int) -> object | None:
        return committed_block(self._peer._blocks, height)

    def chunk(self, height: int, format: int, index: int) -> bytes | None:
        return self._peer._app.load_snapshot_chunk(self._swap.get(height, height), format, index)

    def records(self, height: int, after: bytes) -> bytes | None:
        return records_page(self._peer._blocks, self._swap.get(height, height), after)

    def earliest_height(self) -> int | None:
        return self._peer._blocks.base + 1


class KvTransactions:
    """The key-value ledger's transactions (`bft.sim.Transactions`)."""

    def put(self, key: str, value: str, nonce: str) -> bytes:
        return kv.put_tx(key, value, nonce)

    def delete(self, key: str, nonce: str) -> bytes:
        return kv.del_tx(key, nonce)

    def compare_and_set(self, key: str, expect: str | None, value: str, nonce: str) -> bytes:
        return kv.cas_tx(key, expect, value, nonce)


PROGRAMS: Mapping[str, ProgramFactory] = {
    "honest": honest_factory,
    **{name: _factory(cls) for name, cls in BEHAVIOURS.items()},
    CrossChain.name: _cross_chain,
}
FACTORIES = Factories(PROGRAMS, NodeSimStorage, KvTransactions())


def factories_with(programs: Mapping[str, ProgramFactory]) -> Factories:
    """Other programs (test doubles, a patched honest replica) on the node's storage and ledger."""
    return FACTORIES.with_programs(programs)


def behaviour_names() -> list[str]:
    """Behaviours a campaign can name: the wrappers above, plus Twins (a network arrangement)."""
    return [*sorted(BEHAVIOURS), "twins"]


def default_factories() -> Factories:
    """FACTORIES, as a module-level function a worker process can be told to call."""
    return FACTORIES


# How a worker finds its factories: a module-level function (pickled by name, not by value).
FactoriesRef = Callable[[], Factories]

# Seeds handed to the pool ahead of the one being reported, per worker: enough to keep every
# worker busy while results are taken in seed order, few enough that Ctrl-C discards little.
_AHEAD_PER_JOB = 4
_JOIN_TIMEOUT_S = 5.0


def run_campaign_jobs(
    spec: SimSpec,
    seeds: Iterable[int],
    jobs: int = 1,
    on_result: Callable[[ScheduleResult], None] | None = None,
    factories: FactoriesRef = default_factories,
) -> CampaignResult:
    """Run every seed, in this process when `jobs` is 1, else in `jobs` worker processes.

    Each schedule is a pure function of (spec, seed, factories), so the results, reported in
    seed order (to `on_result` as well), are the same whatever `jobs` is; only the wall time
    differs. If anything interrupts the campaign (KeyboardInterrupt included), the workers are
    terminated and joined before the exception propagates."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        return run_campaign(spec, seeds, factories(), on_result)
    with _WorkerPool(spec, jobs, factories) as pool:
        return collect_campaign(spec, pool.results(seeds), on_result)


# One worker process's campaign: set once by the pool's initializer.
_worker: tuple[SimSpec, Factories, SignatureCache] | None = None


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(spec: SimSpec, factories: FactoriesRef) -> None:
    global _worker
    # Ctrl-C reaches the whole foreground process group; the parent alone handles it and
    # terminates the workers, so a worker never dies half-way through sending a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # A parent that dies without reaping its workers (SIGKILL, SIGTERM) would leave them blocked
    # on the task queue for ever: each worker leaves as soon as its parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    _worker = (spec, factories(), SignatureCache())


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _run_seed(seed: int) -> ScheduleResult:
    assert _worker is not None, "worker not initialised"
    spec, factories, cache = _worker
    return run_schedule(spec, seed, factories, sig_cache=cache)


class _WorkerPool:
    """Spawn-started worker processes running one campaign; `results` yields in seed order.

    Each worker has its own pipe: the parent sends it seeds and it answers them in the order it
    got them. Nothing is shared between workers (no queue, lock or feeder thread), so stopping
    the pool is only terminate, join and, past a timeout, kill: a worker stopped half-way
    through a message cannot leave anything locked behind it. (concurrent.futures' process pool
    could: after a Ctrl-C its shutdown sometimes waited for ever on its call queue.)
    """

    def __init__(self, spec: SimSpec, jobs: int, factories: FactoriesRef) -> None:
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
        try:
            for _ in range(jobs):
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker_main, args=(theirs, spec, factories), daemon=True)
                # The worker starts with SIGINT blocked (the mask is inherited), so a Ctrl-C while
                # it is still importing stays pending until it ignores SIGINT, instead of killing
                # it with a traceback. The parent still sees the Ctrl-C.
                with _sigint_blocked():
                    process.start()
                theirs.close()
                self._workers.append((process, ours))
        except BaseException:
            self._terminate()
            raise

    def results(self, seeds: Iterable[int]) -> Iterator[ScheduleResult]:
        todo = iter(seeds)
        # (seed, the worker's pipe) in the order sent; each worker answers its own in order.
        in_flight: deque[tuple[int, Connection]] = deque()

        def send_next(conn: Connection) -> None:
            for seed in islice(todo, 1):
                conn.send(seed)
                in_flight.append((seed, conn))

        for _ in range(_AHEAD_PER_JOB):
            for _, conn in self._workers:
                send_next(conn)
        while in_flight:
            seed, conn = in_flight.popleft()
            try:
                outcome, value = conn.recv()
            except (EOFError, OSError):  # closed, or reset with our unread seeds in it
                raise RuntimeError(f"a campaign worker died running seed {seed}") from None
            if outcome == "error":
                raise RuntimeError(f"seed {seed} failed in a campaign worker:\n{value}")
            send_next(conn)
            yield value

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._terminate(finished=exc_type is None)

    def _terminate(self, finished: bool = False) -> None:
        """Stop every worker and reap it: a finished campaign's workers leave when their pipe
        closes; otherwise (an error, a Ctrl-C) running seeds are stopped at once."""
        for process, conn in self._workers:
            conn.close()
            if finished:
                process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.terminate()
        for process, _ in self._workers:
            process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()


def _worker_main(conn: Connection, spec: SimSpec, factories: FactoriesRef) -> None:
    """A worker: run each seed the parent sends and answer ("ok", result) or ("error", text)."""
    _init_worker(spec, factories)
    while True:
        try:
            seed = conn.recv()
        except EOFError:
            return  # the parent closed its end: the campaign is over
        try:
            answer: tuple[str, object] = ("ok", _run_seed(seed))
        except Exception:
            answer = ("error", traceback.format_exc())
        conn.send(answer)
