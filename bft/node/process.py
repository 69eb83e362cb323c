"""Running one node as a process: logging, signals, clean shutdown, the start-up line.

Owns: `run_node`, the body of `bft node`: it prints where the node listens and logs once the
listeners are bound, stops cleanly on the first SIGINT or SIGTERM, and on a second one while
stopping prints one line and exits 130 instead of a traceback.
May not: know about clusters; `bft.node.cluster` starts processes of this.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from bft.app.interface import SnapshotApplication
from bft.node.config import Genesis, NodeConfig, load_genesis, load_node_config, parse_host_port
from bft.node.logs import kv, setup_node_logging
from bft.node.runtime import Node, crash_of, load_application
from bft.node.statesync import StateSyncError, SyncReport
from bft.node.statesync_http import api_servers, sync_node
from bft.node.storage import BLOCKS_FILE, committed_height

log = logging.getLogger("bft.node")

EXIT_OK: Final = 0
EXIT_CRASHED: Final = 1
# A second SIGINT/SIGTERM arrived while the node was stopping (the shell's code for SIGINT).
EXIT_INTERRUPTED: Final = 130
INTERRUPTED_AGAIN: Final = "bft: interrupted again, stopping now"
# `--state-sync` tries this often, this far apart, while no offered snapshot verifies yet.
STATE_SYNC_ATTEMPTS: Final = 10
STATE_SYNC_RETRY_S: Final = 3.0


@dataclass(slots=True)
class _Stop:
    stopping: bool = False
    interrupted_again: bool = False


def listening_line(me: int, p2p: str, api_url: str | None, log_file: Path) -> str:
    """The line `bft node` prints once it listens: a node started by hand (or restarted after a
    `bft cluster` reported it exited) otherwise said nothing on its terminal."""
    api = api_url if api_url is not None else "(no API)"
    return f"node {me}: p2p {p2p}, API {api}, log {log_file} (Ctrl-C stops it)"


def print_listening(node: Node) -> None:
    host, _port = parse_host_port(node.config.p2p_listen)
    p2p = f"{host}:{node.transport.listen_port}"
    print(listening_line(node.me, p2p, node.api_url, node.config.log_file), flush=True)


async def _serve_until_signal(node: Node, stop: _Stop) -> None:
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as outer:
                node_scope = trio.CancelScope()
                outer.start_soon(_watch_signals, signals, node, node_scope, stop)
                with node_scope:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(node.run)
                        print_listening(node)
                # The node has stopped (or crashed): no signal is waited for any more.
                outer.cancel_scope.cancel()
    except KeyboardInterrupt:
        # A SIGINT that came after the watcher ended is delivered again, as a KeyboardInterrupt,
        # when the receiver closes: during a stop it is a second Ctrl-C like any other.
        if not stop.stopping:
            raise
        _on_interrupted_again(node, stop, "SIGINT")


async def _watch_signals(
    signals: AsyncIterator[int], node: Node, scope: trio.CancelScope, stop: _Stop
) -> None:
    """The first signal stops the node (cancels it; the stores are closed on the way out); a
    second one while it stops is reported once and makes the exit status 130."""
    async for signum in signals:
        if not stop.stopping:
            stop.stopping = True
            log.info(kv(event="shutdown", node=node.me, signal=signal.Signals(signum).name))
            scope.cancel()
        else:
            _on_interrupted_again(node, stop, signal.Signals(signum).name)


def _on_interrupted_again(node: Node, stop: _Stop, signal_name: str) -> None:
    if stop.interrupted_again:
        return
    stop.interrupted_again = True
    log.info(kv(event="interrupted_again", node=node.me, signal=signal_name))
    print(INTERRUPTED_AGAIN, file=sys.stderr, flush=True)


def _sync_with_retries(
    config: NodeConfig, genesis: Genesis, app: SnapshotApplication, servers: Sequence[str], held: int
) -> SyncReport | None:
    """`sync_node`, again every STATE_SYNC_RETRY_S while snapshots are offered but none verifies
    yet (most often: the newest one's claim is not proven committed yet, and the older ones were
    never claimed), at most STATE_SYNC_ATTEMPTS times."""
    for _ in range(STATE_SYNC_ATTEMPTS - 1):
        try:
            return sync_node(config, genesis, app, servers, held)
        except StateSyncError as exc:
            print(f"node {config.index}: {exc}; trying again in {STATE_SYNC_RETRY_S:g} s", flush=True)
            time.sleep(STATE_SYNC_RETRY_S)
    return sync_node(config, genesis, app, servers, held)


def sync_before_start(config: NodeConfig, servers: Sequence[str] | None = None) -> SyncReport | None:
    """Restore the node's application and block store from the newest trusted snapshot the other
    validators serve (or `servers`, API URLs; `bft.node.statesync`), unless the node's committed
    height is already at or above it; prints what it did. StateSyncError (a NodeError) if nothing
    could be restored."""
    genesis = load_genesis(config.genesis_file)
    if not genesis.state_sync:
        raise StateSyncError(
            f'the genesis of {genesis.chain_id} does not say "state_sync": nothing to join from'
        )
    config.data_dir.mkdir(parents=True, exist_ok=True)
    held = committed_height(config.data_dir / BLOCKS_FILE)
    app = load_application(config, genesis)
    try:
        if not isinstance(app, SnapshotApplication):
            raise StateSyncError(f"the application ({type(app).__name__}) has no snapshots to restore from")
        servers = api_servers(config, genesis) if servers is None else list(servers)
        if not servers:
            raise StateSyncError("no server to state sync from")
        print(
            f"node {config.index}: state sync from {', '.join(servers)} (committed height {held})", flush=True
        )
        report = _sync_with_retries(config, genesis, app, servers, held)
    finally:
        close = getattr(app, "close", None)
        if close is not None:
            close()
    if report is None:
        print(
            f"node {config.index}: no snapshot above height {held}: starting from what it holds", flush=True
        )
    else:
        print(
            f"node {config.index}: restored height {report.height} ({report.chunks} chunks, "
            f"{report.tx_records} transaction records, {report.blocks} blocks)",
            flush=True,
        )
    return report


def run_node(
    home: Path,
    byzantine: str | None = None,
    *,
    log_level: int = logging.INFO,
    log_stdout: bool = False,
    state_sync: bool = False,
    sync_from: Sequence[str] | None = None,
) -> int:
    """Run the node at `home` until SIGINT or SIGTERM; 0 on a clean stop, 1 after a crash (the
    node logged it as `event=crashed`, with its traceback), 130 if a second signal came while it
    was stopping (the stop still closes the stores). Log lines at `log_level` and above go to the
    node's log file, and with `log_stdout` to stdout too (`setup_node_logging`). With
    `state_sync` the node first joins from a snapshot (`sync_before_start`, from the APIs in
    `sync_from` if given)."""
    config = load_node_config(home)
    setup_node_logging(config.log_file, level=log_level, stdout=log_stdout)
    if state_sync:
        sync_before_start(config, sync_from)
    elif sync_from is not None:
        raise StateSyncError("--sync-from names where to state sync from: it needs --state-sync")
    node = Node(home, byzantine)
    stop = _Stop()
    try:
        trio.run(_serve_until_signal, node, stop)
    except Exception as e:
        crash = crash_of(e)
        if crash is None:
            raise
        print(f"bft node: crashed: {crash} (traceback in {config.log_file})", file=sys.stderr)
        return EXIT_CRASHED
    return EXIT_INTERRUPTED if stop.interrupted_again else EXIT_OK
