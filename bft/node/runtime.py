"""The node: one trio task drives the replica; the transport, the block store and the API serve it.

Owns: start-up (config, genesis, key, storage, the replica or a Byzantine wrapper of it), the drive
loop (`on_message` / `on_timer` / `next_deadline`), carrying out actions, status for the API.
May not: decide anything the protocol decides; the replica does.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Collection
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from bft.core import wire
from bft.core.actions import Action, Broadcast, Commit, Refusal, Send, SendRaw, ViewChange
from bft.core.errors import DecodeError
from bft.core.leader import leader_of
from bft.core.program import Program
from bft.core.replica import Replica
from bft.core.safety_store import DurableFileStore
from bft.core.types import ValidatorIndex, View
from bft.node.api import b64, make_app, qc_json
from bft.node.config import (
    Genesis,
    NodeConfig,
    check_identity,
    load_genesis,
    load_node_config,
    parse_host_port,
)
from bft.node.logs import kv
from bft.node.osfs import OsFilesystem
from bft.node.storage import BlockStore
from crypto.keys import PrivateKey, load_private_key
from net.transport import Transport

log = logging.getLogger("bft.node")

# Commits remembered for the commits-per-second figure of the live view.
RATE_WINDOW_S = 5.0


class NoTransactions:
    """Empty blocks, until the ledger brings a mempool."""

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        return ()


class Node:
    def __init__(self, home: Path, byzantine: str | None = None) -> None:
        self.home = home
        self.config: NodeConfig = load_node_config(home)
        self.genesis: Genesis = load_genesis(self.config.genesis_file)
        self.key: PrivateKey = load_private_key(self.config.key_file)
        check_identity(self.config, self.genesis, self.key.public_key)
        self.replica_config = self.config.replica_config(self.genesis)
        self.byzantine = byzantine
        self.me = ValidatorIndex(self.config.index)
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.blocks = BlockStore(self.config.data_dir / "blocks.sqlite")
        self.safety_store = DurableFileStore(OsFilesystem(self.config.data_dir))
        addresses = {v.index: parse_host_port(v.p2p) for v in self.genesis.validators}
        addresses[self.me] = parse_host_port(self.config.p2p_listen)
        self.transport = Transport(
            self.me,
            self.key,
            self.genesis.chain_id,
            [v.public_key for v in self.genesis.validators],
            addresses,
        )
        self.replica: Replica | None = None
        self.program: Program | None = None
        self.api_url: str | None = None
        self._commit_times: deque[float] = deque()
        self.refusals = 0

    # Running.

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started()` once the p2p and API ports listen."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.transport.run)
                self._start_program()
                api = HypercornConfig()
                api.bind = [self.config.api_listen]
                api.accesslog = None
                api.errorlog = logging.getLogger("bft.api")
                logging.getLogger("bft.api").setLevel(logging.WARNING)  # not its start-up banner
                urls = await nursery.start(serve, make_app(self), api)
                self.api_url = urls[0] if urls else None
                nursery.start_soon(self._drive)
                log.info(
                    kv(
                        event="started",
                        node=self.me,
                        chain_id=self.genesis.chain_id,
                        height=self.blocks.height,
                        p2p=self.config.p2p_listen,
                        api=self.api_url,
                        byzantine=self.byzantine or "no",
                    )
                )
                task_status.started()
        finally:
            self.blocks.close()
            height = self.replica.committed_height if self.replica is not None else 0
            log.info(kv(event="stopped", node=self.me, height=height))

    def _start_program(self) -> None:
        replica = Replica(
            self.replica_config,
            self.key,
            self.safety_store,
            NoTransactions(),
            root=self.blocks.tip(),
            now=trio.current_time(),
            committed_tx=self.blocks.has_tx,
            committed_block=self.blocks.block_by_id,
            journal=self.blocks,
        )
        self.replica = replica
        if self.byzantine is None:
            self.program = replica
        else:
            from bft.adversary import BEHAVIOURS

            behaviour = BEHAVIOURS[self.byzantine]
            self.program = behaviour(replica, self.key, self.replica_config, random.Random())

    async def _drive(self) -> None:
        """The one task that owns the replica."""
        program = self.program
        assert program is not None
        while True:
            deadline = program.next_deadline()
            received: tuple[int, bytes] | None = None
            with trio.move_on_at(math.inf if deadline is None else deadline):
                received = await self.transport.incoming.receive()
            now = trio.current_time()
            if received is None:
                self._perform(program.on_timer(now))
                continue
            peer, data = received
            try:
                msg = wire.decode(data)
            except DecodeError as e:
                self.refusals += 1
                log.warning(kv(event="refusal", node=self.me, peer=peer, what="message", reason=str(e)))
                continue
            self._perform(program.on_message(ValidatorIndex(peer), msg, now))

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send | SendRaw) and action.to == self.me:
                # The replica never addresses itself; a Byzantine wrapper may. Nowhere to send it.
                log.debug(kv(event="send_to_self_dropped", node=self.me))
            elif isinstance(action, Send):
                self.transport.send(action.to, wire.encode(action.msg))
            elif isinstance(action, Broadcast):
                self.transport.broadcast(wire.encode(action.msg))
            elif isinstance(action, SendRaw):
                self._send_raw(action)
            elif isinstance(action, Commit):
                self._on_commit(action)
            elif isinstance(action, Refusal):
                self.refusals += 1
                log.info(
                    kv(
                        event="refusal",
                        node=self.me,
                        peer=action.sender,
                        view=action.view,
                        what=action.what,
                        reason=action.reason,
                    )
                )
            elif isinstance(action, ViewChange):
                log.debug(kv(event="view", node=self.me, view=action.view, via=action.via))

    def _send_raw(self, action: SendRaw) -> None:
        """A Byzantine program's raw bytes: the transport frames what it can carry."""
        size = len(action.data)
        if 0 < size <= self.transport.max_payload_bytes:
            self.transport.send(action.to, action.data)
        else:
            log.info(kv(event="raw_frame_not_sent", node=self.me, peer=action.to, size_bytes=size))

    def _on_commit(self, commit: Commit) -> None:
        self.blocks.append(commit.blocks, commit.qcs, commit.commit_qc)
        now = trio.current_time()
        for block in commit.blocks:
            self._commit_times.append(now)
            log.info(
                kv(event="commit", node=self.me, height=block.height, view=block.view, id=block.id.hex()[:16])
            )
        while self._commit_times and self._commit_times[0] < now - RATE_WINDOW_S:
            self._commit_times.popleft()

    # What the API shows.

    def status(self) -> dict[str, Any]:
        replica = self.replica
        view = replica.view if replica is not None else View(0)
        last = replica.last_committed if replica is not None else None
        now = trio.current_time()
        recent = sum(1 for t in self._commit_times if t >= now - RATE_WINDOW_S)
        return {
            "node": int(self.me),
            "chain_id": self.genesis.chain_id,
            "view": int(view),
            "height": last.height if last is not None else 0,
            "leader": int(leader_of(self.replica_config, view)),
            "last_block_id": last.id.hex() if last is not None else "",
            "peers": len(self.transport.connected_peers),
            "commits_per_s": round(recent / RATE_WINDOW_S, 2),
            "byzantine": self.byzantine,
        }

    def block(self, height: int) -> dict[str, Any] | None:
        stored = self.blocks.block_at(height)
        if stored is None:
            return None
        block = stored.block
        return {
            "height": block.height,
            "view": block.view,
            "id": block.id.hex(),
            "parent_id": block.parent_id.hex(),
            "proposer": block.proposer,
            "txs": [b64(tx) for tx in block.txs],
            "qc": qc_json(stored.qc),
            "commit_qc": qc_json(stored.commit_qc),
            "app_hash": None,
        }
