"""The node: one trio task drives the replica; the transport, stores, mempool and API serve it.

Owns: start-up (config, genesis, key, storage, the application and its replay, the replica or a
Byzantine wrapper of it), the drive loop (`on_message` / `on_timer` / `next_deadline`), carrying
out actions (a commit is stored, executed, then announced; a refusal logged and counted;
evidence stored and counted), mempool gossip (each peer's within its mempool share; none under
the quorum store, whose batches carry the transactions), refusing the
requests of a peer that does not read its answers, and what the API reads and submits (`NodeView`),
including the read-only snapshots of the operator endpoints (`bft.node.operator_views`) and the
moments they are measured from (the last commit, entering the current view).
May not: decide anything the protocol decides; the replica does. Only the drive task calls the
replica and the executor; API handlers touch the mempool, waiters and read-only queries.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from bft.app.interface import QUERY_NOT_FOUND, QUERY_OK, Application, SnapshotApplication
from bft.app.kv import KeyValueLedger
from bft.core import wire
from bft.core.actions import Action, Broadcast, Evidence, Refusal, Send, SendRaw, ViewChange
from bft.core.builder import build_replica
from bft.core.errors import DecodeError, InvariantViolation
from bft.core.leader import leader_of
from bft.core.messages import BlockRequest, QuorumCert, SyncRequest, Timeout
from bft.core.ports import Ports
from bft.core.program import Program
from bft.core.replica import Replica
from bft.core.reputation import window_blocks
from bft.core.safety_store import DurableFileStore
from bft.core.serving import TokenBucket
from bft.core.types import ValidatorIndex, View
from bft.node.api import AnswerBudget, make_app
from bft.node.api_json import b64, evidence_json
from bft.node.api_server import ApiServer
from bft.node.batch_store import BATCH_STORE_FILE, SqliteBatchStore
from bft.node.clock import NodeClock
from bft.node.commits import CommitFeed, CommitWaiters
from bft.node.compose import open_ports
from bft.node.config import (
    Genesis,
    NodeConfig,
    check_identity,
    load_genesis,
    load_node_config,
    parse_host_port,
)
from bft.node.drive import Waker, drive
from bft.node.errors import ConfigError
from bft.node.executor import ExecutedBlock, Executor
from bft.node.gossip import Transactions, decode_frame, encode_transactions
from bft.node.health import Health, assess_health, commit_window_s
from bft.node.logs import RateLimitedLog, kv
from bft.node.mempool import AddStatus, Mempool, tx_hash
from bft.node.metrics import NodeMetrics, NodeReason, NodeSubject, decode_error_label
from bft.node.operator_views import (
    CertRef,
    ConsensusState,
    NetInfo,
    PeerInfo,
    PendingTxs,
    TimeoutCertRef,
)
from bft.node.osfs import OsFilesystem
from bft.node.snapshot_serving import committed_block, records_page, served_snapshots
from bft.node.storage import BLOCKS_FILE, MAX_COMMIT_PROOF_BLOCKS, BlockStore
from crypto.keys import PrivateKey, load_private_key
from crypto.signing import SignatureCache
from net.transport import Transport

log = logging.getLogger("bft.node")

# Commits remembered for the commits-per-second figure of the live view.
RATE_WINDOW_S: Final = 5.0
# Newly admitted client transactions go to every peer as soon as they are admitted (those admitted
# in the same scheduling turn together), in messages of at most GOSSIP_MAX_TXS transactions and a
# quarter of the transport's frame limit.
GOSSIP_MAX_TXS: Final = 1000
# A `wait=commit` request answers after this long even if not everything committed yet.
WAIT_COMMIT_TIMEOUT_S: Final = 30.0
MAX_EVENT_SUBSCRIBERS: Final = 64
# The replica's own invariants (lock below the high QC, every buffer within its bound) are checked
# this often; the simulator checks them after every step.
SELF_CHECK_INTERVAL_S: Final = 1.0
MEMPOOL_FULL: Final = "mempool full"
# `GET /consensus_state` names the leaders of this many views after the current one.
UPCOMING_LEADERS: Final = 5


def load_application(config: NodeConfig, genesis: Genesis) -> Application:
    """The application named by `[app] factory` ("module:callable", called with the data
    directory), or the built-in key-value ledger in `<data_dir>/app.sqlite`: on a chain whose
    genesis says "state_sync", with its state commitment (app hash version 2) and snapshots
    every `[storage] snapshot_interval` heights in `<data_dir>/snapshots/`."""
    if not config.app_factory:
        if not genesis.state_sync:
            return KeyValueLedger(config.data_dir / "app.sqlite")
        return KeyValueLedger(
            config.data_dir / "app.sqlite",
            hash_version=2,
            snapshot_interval=config.storage.snapshot_interval,
            snapshots_kept=config.storage.snapshots_kept,
        )
    module_name, _, attr = config.app_factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[app] factory {config.app_factory!r}: {exc}") from exc
    app = factory(config.data_dir)
    if not isinstance(app, Application):
        raise ConfigError(
            f"[app] factory {config.app_factory!r} returned {type(app).__name__}, not an Application"
        )
    return app


def check_retention(config: NodeConfig, genesis: Genesis) -> None:
    """ConfigError if `[storage] retain_blocks` would prune what the node must still serve or
    read: under leader reputation every node computes the schedule from the window of committed
    blocks below the tip, so a retention keeps the window and a commit proof's reach above it; on
    a state-sync chain a joining peer needs the blocks from its snapshot's height on, and the
    newest snapshot is up to a snapshot interval below the tip (and a peer may take a while to
    fetch it: a commit proof's reach again, at least)."""
    retain = config.storage.retain_blocks
    if not retain:
        return
    needs = []
    if genesis.leader_reputation:
        window = window_blocks(len(genesis.validators))
        needs.append((window + MAX_COMMIT_PROOF_BLOCKS, f"leader reputation's window of {window} blocks"))
    if genesis.state_sync:
        interval = config.storage.snapshot_interval
        reach = interval + 2 * MAX_COMMIT_PROOF_BLOCKS
        needs.append((reach, f"the blocks above a snapshot (snapshot_interval {interval})"))
    for need, why in needs:
        if retain < need:
            raise ConfigError(
                f"[storage] retain_blocks {retain} is below the {need} blocks that {why} and a commit "
                "proof need"
            )


def read_kv(app: Application, key: str) -> dict[str, Any]:
    """`GET /kv/<key>`'s answer: the committed value of `key` (None if absent) and the height it
    was read at. ValueError if the application does not answer key-value queries."""
    answer = app.query("/kv", key.encode("utf-8", "surrogatepass"))
    if answer.code == QUERY_NOT_FOUND:
        return {"key": key, "value": None, "height": answer.height}
    if answer.code != QUERY_OK or answer.value is None:
        raise ValueError(f"the application cannot answer /kv queries (code {answer.code})")
    return {"key": key, "value": answer.value.decode("utf-8"), "height": answer.height}


class Node:
    def __init__(self, home: Path, byzantine: str | None = None, app: Application | None = None) -> None:
        """The node at `home`; `app` replaces the configured application (for embedding)."""
        self.home = home
        self.config: NodeConfig = load_node_config(home)
        self.genesis: Genesis = load_genesis(self.config.genesis_file)
        self.key: PrivateKey = load_private_key(self.config.key_file)
        check_identity(self.config, self.genesis, self.key.public_key)
        self.replica_config = self.config.replica_config(self.genesis)
        check_retention(self.config, self.genesis)
        self.byzantine = byzantine
        self.me = ValidatorIndex(self.config.index)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.blocks = BlockStore(
            self.config.data_dir / BLOCKS_FILE,
            commit_chain=self.genesis.commit_chain,
            tx_set=self.genesis.state_sync,
        )
        self.batches = SqliteBatchStore(self.config.data_dir / BATCH_STORE_FILE)
        self.app = app if app is not None else load_application(self.config, self.genesis)
        self.executor = Executor(
            self.app,
            self.blocks,
            on_mismatch=lambda: self.metrics.app_hash_mismatches.inc(),
            deferred=self.genesis.quorum_store,
            state_claims=self.genesis.state_sync,
        )
        # Set when committed blocks wait for execution (deferred: the quorum store's data path).
        self._to_execute = trio.Event()
        rc, limits = self.replica_config, self.config.mempool
        share_txs, share_bytes = limits.peer_shares(len(self.genesis.validators))
        # Under the quorum store the mempool feeds our batches, not our proposals (its payloads
        # are one batch's), and gossips nothing: the batches carry the transactions to the peers.
        self.quorum_store = self.genesis.quorum_store
        self.mempool = Mempool(
            self._check_tx,
            self.blocks.has_tx,
            max_txs=limits.max_txs,
            max_bytes=limits.max_bytes,
            max_tx_bytes=wire.MAX_TX_SIZE_BYTES,
            batch_txs=rc.max_batch_txs if self.quorum_store else rc.max_block_txs,
            batch_bytes=rc.max_batch_bytes if self.quorum_store else rc.max_block_bytes,
            peer_share_txs=share_txs,
            peer_share_bytes=share_bytes,
            quorum_store=self.quorum_store,
        )
        # Gossiped transactions admitted per peer and second: its share, refilled every second.
        # Why: each one costs a hash, a block-store lookup and check_tx on the drive task, so a
        # peer whose share keeps emptying (its transactions commit) could otherwise keep that
        # task busy; an honest peer gossips what clients submit to it, far below this.
        self._gossip_budgets = {
            v.index: TokenBucket(capacity=share_txs, rate_per_s=share_txs) for v in self.genesis.validators
        }
        self.waiters = CommitWaiters(max_waiting=limits.max_txs)
        # Set when clients' transactions were admitted: gossip sends them, the drive loop wakes.
        self._admitted = trio.Event()
        self._waker = Waker()
        self.feed = CommitFeed(max_subscribers=MAX_EVENT_SUBSCRIBERS)
        self._answers = AnswerBudget(self.config.api.max_answer_bytes_in_flight)
        self.safety_store = DurableFileStore(OsFilesystem(self.config.data_dir))
        self.clock = NodeClock(self.config.clock_rate)
        addresses = {v.index: parse_host_port(v.p2p) for v in self.genesis.validators}
        for peer, address in self.config.dial.items():
            if peer not in addresses:
                raise ConfigError(f"[p2p] dial: {peer} is not a validator of {self.genesis.chain_id}")
            addresses[ValidatorIndex(peer)] = parse_host_port(address)
        addresses[self.me] = parse_host_port(self.config.p2p_listen)
        self.transport = Transport(
            self.me,
            self.key,
            self.genesis.chain_id,
            [v.public_key for v in self.genesis.validators],
            addresses,
        )
        # What waits in a peer's outgoing queue (tests replace it).
        self._queued_bytes: Callable[[int], int] = self.transport.queued_bytes
        # A peer with this much already queued is not reading: its requests are refused unread.
        self._not_reading_bytes = wire.response_budget_bytes(len(self.genesis.validators))
        self.replica: Replica | None = None
        self.program: Program | None = None
        self.api_url: str | None = None
        self._commit_times: deque[float] = deque()
        # Set and replaced on every commit: what `wait_height` waits on.
        self._committed = trio.Event()
        # For /health and /consensus_state: the last commit (before the first, the replica's
        # start), when the current view was entered, and our timeouts broadcast in a view.
        self._last_commit_at = 0.0
        self._view_seen = (View(0), 0.0)
        self._timeouts_sent = (View(0), 0)
        self.refusals = 0
        # Refusal lines per peer, kind and reason, thinned (the metrics count every one).
        self._refusal_log = RateLimitedLog(log)
        self._next_self_check = 0.0
        self._recovering = False
        self.metrics = NodeMetrics(
            committed_height=lambda: self.blocks.height,
            base_height=lambda: self.blocks.base,
            view=lambda: self.replica.view if self.replica is not None else 0,
            mempool_txs=lambda: len(self.mempool),
            mempool_bytes=lambda: self.mempool.size_bytes,
            peers_connected=lambda: len(self.transport.connected_peers),
            recovering=lambda: 1 if self.replica is not None and self.replica.recovery is not None else 0,
            quorum_store=lambda: self.replica.statistics() if self.replica is not None else {},
        )

    def _check_tx(self, tx: bytes) -> str | None:
        verdict = self.app.check_tx(tx)
        return None if verdict.ok else verdict.error or "refused by the application"

    # Running.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` once the p2p and API ports listen. An
        exception other than a cancellation is logged as `event=crashed` and raised; a stop
        (cancelled) logs `event=stopped`."""
        crash: BaseException | None = None
        try:
            ports = open_ports(self.safety_store, self.blocks, self.executor, self.mempool, self.batches)
            async with trio.open_nursery() as nursery:
                await nursery.start(self.transport.run)
                self._start_program(ports)
                app = make_app(self, body_timeout_s=self.config.api.body_timeout_s, budget=self._answers)
                api = ApiServer(app, self.config.api, self.metrics.registry)
                urls = await nursery.start(api.run, self.config.api_listen)
                self.api_url = urls[0] if urls else None
                nursery.start_soon(self._drive)
                nursery.start_soon(self._execute_commits)
                if not self.quorum_store:
                    nursery.start_soon(self._gossip)
                log.info(
                    kv(
                        event="started",
                        node=self.me,
                        chain_id=self.genesis.chain_id,
                        height=self.blocks.height,
                        p2p=self.config.p2p_listen,
                        api=self.api_url,
                        byzantine=self.byzantine or "no",
                        quorum_store="yes" if self.quorum_store else "no",
                    )
                )
                task_status.started()
        except BaseException as e:
            crash = e if crash_of(e) is not None else None
            raise
        finally:
            close = getattr(self.app, "close", None)
            if close is not None:
                close()
            self.blocks.close()
            self.batches.close()
            height = self.replica.committed_height if self.replica is not None else 0
            if crash is None:
                log.info(kv(event="stopped", node=self.me, height=height))
            else:
                error = crash_of(crash)
                log.critical(kv(event="crashed", node=self.me, height=height, error=error), exc_info=crash)

    def _start_program(self, ports: Ports) -> None:
        now = self.clock.now()
        replica = build_replica(
            self.replica_config, self.key, ports, now, SignatureCache(), os.urandom(wire.RECOVERY_NONCE_BYTES)
        )
        self.replica = replica
        recovery = replica.recovery
        self._recovering = recovery is not None
        if recovery is not None:
            log.warning(
                kv(
                    event="recovering",
                    node=self.me,
                    reason=f"no safety record in {self.config.data_dir}: lost or wiped",
                    signs_nothing_until=f"{recovery.needed} other validators report their views",
                )
            )
        self._last_commit_at = now
        self._view_seen = (replica.view, now)
        if self.byzantine is None:
            self.program = replica
        else:
            from bft.adversary import BEHAVIOURS

            behaviour = BEHAVIOURS[self.byzantine]
            self.program = behaviour(replica, self.key, self.replica_config, random.Random())

    async def _drive(self) -> None:
        """The one task that owns the replica (its schedule: `bft.node.drive`)."""
        program = self.program
        assert program is not None
        await drive(
            self.transport.incoming,
            program.next_deadline,
            lambda now: self._perform(program.on_timer(now)),
            lambda peer, data, now: self._on_frame(program, peer, data, now),
            self._on_timer_stall,
            self.clock,
            self._waker,
            lambda now: self._perform(program.on_payload(now)),
        )

    def _on_timer_stall(self, now: float, deadline: float) -> None:
        """A timer step left the program's deadline in the past (a core bug the drive loop
        survives by spacing timer steps): logged, thinned, and counted."""
        self.metrics.timer_stalls.inc()
        line = kv(event="timer_stall", node=self.me, behind_s=round(now - deadline, 6))
        self._refusal_log.log(logging.ERROR, ("timer_stall",), line)

    def _on_frame(self, program: Program, peer: int, data: bytes, now: float) -> None:
        """One frame from an authenticated peer: decoded, then gossip for the mempool, or a
        message for the program unless it is a request from a peer that is not reading."""
        try:
            msg = decode_frame(data)
        except DecodeError as e:
            self.refusals += 1
            self.metrics.count_undecodable(e)
            what, reason = NodeSubject.MESSAGE.value, decode_error_label(e)
            line = kv(event="refusal", node=self.me, peer=peer, what=what, reason=reason, detail=e)
            self._refusal_log.log(logging.WARNING, (peer, what, reason), line)
            return
        if isinstance(msg, Transactions):
            if self.quorum_store:
                # An honest peer of this chain gossips nothing (its batches carry its clients'
                # transactions); admitting these would only let a peer fill our mempool.
                detail = (
                    f"all {len(msg.txs)} unread: the chain runs the quorum store (batches carry transactions)"
                )
                self._refuse_gossip(peer, NodeReason.GOSSIP_OFF, detail)
                return
            self._on_gossip(peer, msg, now)
            self._perform(program.on_payload(now))
        elif isinstance(msg, BlockRequest | SyncRequest) and not self._reads_answers(peer, msg):
            return
        else:
            self._perform(program.on_message(ValidatorIndex(peer), msg, now))

    def _reads_answers(self, peer: int, request: BlockRequest | SyncRequest) -> bool:
        """Whether `peer` reads what we send it; if not (a full answer's worth waits in its queue
        already), its request is refused before anything is read or encoded for it.

        Why here and not only in the core's serving budget: the budget bounds what we build for a
        peer per second, but answers to a peer that does not read pile up in its queue (a frame
        count bound lets a thousand multi-megabyte frames wait). With this gate a peer has at most
        one response budget queued plus the one answer in the making: its memory is bounded by
        two frames, and the drive task's time answering it by its serving budget (at most 8 full
        answers a second, about 180 ms of reading and encoding, `bft.core.serving`)."""
        queued = self._queued_bytes(peer)
        if queued < self._not_reading_bytes:
            return True
        subject = NodeSubject.BLOCK_REQUEST if isinstance(request, BlockRequest) else NodeSubject.SYNC_REQUEST
        self.refusals += 1
        self.metrics.count_node_refusal(subject, NodeReason.PEER_NOT_READING)
        what, reason = subject.value, NodeReason.PEER_NOT_READING.value
        detail = f"{queued} bytes wait in its queue (limit {self._not_reading_bytes})"
        line = kv(event="refusal", node=self.me, peer=peer, what=what, reason=reason, detail=detail)
        self._refusal_log.log(logging.INFO, (peer, what, reason), line)
        return False

    async def _execute_commits(self) -> None:
        """Deferred execution: after a step stored commits and its messages were queued, execute
        them one block at a time, yielding in between so the transport sends first and the drive
        loop keeps its turns (a question about a height not executed yet, from the replica's
        next step, executes it then, `Executor.app_hash_at`)."""
        while True:
            await self._to_execute.wait()
            self._to_execute = trio.Event()
            while self.executor.pending:
                await trio.lowlevel.checkpoint()
                self.executor.execute_pending(1)
                self._announce_commits()

    def _perform(self, actions: list[Action]) -> None:
        if self.executor.pending:
            self._to_execute.set()
        self._announce_commits()
        self._check_replica()
        self._note_view()
        self._note_recovery()
        for action in actions:
            if isinstance(action, Send | SendRaw) and action.to == self.me:
                # The replica never addresses itself; a Byzantine wrapper may. Nowhere to send it.
                log.debug(kv(event="send_to_self_dropped", node=self.me))
            elif isinstance(action, Send | Broadcast):
                self._send(action)
            elif isinstance(action, SendRaw):
                self._send_raw(action)
            elif isinstance(action, Refusal):
                self._count_refusal(action)
            elif isinstance(action, Evidence):
                self._keep_evidence(action)
            elif isinstance(action, ViewChange):
                self.metrics.view_changes.labels(action.via).inc()
                log.debug(kv(event="view", node=self.me, view=action.view, via=action.via))

    def _note_recovery(self) -> None:
        """Log the end of a recovery of a lost safety record (`bft.core.recovery`)."""
        if self._recovering and self.replica is not None and self.replica.recovery is None:
            self._recovering = False
            safety = self.replica.safety_state
            log.warning(
                kv(
                    event="recovered",
                    node=self.me,
                    signs_above_view=int(safety.last_voted_view),
                    locked_view=int(safety.locked_view),
                    height=self.blocks.height,
                )
            )

    def _note_view(self) -> None:
        """Remember when the replica entered its current view (read from the replica, not from
        ViewChange actions, which a Byzantine wrapper may rewrite)."""
        if self.replica is not None and self.replica.view != self._view_seen[0]:
            self._view_seen = (self.replica.view, self.clock.now())

    def _check_replica(self) -> None:
        """A broken internal invariant is a bug: log it and stop (InvariantViolation leaves the
        drive loop), rather than go on voting from a state nobody can reason about."""
        now = self.clock.now()
        if self.replica is None or now < self._next_self_check:
            return
        self._next_self_check = now + SELF_CHECK_INTERVAL_S
        try:
            self.replica.check_invariants()
        except InvariantViolation as e:
            log.critical(kv(event="invariant_violation", node=self.me, detail=e))
            raise

    def _count_refusal(self, refusal: Refusal) -> None:
        self.refusals += 1
        self.metrics.count_refusal(refusal)
        line = kv(
            event="refusal",
            node=self.me,
            peer=refusal.sender,
            view=refusal.view,
            what=refusal.what.value,
            reason=refusal.reason.value,
            detail=refusal.detail,
        )
        self._refusal_log.log(logging.INFO, (refusal.sender, refusal.what, refusal.reason), line)

    def _keep_evidence(self, evidence: Evidence) -> None:
        """Store it (once per validator, view and kind) and count it; what honest nodes do about
        an equivocating validator is up to its operators, so nothing else happens."""
        if not self.blocks.add_evidence(evidence):
            return
        self.metrics.count_equivocation(evidence.validator)
        log.warning(
            kv(
                event="equivocation",
                node=self.me,
                validator=evidence.validator,
                view=evidence.view,
                kind=evidence.kind.value,
            )
        )

    def _send(self, action: Send | Broadcast) -> None:
        """Encode and queue a message. One the transport cannot carry (over its frame limit: only
        a broken budget produces one) is logged, counted and dropped; it never ends the drive loop."""
        data = wire.encode(action.msg)
        if isinstance(action.msg, Timeout):
            self.metrics.timeouts_sent.inc()
            view, sent = self._timeouts_sent
            self._timeouts_sent = (action.msg.view, sent + 1 if action.msg.view == view else 1)
        if len(data) > self.transport.max_payload_bytes:
            self.metrics.unsendable.labels(type(action.msg).__name__).inc()
            log.error(
                kv(
                    event="message_not_sent",
                    node=self.me,
                    peer=action.to if isinstance(action, Send) else "all",
                    message=type(action.msg).__name__,
                    size_bytes=len(data),
                    limit_bytes=self.transport.max_payload_bytes,
                )
            )
        elif isinstance(action, Send):
            self.transport.send(action.to, data)
        else:
            self.transport.broadcast(data)

    def _send_raw(self, action: SendRaw) -> None:
        """A Byzantine program's raw bytes: the transport frames what it can carry."""
        size = len(action.data)
        if 0 < size <= self.transport.max_payload_bytes:
            self.transport.send(action.to, action.data)
        else:
            log.info(kv(event="raw_frame_not_sent", node=self.me, peer=action.to, size_bytes=size))

    def _announce_commits(self) -> None:
        """Announce what the replica committed while handling the last input: it had the blocks
        stored and executed (see `Executor`) before returning, so whoever hears of them can rely
        on it. Read from the executor, not from Commit actions, which a Byzantine wrapper may
        rewrite."""
        now = self.clock.now()
        for done in self.executor.take_executed():
            block = done.block
            self.mempool.remove_committed(block.txs)
            self.waiters.on_commit(tx_hash(tx) for tx in block.txs)
            self.metrics.txs_committed.inc(len(block.txs))
            self.feed.publish(self._event_of(done))
            self._commit_times.append(now)
            self._last_commit_at = now
            self._committed.set()
            self._committed = trio.Event()
            log.info(
                kv(
                    event="commit",
                    node=self.me,
                    height=block.height,
                    view=block.view,
                    txs=len(block.txs),
                    id=block.id.hex()[:16],
                )
            )
        while self._commit_times and self._commit_times[0] < now - RATE_WINDOW_S:
            self._commit_times.popleft()
        self._prune()

    def _prune(self) -> None:
        """Keep the latest `retain_blocks` executed blocks ([storage], `BlockStore.keep_latest`)."""
        if self.blocks.keep_latest(self.config.storage.retain_blocks, self.executor.executed()[0]):
            log.info(kv(event="pruned", node=self.me, base=self.blocks.base, height=self.blocks.height))

    # Mempool gossip.

    def _on_gossip(self, peer: int, msg: Transactions, now: float) -> None:
        """Admit a peer's transactions against its mempool share (`Mempool.add_from_peer`). A
        message from a peer whose share is already full is refused whole, unread: hashing and
        looking up each of its transactions would let a flooding validator keep the drive task
        busy."""
        if self.mempool.share_full(peer):
            txs, size = self.mempool.share_of(peer)
            detail = f"all {len(msg.txs)} unread: its share is full ({txs} transactions, {size} bytes)"
            self._refuse_gossip(peer, NodeReason.PEER_SHARE_FULL, detail)
            return
        budget = self._gossip_budgets.get(peer)
        if budget is not None:
            if budget.available(now) < len(msg.txs):
                detail = f"all {len(msg.txs)} unread: over {budget.rate_per_s:.0f} transactions a second"
                self._refuse_gossip(peer, NodeReason.GOSSIP_RATE, detail)
                return
            budget.take(len(msg.txs), now)
        refused = over_share = 0
        for tx in msg.txs:
            result = self.mempool.add_from_peer(peer, tx)
            if result.status is AddStatus.REJECTED:
                refused += 1
            elif result.status is AddStatus.SHARE_FULL:
                over_share += 1
            elif result.status is AddStatus.FULL:
                self.metrics.mempool_full.inc()
        if refused:
            # An honest peer gossips only what its application admitted; ours refused these.
            self._refuse_gossip(peer, NodeReason.CHECK_TX, f"{refused} refused by check_tx")
        if over_share:
            txs, size = self.mempool.share_of(peer)
            detail = f"{over_share} over its share ({txs} transactions, {size} bytes pending)"
            self._refuse_gossip(peer, NodeReason.PEER_SHARE_FULL, detail)

    def _refuse_gossip(self, peer: int, reason: NodeReason, detail: str) -> None:
        self.refusals += 1
        self.metrics.count_node_refusal(NodeSubject.GOSSIPED_TXS, reason)
        what = NodeSubject.GOSSIPED_TXS.value
        line = kv(event="refusal", node=self.me, peer=peer, what=what, reason=reason.value, detail=detail)
        self._refusal_log.log(logging.INFO, (peer, what, reason.value), line)

    async def _gossip(self) -> None:
        """Send newly admitted client transactions to every peer (they do not relay them: the
        validators are fully connected, and a peer that misses them still gets them in a block)."""
        limit_bytes = self.transport.max_payload_bytes // 4
        while True:
            await self._admitted.wait()
            self._admitted = trio.Event()
            await trio.lowlevel.checkpoint()  # what the other requests of this turn admit joins in
            while new := self.mempool.take_new(GOSSIP_MAX_TXS):
                for chunk in _chunks(new, limit_bytes):
                    self.transport.broadcast(encode_transactions(Transactions(tuple(chunk))))

    # What the API reads and submits (bft.node.api.NodeView).

    async def submit(self, txs: Sequence[bytes], wait_commit: bool) -> tuple[list[dict[str, Any]], bool]:
        """Admit `txs` to the mempool; with `wait_commit`, answer once they committed (or after
        WAIT_COMMIT_TIMEOUT_S). Returns one result per transaction and whether any was refused
        because the mempool is full (the client should back off)."""
        results: list[dict[str, Any]] = []
        awaited: list[bytes] = []
        full = False
        for tx in txs:
            added = self.mempool.add(tx)
            result: dict[str, Any] = {"hash": added.tx_hash.hex(), "status": "accepted"}
            if added.status is AddStatus.COMMITTED:
                result.update(self._committed_result(added.tx_hash))
            elif added.status is AddStatus.REJECTED:
                result.update(status="rejected", error=added.reason)
            elif added.status is AddStatus.FULL:
                full = True
                self.metrics.mempool_full.inc()
                result.update(status="rejected", error=MEMPOOL_FULL)
            else:
                awaited.append(added.tx_hash)
            results.append(result)
        if awaited:
            self._admitted.set()  # gossip them now (no one listens under the quorum store)
            self._waker.wake()  # and let an idle leader propose them (or us batch them) now
        if wait_commit and awaited:
            # A client waits in real time, whatever the node's clock does.
            await self.waiters.wait(awaited, trio.current_time() + WAIT_COMMIT_TIMEOUT_S)
            for result in results:
                if result["status"] == "accepted":
                    result.update(self._committed_result(bytes.fromhex(result["hash"])))
        return results, full

    def _committed_result(self, h: bytes) -> dict[str, Any]:
        """Status fields for a transaction: committed with where and its result code, else accepted."""
        found = self.tx(h)
        if found is None:
            return {"status": "accepted"}
        out: dict[str, Any] = {"status": "committed", "height": found["height"], "index": found["index"]}
        result = found["result"]
        if result is not None:
            out["code"] = result["code"]
            if result["code"] != 0:
                out["log"] = result["log"]
        return out

    def tx(self, h: bytes) -> dict[str, Any] | None:
        location = self.blocks.tx_location(h)
        if location is None:
            return None
        height, index = location
        stored = self.blocks.tx_result(height, index)
        result = (
            None if stored is None else {"code": stored.code, "log": stored.log, "data": b64(stored.data)}
        )
        return {"hash": h.hex(), "height": height, "index": index, "result": result}

    def kv(self, key: str) -> dict[str, Any]:
        return read_kv(self.app, key)

    async def wait_height(self, height: int, timeout_s: float) -> int:
        """Wait (in real time, at most `timeout_s`) until blocks up to `height` are committed and
        executed; the committed height then."""
        with trio.move_on_after(timeout_s):
            while self.blocks.height < height:
                await self._committed.wait()
        return self.blocks.height

    def evidence(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        """Kept evidence of equivocation, newest first (`BlockStore.evidence`)."""
        return [evidence_json(e) for e in self.blocks.evidence(limit, before)]

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def subscribe(self, on_drop: Callable[[], None]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self.feed.subscribe(on_drop)

    def _event_of(self, done: ExecutedBlock) -> dict[str, Any]:
        block = done.block
        return {
            "height": block.height,
            "view": block.view,
            "id": block.id.hex(),
            "txs": len(block.txs),
            "tx_hashes": [tx_hash(tx).hex() for tx in block.txs],
            "app_hash": done.app_hash.hex(),
        }

    # What the API shows.

    def status(self) -> dict[str, Any]:
        replica = self.replica
        view = replica.view if replica is not None else View(0)
        last = replica.last_committed if replica is not None else None
        now = self.clock.now()
        recent = sum(1 for t in self._commit_times if t >= now - RATE_WINDOW_S)
        return {
            "node": int(self.me),
            "chain_id": self.genesis.chain_id,
            "view": int(view),
            "height": last.height if last is not None else 0,
            "leader": int(
                replica.leader_of_view(view) if replica is not None else leader_of(self.replica_config, view)
            ),
            "last_block_id": last.id.hex() if last is not None else "",
            "peers": len(self.transport.connected_peers),
            "commits_per_s": round(recent / RATE_WINDOW_S, 2),
            "byzantine": self.byzantine,
            "app_height": self.executor.executed()[0],
            "app_hash": self.executor.executed()[1].hex(),
            # The lowest committed height this node holds (above what it pruned).
            "earliest_height": self.blocks.base + 1,
            "mempool_txs": len(self.mempool),
        }

    def health(self) -> Health:
        """Connected to a quorum and committing (`bft.node.health`)."""
        validators = self.replica_config.validators
        return assess_health(
            validators=validators.n,
            quorum=validators.quorum,
            connected_peers=len(self.transport.connected_peers),
            height=self.blocks.height,
            last_commit_age_s=self.clock.now() - self._last_commit_at,
            window_s=commit_window_s(self.replica_config.base_timeout_s),
        )

    def consensus_state(self) -> ConsensusState:
        replica = self.replica
        assert replica is not None, "the API runs only once the replica is built"
        now = self.clock.now()
        view = replica.view
        safety = replica.safety_state
        tc = replica.last_tc
        deadline = replica.next_deadline()
        sent_view, sent = self._timeouts_sent
        return ConsensusState(
            view=int(view),
            time_in_view_s=now - self._view_seen[1] if self._view_seen[0] == view else 0.0,
            next_deadline_in_s=None if deadline is None else max(0.0, deadline - now),
            leader=int(replica.leader_of_view(view)),
            upcoming_leaders=tuple(
                (v, int(replica.leader_of_view(View(v))))
                for v in range(view + 1, view + 1 + UPCOMING_LEADERS)
            ),
            height=replica.committed_height,
            high_qc=_cert_ref(replica.high_qc),
            locked_qc=_cert_ref(safety.locked_qc),
            last_voted_view=int(safety.last_voted_view),
            last_tc=None
            if tc is None
            else TimeoutCertRef(
                int(tc.view), _cert_ref(tc.high_qc), tuple(int(s) for s, _, _ in tc.signatures)
            ),
            timeouts_seen=tuple(sorted(int(v) for v in replica.timeout_authors(view))),
            timeouts_sent=sent if sent_view == view else 0,
            quorum=self.replica_config.validators.quorum,
        )

    def net_info(self) -> NetInfo:
        """The p2p listen address (with the port actually bound), the API's, and every peer."""
        now = self.clock.now()
        stats = self.transport.stats()
        host = parse_host_port(self.config.p2p_listen)[0]
        try:
            listening = [f"{host}:{self.transport.listen_port}"]
        except RuntimeError:  # not listening (yet): what it was told to listen on
            listening = [self.config.p2p_listen]
        if self.api_url is not None:
            listening.append(self.api_url)
        peers = []
        for v in self.genesis.validators:
            if v.index == self.me:
                continue
            i = v.index
            conn = stats["connections"].get(i)
            full, expired, incoming = (
                stats["dropped_outgoing"][i],
                stats["expired_outgoing"][i],
                stats["dropped_incoming"][i],
            )
            peers.append(
                PeerInfo(
                    index=i,
                    address=v.p2p,
                    connected=conn is not None,
                    dialed_by=None if conn is None else "us" if conn["dialed_by"] == self.me else "them",
                    remote=None if conn is None else conn["remote"],
                    connected_for_s=None if conn is None else now - conn["connected_at"],
                    bytes_sent=stats["bytes_sent"][i],
                    bytes_received=stats["bytes_received"][i],
                    frames_dropped=full + expired + incoming,
                    dropped_outgoing_full=full,
                    dropped_outgoing_expired=expired,
                    dropped_incoming=incoming,
                    queued_frames=stats["queued_outgoing"][i],
                    queued_bytes=stats["queued_outgoing_bytes"][i],
                )
            )
        return NetInfo(listening=tuple(listening), peers=tuple(peers))

    def unconfirmed_txs(self, limit: int) -> PendingTxs:
        hashes = tuple(self.mempool.oldest_hashes(limit))
        return PendingTxs(count=len(self.mempool), size_bytes=self.mempool.size_bytes, hashes=hashes)

    def pruned_below(self) -> int:
        """The lowest committed height held: those below it were pruned ([storage])."""
        return self.blocks.base + 1

    # Serving snapshots to joining peers (`bft.node.statesync`).

    def _snapshot_app(self) -> SnapshotApplication | None:
        """The application, if this chain's claims name a verifiable state and it has snapshots."""
        if self.genesis.state_sync and isinstance(self.app, SnapshotApplication):
            return self.app
        return None

    def snapshots(self) -> list[dict[str, Any]]:
        app = self._snapshot_app()
        return [] if app is None else served_snapshots(app, self.blocks)

    def snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        app = self._snapshot_app()
        return None if app is None else app.load_snapshot_chunk(height, format, index)

    def snapshot_txs(self, height: int, after: bytes) -> bytes | None:
        return None if self._snapshot_app() is None else records_page(self.blocks, height, after)

    def block(self, height: int) -> dict[str, Any] | None:
        return committed_block(self.blocks, height)


def crash_of(exc: BaseException) -> str | None:
    """What crashed, for the log: every exception in `exc` that is not a cancellation or a
    Ctrl-C (those are stops), as "Type: message"; None if there is none."""
    if isinstance(exc, BaseExceptionGroup):
        parts = [part for e in exc.exceptions if (part := crash_of(e)) is not None]
        return "; ".join(parts) if parts else None
    if isinstance(exc, trio.Cancelled | KeyboardInterrupt):
        return None
    return f"{type(exc).__name__}: {exc}"


def _cert_ref(qc: QuorumCert) -> CertRef:
    return CertRef(int(qc.view), qc.block_id)


def _chunks(txs: Sequence[bytes], limit_bytes: int) -> list[list[bytes]]:
    """Consecutive runs of `txs` of at most `limit_bytes` each (a larger tx goes alone)."""
    chunks: list[list[bytes]] = []
    size = limit_bytes + 1
    for tx in txs:
        if size + len(tx) > limit_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(tx)
        size += len(tx)
    return chunks
