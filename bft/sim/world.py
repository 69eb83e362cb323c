"""One schedule in motion: nodes, network, faults and invariants wired to the event heap.

Owns: `World`, the event types and the per-event step: deliver (decode, hand to the program),
fire timers, hand client transactions arriving to the node's mempool and tell the program
(`on_payload`, as the node's drive loop does), carry out the fault plan (half of the long crashes after
GST and a third of the mid-save crashes aimed at the node's next application commit; pauses, during
which what reaches the node is held in arrival order and its timer does not fire, and after which it
takes one timer step at the jumped clock, then reads what was held, as a stopped process does),
tell the checker the app hashes each node's application reaches, perform the returned actions
(encode and route sends, record commits, trace refusals and evidence, counting the evidence
honest instances report per validator it names) and feed every observation to the invariant checker.
Every message is encoded with `wire.encode` when sent and decoded with `wire.decode` when
delivered; a DecodeError at delivery is a refusal, never a crash. Any exception a program raises
is a `program-error` violation (the node then stays down); SimCrash is an injected crash.
May not: import bft.adversary or trio, read the real clock, or do real I/O.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from bft.core.actions import Action, Broadcast, Commit, Evidence, Refusal, Send, SendRaw, ViewChange
from bft.core.app_state import execution_lag
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.config import ReplicaConfig
from bft.core.errors import DecodeError, InvariantViolation
from bft.core.leader import leader_of
from bft.core.messages import Message, Proposal, SafetyState, Timeout, Vote
from bft.core.program import Program
from bft.core.replica import Replica
from bft.core.safety import first_state
from bft.core.serving import ServingLimits
from bft.core.types import ValidatorIndex, ValidatorSet, View
from bft.core.wire import MAX_MESSAGE_SIZE_BYTES, decode, encode
from bft.sim.disk import SimCrash
from bft.sim.faults import CrashEvent, CrashKind, FaultPlan, Pause, generate_fault_plan
from bft.sim.invariants import InvariantChecker
from bft.sim.network import Instance, Network
from bft.sim.node import Factories, SimNode, honest_factory
from bft.sim.scheduler import Scheduler
from bft.sim.settings import draw_settings, fixed_settings
from bft.sim.spec import HONEST, ScheduleResult, SimSpec
from bft.sim.storage import APP_COMMIT, BLOCKS_COMMIT, StorageOptions, SyncLater
from bft.sim.twins import TwinsScenario, generate_twins_scenario
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

TraceEntry = tuple[float, str, str]


# A node whose state sync found no snapshot it could verify tries again this much later.
SYNC_RETRY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Start:
    inst: Instance


@dataclass(frozen=True, slots=True)
class Deliver:
    dst: Instance
    src: Instance
    data: bytes


@dataclass(frozen=True, slots=True)
class TimerFired:
    inst: Instance
    generation: int


@dataclass(frozen=True, slots=True)
class TxArrival:
    inst: Instance


@dataclass(frozen=True, slots=True)
class FaultStart:
    crash: CrashEvent


@dataclass(frozen=True, slots=True)
class FaultEnd:
    crash: CrashEvent


@dataclass(frozen=True, slots=True)
class PauseStart:
    pause: Pause


@dataclass(frozen=True, slots=True)
class PauseEnd:
    pause: Pause


@dataclass(frozen=True, slots=True)
class Gst:
    pass


@dataclass(frozen=True, slots=True)
class LastFault:
    pass


@dataclass(frozen=True, slots=True)
class WindowEnd:
    pass


Event = (
    Start
    | Deliver
    | TimerFired
    | TxArrival
    | FaultStart
    | FaultEnd
    | PauseStart
    | PauseEnd
    | Gst
    | LastFault
    | WindowEnd
)


@dataclass(frozen=True, slots=True)
class HeldTxs:
    """Client transactions that reached a paused node (its API's socket holds them too)."""

    txs: tuple[bytes, ...]


# What waits for a paused node, in the order it arrived.
Held = Deliver | HeldTxs


def view_of(msg: Message) -> int | None:
    """The view a message belongs to for view partitions (None: it always passes)."""
    if isinstance(msg, Proposal | Vote | Timeout):
        return msg.view
    return None


def describe(msg: Message) -> str:
    """A message in a trace line: `Vote(view=7)`, or its type alone if it has no view."""
    v = view_of(msg)
    return type(msg).__name__ if v is None else f"{type(msg).__name__}(view={v})"


def error_summary(exc: BaseException) -> str:
    """`Type: message` and the innermost frames, one line."""
    tb = traceback.extract_tb(exc.__traceback__)
    frames = "; ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in tb[-4:])
    return f"{type(exc).__name__}: {exc} [{frames}]"


def assign_byzantine(spec: SimSpec, seed: int) -> tuple[dict[int, str], tuple[int, ...]]:
    """Seeded placement of the spec's Byzantine behaviours and of the Twins' indices."""
    order = list(range(spec.nodes))
    if spec.shuffle_byzantine:
        random.Random(f"byzantine/{seed}").shuffle(order)
        byz = {order[k]: spec.byzantine[i] for k, i in enumerate(sorted(spec.byzantine))}
    else:
        byz = dict(spec.byzantine)
    free = [i for i in order if i not in byz]
    twins = tuple(sorted(free[: spec.twin_count]))
    return byz, twins


class World:
    def __init__(
        self,
        spec: SimSpec,
        seed: int,
        factories: Factories,
        keys: Callable[[int], PrivateKey],
        sig_cache: SignatureCache,
        trace: list[TraceEntry] | None = None,
    ) -> None:
        self.spec = spec
        self.seed = seed
        self.trace = trace
        self.byzantine, twin_indices = assign_byzantine(spec, seed)
        faulty = set(self.byzantine) | set(twin_indices)
        self.twins: TwinsScenario | None = None
        if spec.twins:
            self.twins = generate_twins_scenario(
                random.Random(f"twins/{seed}"), spec.nodes, twin_indices, spec.twins_rounds
            )
        self.settings = (
            draw_settings(
                seed,
                spec.base_timeout_s,
                spec.delta_s,
                spec.max_timeout_s,
                short_timeouts=spec.short_timeouts,
            )
            if spec.production
            else fixed_settings(spec.base_timeout_s, spec.delta_s, spec.max_timeout_s)
        )
        base_timeout_s = self.settings.base_timeout_s
        min_gst = spec.twins_rounds * base_timeout_s if spec.twins else 0.0
        self.plan: FaultPlan = generate_fault_plan(
            seed,
            spec.nodes,
            faulty,
            base_timeout_s=base_timeout_s,
            delta_s=self.settings.delta_s,
            max_gst_s=max(spec.max_gst_s * spec.time_scale, min_gst),
            min_gst_s=min_gst,
            crashes=spec.crashes,
            total_crashes=spec.total_crashes,
            late_crashes=spec.late_crashes,
            late_async=spec.late_async,
            view_partitions=spec.view_partitions,
            pause_rate=spec.pause_rate,
            time_scale=spec.time_scale,
            wipe_rate=spec.wipe_rate,
        )
        validators = ValidatorSet(tuple(keys(i).public_key for i in range(spec.nodes)))
        leaders = self.twins.leaders if self.twins is not None else ()
        instances = (
            self.twins.instances(spec.nodes)
            if self.twins is not None
            else [Instance(i) for i in range(spec.nodes)]
        )
        honest = [i for i in instances if i.index not in faulty]
        genesis_qc = genesis(spec.chain_id)[1]
        certifier = Certifier(spec.chain_id, validators, genesis_qc, sig_cache)
        # Whose turn a view is, as every replica computes it (from the chain id, the validators
        # and the leader prefix; `me` plays no part).
        leader_config = ReplicaConfig(
            chain_id=spec.chain_id,
            validators=validators,
            me=ValidatorIndex(0),
            leaders=leaders,
            leader_reputation=spec.leader_reputation,
        )
        # Every replica's serving budgets (they depend on n, the base timeout and the pending bound).
        serving = ServingLimits.of(
            ReplicaConfig(
                chain_id=spec.chain_id,
                validators=validators,
                me=ValidatorIndex(0),
                base_timeout_s=base_timeout_s,
                max_timeout_s=self.settings.max_timeout_s,
                max_batch_delay_s=self.settings.max_batch_delay_s,
            )
        )
        self.leader: Callable[[View], ValidatorIndex] = lambda view: leader_of(leader_config, view)
        self.checker = InvariantChecker(
            honest,
            spec.min_new_commits,
            certifier,
            leader_config,
            serving,
            spec.commit_chain,
            execution_lag(spec.quorum_store),
        )
        self.nodes: dict[Instance, SimNode] = {}
        for inst in instances:
            behaviour = self.byzantine.get(inst.index, HONEST)
            if behaviour == HONEST:
                factory = factories.programs.get(HONEST, honest_factory)
            elif behaviour in factories.programs:
                factory = factories.programs[behaviour]
            else:
                known = ", ".join(sorted(factories.programs)) or "none"
                raise ValueError(f"unknown Byzantine behaviour {behaviour!r} (known: {known})")
            config = ReplicaConfig(
                chain_id=spec.chain_id,
                validators=validators,
                me=ValidatorIndex(inst.index),
                base_timeout_s=base_timeout_s,
                max_timeout_s=self.settings.max_timeout_s,
                max_block_txs=self.settings.max_block_txs,
                max_block_bytes=self.settings.max_block_bytes,
                max_batch_delay_s=self.settings.max_batch_delay_s,
                max_fetch_blocks=self.settings.max_fetch_blocks,
                leaders=leaders,
                commit_chain=spec.commit_chain,
                leader_reputation=spec.leader_reputation,
            )
            config = self._with_quorum_store(config, spec)
            self.nodes[inst] = SimNode(
                inst,
                seed=seed,
                key=keys(inst.index),
                config=config,
                factory=factory,
                storage=factories.storage,
                txs=factories.txs,
                sig_cache=sig_cache,
                checked=inst in self.checker.honest,
                settings=self.settings,
                storage_options=StorageOptions(spec.state_sync, spec.retain_blocks, spec.leader_reputation),
            )
            self.checker.on_first_record(inst, first_state(config.chain_id))
        self.network = Network(
            instances,
            self.plan.network_params(),
            random.Random(f"network/{seed}"),
            self.plan.partitions,
            [
                *self.plan.view_partitions,
                *(self.twins.view_partitions(self.plan.gst_s) if self.twins is not None else ()),
            ],
            self.plan.async_periods,
        )
        self.sched: Scheduler[Event] = Scheduler()
        self.events = 0
        self.refusals = 0
        # Evidence reported by honest instances, by the validator it names.
        self.evidence: dict[int, int] = {}
        self.after_gst = False
        self.done = False
        # What waits for each paused instance (`bft.sim.faults.Pause`), in arrival order.
        self.held: dict[Instance, list[Held]] = {}
        self.stopped_at: dict[Instance, float] = {}
        # Aimed pauses armed and waiting for their instance to enter a view it leads.
        self.aimed: dict[Instance, Pause] = {}
        for inst in instances:
            self.sched.schedule(0.0, Start(inst))
            self.sched.schedule(self.nodes[inst].clients.gap_s(), TxArrival(inst))
        for crash in self.plan.crashes:
            self.sched.schedule(crash.at_s, FaultStart(crash))
            self.sched.schedule(crash.restart_s, FaultEnd(crash))
        for pause in self.plan.pauses:
            self.sched.schedule(pause.at_s, PauseStart(pause))
            self.sched.schedule(pause.resume_s, PauseEnd(pause))
        self.sched.schedule(self.plan.gst_s, Gst())
        # Liveness is demanded over a window after the last fault, not just after GST.
        self.sched.schedule(self.plan.last_fault_s, LastFault())
        self.sched.schedule(self.plan.last_fault_s + spec.window_s, WindowEnd())

    # -- tracing -----------------------------------------------------------------------------

    def _with_quorum_store(self, config: ReplicaConfig, spec: SimSpec) -> ReplicaConfig:
        """`config` with the quorum store's settings, when the spec runs it."""
        if not spec.quorum_store:
            return config
        s = self.settings
        return replace(
            config,
            quorum_store=True,
            max_batch_txs=s.max_batch_txs,
            max_batch_bytes=s.max_batch_bytes,
            batch_lifetime_heights=s.batch_lifetime_heights,
            max_stored_batches=s.max_stored_batches,
            max_block_batches=s.max_block_batches,
        )

    def _trace(self, inst: Instance | None, what: str) -> None:
        if self.trace is not None:
            self.trace.append((self.sched.now, "-" if inst is None else str(inst), what))

    # -- running -----------------------------------------------------------------------------

    def run(self) -> ScheduleResult:
        try:
            return self._run()
        finally:
            for node in self.nodes.values():
                node.storage.close()

    def _run(self) -> ScheduleResult:
        while not self.done:
            popped = self.sched.pop()
            if popped is None:
                break
            _, event = popped
            self.events += 1
            self._handle(event)
            if self.spec.stop_on_violation and self.checker.violations:
                break
            if (
                self.after_gst
                and self.sched.now
                >= max(self.spec.min_duration_s * self.spec.time_scale, self.plan.last_fault_s)
                and self.checker.has_baseline
                and not self.checker.lagging(self._halted())
            ):
                break
            if self.events >= self.spec.max_events:
                self.checker.on_event_budget(self.sched.now, self.events)
                break
        honest = sorted(self.checker.honest)
        heights = {str(i): self.nodes[i].committed_height for i in honest}
        return ScheduleResult(
            seed=self.seed,
            spec=self.spec,
            violations=tuple(self.checker.violations),
            commits=min((self.nodes[i].committed_height for i in honest), default=0),
            heights=heights,
            sim_time_s=self.sched.now,
            events=self.events,
            plan=self.plan,
            byzantine=dict(self.byzantine),
            twins=self.twins,
            refusals=self.refusals,
            messages=self.network.stats.sent,
            settings=self.settings,
            evidence=dict(self.evidence),
        )

    def _halted(self) -> list[Instance]:
        return [i for i, n in self.nodes.items() if n.halted]

    def _handle(self, event: Event) -> None:
        now = self.sched.now
        match event:
            case Deliver(dst=dst) if dst in self.held:
                self.held[dst].append(event)  # in the socket buffer of a stopped process
            case Deliver(dst=dst, src=src, data=data):
                self._deliver(self.nodes[dst], src, data)
            case TimerFired(inst=inst) if inst in self.held:
                pass  # a stopped process's timers do not fire; it steps once at its resume
            case TimerFired(inst=inst, generation=gen):
                node = self.nodes[inst]
                if node.program is not None and gen == node.timer_generation:
                    node.timer_at = None
                    self._timer_step(node)
            case TxArrival(inst=inst):
                self._tx_arrival(self.nodes[inst])
            case PauseStart(pause=pause):
                self._pause(pause)
            case PauseEnd(pause=pause):
                self._resume(pause)
            case Start(inst=inst):
                self._sync_then_start(self.nodes[inst])
            case FaultStart(crash=crash):
                self._fault_start(crash)
            case FaultEnd(crash=crash):
                self._fault_end(crash)
            case Gst():
                self.after_gst = True
                self._trace(None, "GST")
            case LastFault():
                # From here every honest instance must catch up with the highest of them and
                # commit `min_new_commits` more within the window: a lagging node that never
                # catches up is a liveness violation, not a pass.
                top = max((self.nodes[i].committed_height for i in self.checker.honest), default=0)
                self._trace(None, f"last fault over; liveness baseline height {top}")
                self.checker.start_liveness({i: top for i in self.checker.honest})
            case WindowEnd():
                self.checker.finish_liveness(now, self.spec.window_s, self._halted())
                self.done = True

    def _timer_step(self, node: SimNode, why: str = "") -> None:
        now = self.sched.now
        self._trace(node.inst, f"timer{why}")
        self._step(node, lambda p: p.on_timer(now))
        self._check_timer_progress(node, now)

    def _pause(self, pause: Pause) -> None:
        """The process stops (SIGSTOP, a long GC or disk stall): from now it handles nothing;
        what reaches it waits (`held`). An aimed pause is armed instead (`_step` stops the
        process). Plans never pause a node that is down or armed to crash."""
        node = self.nodes[Instance(pause.index)]
        if not node.alive:
            return
        if pause.aimed:
            self.aimed[node.inst] = pause
            latest_ms = pause.latest_stop_s * 1000
            self._trace(
                node.inst, f"pause armed: stops after it next enters a view it leads, by {latest_ms:.1f} ms"
            )
            return
        self._stop(node, pause)

    def _stop(self, node: SimNode, pause: Pause) -> None:
        self.held[node.inst] = []
        self.stopped_at[node.inst] = self.sched.now
        until_ms = pause.resume_s * 1000
        self._trace(node.inst, f"pause until {until_ms:.1f} ms (stopped: no timer fires, nothing is read)")

    def _resume(self, pause: Pause) -> None:
        """The process goes on with its clock jumped: one timer step at the new time, with every
        deadline due long ago, then what was held, in order, as a process reads a full socket
        buffer when it runs again."""
        inst = Instance(pause.index)
        if self.aimed.pop(inst, None) is not None:
            self._trace(inst, "pause disarmed: it entered no view it leads in time")
        held = self.held.pop(inst, None)
        if held is None:
            return
        node = self.nodes[inst]
        messages = sum(isinstance(h, Deliver) for h in held)
        jump_ms = (self.sched.now - self.stopped_at.pop(inst)) * 1000
        self._trace(
            inst,
            f"resume: the clock jumped {jump_ms:.1f} ms; "
            f"{messages} message(s) and {len(held) - messages} transaction arrival(s) held",
        )
        # The timer armed before the pause is stale: the resume step below replaces it.
        node.timer_generation += 1
        node.timer_at = None
        if node.program is not None:
            self._timer_step(node, " (on resume)")
        for item in held:
            self.events += 1
            if node.program is None:
                break  # the program raised in an earlier step
            match item:
                case Deliver(src=src, data=data):
                    self._deliver(node, src, data)
                case HeldTxs(txs=txs):
                    self._admit(node, list(txs))

    def _start(self, node: SimNode) -> None:
        now = self.sched.now
        inst = node.inst

        def on_save(state: SafetyState) -> None:
            self.checker.on_save(self.sched.now, inst, state)

        def on_load(state: SafetyState | None) -> None:
            self.checker.on_load(self.sched.now, inst, state)

        def on_commit(commit: Commit) -> None:
            self._commit(node, commit)

        self._trace(inst, f"start (incarnation {node.incarnation + 1})")
        try:
            node.start(now, on_save, on_load, on_commit)
        except SimCrash:
            node.crash()
            return
        except Exception as exc:
            self._program_error(node, exc, "start")
            return
        self._report_app_hashes(node)
        self._arm_timer(node)

    def _tx_arrival(self, node: SimNode) -> None:
        """Client transactions reach the node's mempool, and the replica hears of it as the
        node's drive loop tells it (`on_payload`): an idle leader pacing its empty block
        proposes now. A node that is down misses them. The next arrival is drawn at once."""
        now = self.sched.now
        self.sched.schedule(now + node.clients.gap_s(), TxArrival(node.inst))
        txs = node.clients.draw()
        if self.spec.quorum_store:
            self._retry(node)
        self._arrive(node, txs)

    def _retry(self, node: SimNode) -> None:
        """Under the quorum store, a client may send a recent transaction again to another node
        (`SimClients.retry`); the checker hears of it (it may commit at two heights)."""
        retry = node.clients.retry([i for i in self.nodes if i != node.inst])
        if retry is None:
            return
        inst, tx = retry
        self.checker.observe_retry(tx)
        self._trace(node.inst, f"a client sends tx again, to {inst}")
        self._arrive(self.nodes[inst], [tx])

    def _arrive(self, node: SimNode, txs: list[bytes]) -> None:
        if node.program is None:
            return
        if node.inst in self.held:
            self.held[node.inst].append(HeldTxs(tuple(txs)))
            return
        self._admit(node, txs)

    def _admit(self, node: SimNode, txs: list[bytes]) -> None:
        now = self.sched.now
        admitted = node.payload.add(txs)
        self._trace(node.inst, f"{admitted} of {len(txs)} tx(s) arrive ({len(node.payload)} pending)")
        self._step(node, lambda p: p.on_payload(now))

    def _fault_start(self, crash: CrashEvent) -> None:
        node = self.nodes[Instance(crash.index)]
        if node.program is None:
            return
        self._trace(node.inst, f"fault {crash.kind.value} armed")
        # Variants aimed at the commits of a node's storage (`bft.sim.storage`): between the
        # block store's append and the application's commit, after which the next start must
        # replay the block (half of the long crashes after GST, nodes commit often then, and a
        # third of the mid-save crashes die at the node's next application commit), and at the
        # block store's commit itself (a quarter of those long crashes, a sixth of the mid-save
        # ones), where an application that committed first would be ahead of the chain.
        aim = random.Random(f"app-commit-crash/{self.seed}/{crash.index}/{crash.at_s}").random()
        late = crash.at_s >= self.plan.gst_s
        if crash.kind is CrashKind.PLAIN and not (late and aim < 3 / 4):
            self._crash(node, "plain crash")
        elif crash.kind is CrashKind.AFTER_STEP:
            node.crash_after_step = True
        elif aim < (1 / 2 if crash.kind is CrashKind.PLAIN else 1 / 3):
            self._trace(node.inst, "the crash waits for the application's next commit")
            node.disk.crash_at_next(APP_COMMIT)
        elif aim < (3 / 4 if crash.kind is CrashKind.PLAIN else 1 / 2):
            self._trace(node.inst, "the crash waits for the block store's next commit")
            node.disk.crash_at_next(BLOCKS_COMMIT)
        else:
            node.disk.crash_after_ops(crash.after_ops)

    def _fault_end(self, crash: CrashEvent) -> None:
        node = self.nodes[Instance(crash.index)]
        if node.halted:
            return
        if node.program is not None:  # the armed crash never fired
            node.crash_after_step = False
            node.disk.cancel_crash()
            self._trace(node.inst, "fault disarmed")
            return
        if crash.wipe:
            self._trace(node.inst, "data directory wiped: no safety record, no blocks")
            node.wipe()
            self.checker.on_wipe(node.inst)
        self._sync_then_start(node)

    def _sync_then_start(self, node: SimNode) -> None:
        """Start the node; on a state-sync chain that prunes, as with `--state-sync` (its
        operator's only way back once its peers pruned what it would replay): from the newest
        snapshot its live peers serve above its committed height, if one verifies. If snapshots
        are offered but none verifies yet (the newest one's claim is not proven committed yet,
        the older ones were never claimed), it tries again a second later, as `bft node
        --state-sync` does."""
        if node.program is not None or node.halted:
            return
        if self.spec.state_sync and self.spec.retain_blocks:
            try:
                if not self._state_sync(node):
                    return
            except SyncLater as later:
                self._trace(node.inst, f"state sync: {later}; again in {SYNC_RETRY_S} s")
                self.sched.schedule(self.sched.now + SYNC_RETRY_S, Start(node.inst))
                return
        self._start(node)

    def _state_sync(self, node: SimNode) -> bool:
        """`NodeStorage.restore_from` the live peers (the Byzantine ones lying); False if the
        node died on the way. SyncLater propagates."""
        # Byzantine validators' APIs lie (`bft.campaign`'s sources say how).
        peers = [
            (other.storage, other.inst not in self.checker.honest)
            for other in self.nodes.values()
            if other is not node and other.alive
        ]
        try:
            restored = node.storage.restore_from(peers)
        except SimCrash as crash:
            self._crash(node, f"mid-state-sync ({crash})")
            return False
        except SyncLater:
            raise
        except Exception as exc:
            self._program_error(node, exc, "state sync")
            return False
        if restored is not None:
            height, block_id = restored
            self._trace(node.inst, f"state sync: restored height {height} ({block_id.hex()[:16]})")
            self.checker.on_state_sync(self.sched.now, node.inst, height, block_id)
            node.reported_app_height = height - 1
        return True

    def _crash(self, node: SimNode, why: str) -> None:
        self._trace(node.inst, f"crash: {why}")
        node.crash()

    def _program_error(self, node: SimNode, exc: Exception, what: str) -> None:
        summary = f"{what}: {error_summary(exc)}"
        self._trace(node.inst, f"program error: {summary}")
        self.checker.on_program_error(self.sched.now, node.inst, summary)
        node.halt()

    def _deliver(self, node: SimNode, src: Instance, data: bytes) -> None:
        if node.program is None:
            return
        try:
            msg = decode(data)
        except DecodeError as exc:
            self.refusals += 1
            node.refusals += 1
            self._trace(node.inst, f"refused {len(data)} bytes from {src}: {exc}")
            return
        if isinstance(msg, Proposal):
            self.checker.observe_proposal(msg)
        self._trace(node.inst, f"recv {describe(msg)} from {src}")
        now = self.sched.now
        sender = ValidatorIndex(src.index)
        self._step(node, lambda p: p.on_message(sender, msg, now))

    def _step(self, node: SimNode, call: Callable[[Program], list[Action]]) -> None:
        program = node.program
        assert program is not None
        try:
            actions = call(program)
        except SimCrash as crash:
            self._crash(node, f"mid-save ({crash})")
            return
        except Exception as exc:
            self._program_error(node, exc, "handler")
            return
        if node.crash_after_step:
            self._crash(node, f"after step, {len(actions)} action(s) discarded")
            return
        try:
            self._perform(node, actions)
        except Exception as exc:
            self._program_error(node, exc, "action")
            return
        # Deferred execution (the quorum store): the node executes once the messages are out.
        try:
            node.storage.catch_up()
        except SimCrash as crash:
            self._crash(node, f"mid-execution ({crash})")
            return
        except Exception as exc:
            self._program_error(node, exc, "execution")
            return
        self._report_app_hashes(node)
        if isinstance(program, Replica):
            try:
                program.check_invariants()
            except InvariantViolation as exc:
                self.checker.on_state_error(self.sched.now, node.inst, str(exc))
            self.checker.on_sync_target(self.sched.now, node.inst, program.statistics()["sync_target"])
        self._arm_timer(node)
        aimed = self.aimed.get(node.inst)
        if aimed is not None and self.sched.now > aimed.latest_stop_s:
            del self.aimed[node.inst]
            self._trace(node.inst, "pause disarmed: it entered no view it leads in time")
        elif aimed is not None and any(
            isinstance(a, ViewChange) and self._leads(node, a.view) for a in actions
        ):
            del self.aimed[node.inst]
            self._stop(node, aimed)

    def _leads(self, node: SimNode, view: View) -> bool:
        """Whether `node` leads `view` as its replica computes it (by the high QC's window under
        leader reputation), else by the fixed schedule."""
        program = node.program
        replica = program if isinstance(program, Replica) else getattr(program, "inner", None)
        if isinstance(replica, Replica):
            return replica.leader_of_view(view) == node.inst.index
        return self.leader(view) == node.inst.index

    def _check_timer_progress(self, node: SimNode, now: float) -> None:
        """After on_timer(now) the next deadline is strictly later: one that stays in the past
        would have the node handle it again and again and never read the network."""
        program = node.program
        if isinstance(program, Replica):
            deadline = program.next_deadline()
            if deadline is not None and deadline <= now:
                self.checker.on_timer_stall(now, node.inst, deadline)

    def _arm_timer(self, node: SimNode) -> None:
        program = node.program
        if program is None:
            return
        try:
            deadline = program.next_deadline()
        except Exception as exc:
            self._program_error(node, exc, "next_deadline")
            return
        if deadline is None:
            if node.timer_at is not None:
                node.timer_generation += 1
                node.timer_at = None
            return
        at = max(deadline, self.sched.now)
        if node.timer_at == at:
            return
        node.timer_generation += 1
        node.timer_at = at
        self.sched.schedule(at, TimerFired(node.inst, node.timer_generation))

    def _perform(self, node: SimNode, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Send(to=to, msg=msg):
                    self._send(node, to, msg)
                case Broadcast(msg=msg):
                    self._send(node, None, msg)
                case Commit():
                    pass  # heard from the executed-state port, where it became durable
                case Refusal():
                    self.refusals += 1
                    node.refusals += 1
                    self._trace(node.inst, str(action))
                case Evidence(kind=kind, validator=validator, view=view):
                    self._trace(node.inst, f"evidence: {kind} equivocation by {validator} in view {view}")
                    if node.checked:
                        self.evidence[validator] = self.evidence.get(validator, 0) + 1
                case ViewChange(view=view, via=via):
                    self._trace(node.inst, f"enter view {view} via {via}")
                    self.checker.on_view_change(self.sched.now, node.inst, view, via)
                case SendRaw(to=to, data=data):
                    self._send_raw(node, to, data)

    def _send(self, node: SimNode, to: int | None, msg: Message) -> None:
        data = encode(msg)
        if len(data) > MAX_MESSAGE_SIZE_BYTES:
            # The node's transport refuses it (and the node logs, counts and drops it): so here.
            self.checker.on_oversize(self.sched.now, node.inst, msg, len(data), MAX_MESSAGE_SIZE_BYTES)
            self._trace(node.inst, f"drop {describe(msg)}: {len(data)} bytes over the frame limit")
            return
        durable = None
        if node.checked and isinstance(msg, Vote | Timeout):
            durable = node.durable_safety_state()
        self.checker.on_send(self.sched.now, node.inst, msg, durable, data)
        if to is not None:
            self.checker.on_answer(self.sched.now, node.inst, to, msg, len(data))
        self._trace(node.inst, f"send {describe(msg)} to {'all' if to is None else to}")
        self._route(node.inst, to, data, view_of(msg))

    def _send_raw(self, node: SimNode, to: int, data: bytes) -> None:
        try:
            view = view_of(decode(data))
        except DecodeError:
            view = None
        self._trace(node.inst, f"send {len(data)} raw bytes to {to}")
        self._route(node.inst, to, data, view)

    def _route(self, src: Instance, to: int | None, data: bytes, view: int | None) -> None:
        for at, dst in self.network.route(self.sched.now, src, to, view):
            self.sched.schedule(at, Deliver(dst, src, data))

    def _commit(self, node: SimNode, commit: Commit) -> None:
        if len(commit.qcs) != len(commit.blocks):
            raise ValueError(f"Commit with {len(commit.blocks)} blocks but {len(commit.qcs)} QCs")
        heights = ",".join(str(b.height) for b in commit.blocks)
        self._trace(node.inst, f"commit height {heights}")
        self.checker.on_commit(self.sched.now, node.inst, commit)
        for block in commit.blocks:
            node.payload.remove_committed(block.txs)
        self._report_app_hashes(node)

    def _report_app_hashes(self, node: SimNode) -> None:
        """Tell the checker the app hash of every height the node's application newly applied
        (at a start: genesis's and what the replay applied; after a commit: its blocks)."""
        for height in range(node.reported_app_height + 1, node.committed_height + 1):
            app_hash = node.storage.app_hash_at(height)
            if app_hash is None:
                break
            self.checker.on_app_hash(self.sched.now, node.inst, height, app_hash)
            node.reported_app_height = height
