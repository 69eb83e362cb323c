"""A local cluster of node processes with a live view: the body of `bft cluster`.

Owns: the cluster's data directory (keys generated on first use), the checks before any node
starts (`bft.node.cluster_lock`: one cluster per home, every port free), starting one `bft node`
process per validator in its own process group, polling their `/status`, the live table with each
node's state (`bft.node.cluster_state`), a line when a node exits, and stopping every process it
started on Ctrl-C, SIGTERM or SIGHUP (a second Ctrl-C kills those still running). The process
helpers (`node_command`, `run_node_process`, `terminate`) are public: `bft bench` starts its local
cluster with them.
May not: run consensus in this process; signal a process it did not start (a node restarted by
hand keeps running after the cluster stops).
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN
from bft.node.cluster_lock import LOCK_FILE_NAME, ClusterRefused, Listen, check_ports_free, hold_home_lock
from bft.node.cluster_state import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    NodeState,
    cluster_exit_status,
    last_line,
    node_state,
)
from bft.node.config import (
    GENESIS_FILE_NAME,
    NodeConfig,
    check_port_range,
    load_genesis,
    load_node_config,
    parse_host_port,
)
from bft.node.metrics import NodeCounters, read_counters
from bft.node.storage import SCHEMA_VERSION, UPGRADES_FROM, schema_version_of
from bft.node.testnet import check_out, testnet_ports, write_testnet

POLL_INTERVAL_S = 0.5
# The host `write_testnet` puts in every listen address of a local cluster.
TESTNET_HOST = "127.0.0.1"
STATUS_TIMEOUT_S = 0.5
INTERRUPTED_AGAIN = "bft: interrupted again, stopping now (killing the nodes still running)"
# A node that got SIGTERM has this long to stop cleanly before it gets SIGKILL.
STOP_DEADLINE_S = 10.0


def _say(console: Console, text: str) -> None:
    """One line as written: no wrapping (a path cut in two cannot be pasted), markup or colours."""
    console.print(text, soft_wrap=True)


def default_home(
    nodes: int,
    commit_chain: int = DEFAULT_COMMIT_CHAIN,
    quorum_store: bool = False,
    leader_reputation: bool = False,
) -> Path:
    """~/.bft/cluster-N, with -two-chain appended for the two-chain rule, -quorum-store for the
    quorum store and -reputation for leader reputation (in that order: e.g.
    ~/.bft/cluster-N-two-chain-quorum-store): a home keeps the genesis it was set up with, so
    trying another must not need another --home."""
    suffix = "" if commit_chain == DEFAULT_COMMIT_CHAIN else "-two-chain"
    if quorum_store:
        suffix += "-quorum-store"
    if leader_reputation:
        suffix += "-reputation"
    return Path.home() / ".bft" / f"cluster-{nodes}{suffix}"


# What the cluster itself keeps in a home besides the testnet.
_OURS: Final = frozenset({LOCK_FILE_NAME})


def ensure_testnet(
    home: Path,
    nodes: int,
    base_port: int,
    commit_chain: int = DEFAULT_COMMIT_CHAIN,
    quorum_store: bool = False,
    leader_reputation: bool = False,
) -> None:
    if not (home / GENESIS_FILE_NAME).exists():
        # The home is locked (its lock file made) before the testnet is written into it.
        write_testnet(
            nodes,
            home,
            base_port,
            host=TESTNET_HOST,
            ignored=_OURS,
            commit_chain=commit_chain,
            quorum_store=quorum_store,
            leader_reputation=leader_reputation,
        )


def _fetch_status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/status", timeout=STATUS_TIMEOUT_S) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError):
        return None


def _fetch_counters(url: str) -> NodeCounters | None:
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=STATUS_TIMEOUT_S) as response:
            return read_counters(response.read().decode("utf-8", "replace"))
    except (OSError, ValueError):
        return None


def _table(runs: list[_NodeRun], now: float) -> Table:
    table = Table(title="bft cluster — Ctrl-C stops every node")
    columns = ("node", "api", "state", "view", "height", "leader", "commits/s", "peers", "TCs", "timeouts")
    for column in (*columns, "refused (top)", "role"):
        table.add_column(
            column, justify="left" if column in ("api", "state", "refused (top)", "role") else "right"
        )
    for run in runs:
        role = run.byzantine or "honest"
        state = run.state(now)
        status = run.status
        # The full URLs are printed above the table; the host:port fits an 80-column terminal.
        address = run.api.removeprefix("http://")
        if state.kind != "running" or status is None:
            table.add_row(str(run.index), address, state.short, *["-"] * 8, role)
            continue
        counters = run.counters
        # A Byzantine node shows in what the honest ones refuse (vote-conflict, duplicate-vote...).
        refused = ", ".join(f"{reason} {n}" for reason, n in counters.top_refusals(2)) if counters else "-"
        table.add_row(
            str(run.index),
            address,
            state.short,
            str(status["view"]),
            str(status["height"]),
            str(status["leader"]),
            f"{status.get('commits_per_s', 0):.1f}",
            str(status["peers"]),
            str(counters.tcs) if counters else "-",
            str(counters.timeouts) if counters else "-",
            refused or "-",
            role,
        )
    return table


async def run_cluster(
    home: Path,
    nodes: int,
    base_port: int,
    byzantine: dict[int, str],
    console: Console,
    commit_chain: int = DEFAULT_COMMIT_CHAIN,
    quorum_store: bool = False,
    leader_reputation: bool = False,
) -> int:
    """Run the cluster at `home` (set up with the `commit_chain` rule, the quorum store if
    `quorum_store` and leader reputation if `leader_reputation`, if new) until Ctrl-C, SIGTERM or
    SIGHUP (or until every node has exited); the exit status is `cluster_exit_status`'s, or 2 if
    the cluster cannot start (nothing was started then): among other reasons, when `home` holds
    a cluster of another size or commit rule, or one with the quorum store (or leader
    reputation) when it is not asked for, or the other way round."""
    if not (home / GENESIS_FILE_NAME).exists():
        # A home that holds something else is refused before the lock file is made in it.
        check_out(home, _OURS)
    try:
        with hold_home_lock(home):
            return await _run_locked(
                home, nodes, base_port, byzantine, console, commit_chain, quorum_store, leader_reputation
            )
    except ClusterRefused as e:
        print(f"bft cluster: {e}", file=sys.stderr)
        return EXIT_REFUSED


async def _run_locked(
    home: Path,
    nodes: int,
    base_port: int,
    byzantine: dict[int, str],
    console: Console,
    commit_chain: int,
    quorum_store: bool,
    leader_reputation: bool,
) -> int:
    if not (home / GENESIS_FILE_NAME).exists():
        # A new home: check the ports before writing them into its configuration, so that a
        # taken port leaves nothing behind and --base-port on the same home is a way out.
        check_port_range(base_port, nodes)
        check_ports_free(_planned_listens(nodes, base_port))
    ensure_testnet(home, nodes, base_port, commit_chain, quorum_store, leader_reputation)
    genesis = load_genesis(home / GENESIS_FILE_NAME)
    if len(genesis.validators) != nodes:
        _say(console, f"{home} holds a {len(genesis.validators)}-node cluster; use --home for another")
        return EXIT_REFUSED
    if genesis.commit_chain != commit_chain:
        _say(
            console,
            f"{home} holds a cluster of commit chain {genesis.commit_chain}; pass --commit-chain "
            f"{genesis.commit_chain}, or --home for another",
        )
        return EXIT_REFUSED
    if genesis.quorum_store != quorum_store:
        held, hint = (
            ("with", "pass --quorum-store") if genesis.quorum_store else ("without", "drop --quorum-store")
        )
        _say(console, f"{home} holds a cluster {held} the quorum store; {hint}, or --home for another")
        return EXIT_REFUSED
    if genesis.leader_reputation != leader_reputation:
        held, hint = (
            ("with", "pass --leader-reputation")
            if genesis.leader_reputation
            else ("without", "drop --leader-reputation")
        )
        _say(console, f"{home} holds a cluster {held} leader reputation; {hint}, or --home for another")
        return EXIT_REFUSED
    stale = _stale_schema(home, nodes)
    if stale is not None:
        _say(console, stale)
        return EXIT_REFUSED
    configs = [load_node_config(home / f"node{i}") for i in range(nodes)]
    check_ports_free(_listens(configs))
    runs = [
        _NodeRun(
            index=i,
            home=home / f"node{i}",
            api=f"http://{v.api}",
            byzantine=byzantine.get(i),
            output=home / f"node{i}" / "stderr.log",
        )
        for i, v in enumerate(genesis.validators)
    ]
    mode = ", quorum store" if genesis.quorum_store else ""
    _say(console, f"data directory: {home} (commit chain {genesis.commit_chain}{mode})")
    for run in runs:
        _say(console, f"node {run.index}: API {run.api}  logs {configs[run.index].log_file}")

    stop = _Stop()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async with trio.open_nursery() as outer:
                outer.start_soon(_watch_signals, signals, runs, stop, console)
                with stop.scope:
                    async with trio.open_nursery() as nursery:
                        for run in runs:
                            run.output_offset = _size_of(run.output)
                            run.process = await nursery.start(_run_node, run, console)
                            run.started_at = trio.current_time()
                        nursery.start_soon(_live_view, runs, console)
                # Every process this cluster started is reaped by now.
                outer.cancel_scope.cancel()
    except KeyboardInterrupt:
        # A SIGINT that came after the watcher ended is delivered again, as a KeyboardInterrupt,
        # when the receiver closes: during a stop it is a second Ctrl-C like any other.
        if not stop.stopping:
            raise
        _on_interrupted_again(runs, stop)
    return _report_stop(runs, stop, console)


@dataclass(slots=True)
class _NodeRun:
    """One node process of the cluster, as the cluster observed it."""

    index: int
    home: Path
    api: str
    byzantine: str | None
    output: Path
    process: trio.Process | None = None
    started_at: float = 0.0
    # Bytes already in `output` before this run: its last line must be this run's.
    output_offset: int = 0
    status: dict[str, Any] | None = None
    counters: NodeCounters | None = None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def state(self, now: float) -> NodeState:
        code = self.returncode
        tail = last_line(self.output, self.output_offset) if code is not None else None
        return node_state(code, self.status is not None, now - self.started_at, tail)

    def restart_command(self) -> str:
        cmd = ["bft", "node", "--home", str(self.home)]
        if self.byzantine is not None:
            cmd += ["--byzantine", self.byzantine]
        return shlex.join(cmd)


@dataclass(slots=True)
class _Stop:
    """How the run ended: `scope` is cancelled to stop every node; `exited_before` holds the nodes
    that had exited by themselves when the stop began."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopping: bool = False
    interrupted_again: bool = False
    exited_before: list[int] | None = None


def _listens(configs: list[NodeConfig]) -> list[Listen]:
    listens = []
    for config in configs:
        for what, text in (("p2p", config.p2p_listen), ("API", config.api_listen)):
            host, port = parse_host_port(text)
            listens.append(Listen(f"node {config.index} {what}", host, port))
    return listens


def _planned_listens(nodes: int, base_port: int) -> list[Listen]:
    """The addresses `write_testnet` gives the nodes of a new cluster (p2p P+2i, API P+2i+1)."""
    listens = []
    for i in range(nodes):
        p2p, api = testnet_ports(base_port, i)
        listens.append(Listen(f"node {i} p2p", TESTNET_HOST, p2p))
        listens.append(Listen(f"node {i} API", TESTNET_HOST, api))
    return listens


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


async def _run_node(
    run: _NodeRun, console: Console, *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
) -> None:
    cmd = node_command(run.home, run.byzantine)
    await run_node_process(cmd, run.output, own_process_group=True, task_status=task_status)
    # Reached only when the process exited by itself: a stop cancels run_node_process.
    state = run.state(trio.current_time())
    _say(
        console,
        f"node {run.index} {state.label}; restart it by hand: {run.restart_command()}",
    )


async def _watch_signals(
    signals: AsyncIterator[int], runs: list[_NodeRun], stop: _Stop, console: Console
) -> None:
    """The first signal starts the clean stop (SIGTERM to every node, SIGKILL past the deadline);
    a second one while stopping kills (SIGKILL) every node still running at once."""
    async for _signum in signals:
        if not stop.stopping:
            stop.stopping = True
            stop.exited_before = [run.index for run in runs if run.returncode is not None]
            _say(console, "stopping every node...")
            stop.scope.cancel()
            continue
        _on_interrupted_again(runs, stop)


def _on_interrupted_again(runs: list[_NodeRun], stop: _Stop) -> None:
    """A second Ctrl-C while stopping: one line, and SIGKILL to every node still running."""
    if not stop.interrupted_again:
        stop.interrupted_again = True
        print(INTERRUPTED_AGAIN, file=sys.stderr, flush=True)
    for run in runs:
        if run.process is not None and run.returncode is None:
            run.process.kill()


def _report_stop(runs: list[_NodeRun], stop: _Stop, console: Console) -> int:
    """Print how each node ended if one did not end well; the exit status of `bft cluster`."""
    exited_before = stop.exited_before if stop.exited_before is not None else [r.index for r in runs]
    before = [run for run in runs if run.index in exited_before and run.returncode is not None]
    after = [run for run in runs if run.index not in exited_before]
    now = trio.current_time()
    for run in before:
        _say(
            console,
            f"node {run.index} was not running when the cluster stopped ({run.state(now).label}); "
            "a node you restarted by hand keeps running: stop it with Ctrl-C in its terminal",
        )
    for run in after:
        if run.returncode not in (None, 0) and not stop.interrupted_again:
            _say(console, f"node {run.index} did not stop cleanly: {run.state(now).label}")
    code = cluster_exit_status(
        [run.returncode for run in before if run.returncode is not None],
        [run.returncode for run in after],
        stop.interrupted_again,
    )
    if code == EXIT_OK:
        _say(console, "all nodes stopped")
    else:
        why = "interrupted again" if code == EXIT_INTERRUPTED else "a node failed"
        _say(console, f"every node this cluster started has stopped; exit status {code} ({why})")
    return code


def _stale_schema(home: Path, nodes: int) -> str | None:
    """Why the cluster at `home` cannot start with this version's block store, or None."""
    for i in range(nodes):
        config = load_node_config(home / f"node{i}")
        found = schema_version_of(config.data_dir / "blocks.sqlite")
        if found not in (None, 0, SCHEMA_VERSION, *UPGRADES_FROM):
            return (
                f"{home} holds a chain written by another version of bft (block store schema {found}, "
                f"this version reads {SCHEMA_VERSION}): remove that directory to start a new chain, "
                "or pass --home"
            )
    return None


def node_command(home: Path, byzantine: str | None = None) -> list[str]:
    """The command line of one `bft node` process for the node directory `home`."""
    cmd = [sys.executable, "-m", "bft", "node", "--home", str(home)]
    if byzantine is not None:
        cmd += ["--byzantine", byzantine]
    return cmd


async def run_node_process(
    cmd: list[str],
    output: Path,
    *,
    own_process_group: bool = False,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `cmd` until it exits or the caller's scope is cancelled, its stdout and stderr appended
    to `output`. `nursery.start` returns the started `trio.Process`. On cancel the process gets
    `terminate` (SIGTERM, SIGKILL past the deadline) and is reaped before this returns.

    With `own_process_group`, the process is not in the caller's process group, so a Ctrl-C in
    the caller's terminal reaches only the caller, which alone decides how its nodes stop (a
    node would otherwise see the terminal's SIGINT and the caller's SIGTERM as two signals)."""
    with output.open("ab") as sink:
        await trio.run_process(
            cmd,
            check=False,
            stdout=sink,
            stderr=sink,
            deliver_cancel=terminate,
            process_group=0 if own_process_group else None,
            task_status=task_status,
        )


async def terminate(process: trio.Process, timeout_s: float = STOP_DEADLINE_S) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if the process is still running after `timeout_s`."""
    process.terminate()
    with trio.move_on_after(timeout_s):
        await process.wait()
        return
    process.kill()


async def _live_view(runs: list[_NodeRun], console: Console) -> None:
    """Poll every node still running and redraw the table; return once every node has exited."""
    try:
        with Live(_table(runs, trio.current_time()), console=console, refresh_per_second=4) as live:
            while True:
                for run in runs:
                    alive = run.returncode is None
                    run.status = await trio.to_thread.run_sync(_fetch_status, run.api) if alive else None
                    run.counters = await trio.to_thread.run_sync(_fetch_counters, run.api) if alive else None
                live.update(_table(runs, trio.current_time()))
                if all(run.returncode is not None for run in runs):
                    return
                await trio.sleep(POLL_INTERVAL_S)
    finally:
        # Off a terminal, Live leaves its last frame without a line end: the next line would
        # start on the table's bottom border.
        if not console.is_terminal:
            console.line()
