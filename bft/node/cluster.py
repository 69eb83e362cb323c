"""A local cluster of node processes with a live view: the body of `bft cluster`.

Owns: the cluster's data directory (keys generated on first use), starting one `bft node`
process per validator, polling their `/status`, the live table, and stopping every process on
Ctrl-C or SIGTERM. The process helpers (`node_command`, `run_node_process`, `terminate`) are
public: `bft bench` starts its local cluster with them.
May not: run consensus in this process.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Any

import trio
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bft.node.config import load_genesis, load_node_config
from bft.node.storage import SCHEMA_VERSION, schema_version_of
from bft.node.testnet import write_testnet

POLL_INTERVAL_S = 0.5
STATUS_TIMEOUT_S = 0.5
# A node that got SIGTERM has this long to stop cleanly before it gets SIGKILL.
STOP_DEADLINE_S = 10.0


def default_home(nodes: int) -> Path:
    return Path.home() / ".bft" / f"cluster-{nodes}"


def ensure_testnet(home: Path, nodes: int, base_port: int) -> None:
    if not (home / "genesis.json").exists():
        write_testnet(nodes, home, base_port)


def _fetch_status(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url + "/status", timeout=STATUS_TIMEOUT_S) as response:
            data: dict[str, Any] = json.load(response)
            return data
    except (OSError, ValueError):
        return None


def _table(apis: list[str], statuses: list[dict[str, Any] | None], byzantine: dict[int, str]) -> Table:
    table = Table(title="bft cluster — Ctrl-C stops every node")
    for column in ("node", "api", "view", "height", "leader", "commits/s", "peers", "role"):
        table.add_column(column, justify="right" if column not in ("api", "role") else "left")
    for i, (api, status) in enumerate(zip(apis, statuses, strict=True)):
        role = byzantine.get(i, "honest")
        if status is None:
            table.add_row(str(i), api, "-", "-", "-", "-", "-", f"{role} (down)")
            continue
        table.add_row(
            str(i),
            api,
            str(status["view"]),
            str(status["height"]),
            str(status["leader"]),
            f"{status.get('commits_per_s', 0):.1f}",
            str(status["peers"]),
            role,
        )
    return table


async def run_cluster(
    home: Path, nodes: int, base_port: int, byzantine: dict[int, str], console: Console
) -> int:
    ensure_testnet(home, nodes, base_port)
    genesis = load_genesis(home / "genesis.json")
    if len(genesis.validators) != nodes:
        console.print(f"{home} holds a {len(genesis.validators)}-node cluster; use --home for another")
        return 2
    stale = _stale_schema(home, nodes)
    if stale is not None:
        console.print(stale)
        return 2
    apis = [f"http://{v.api}" for v in genesis.validators]
    console.print(f"data directory: {home}")
    for i, api in enumerate(apis):
        console.print(f"node {i}: API {api}  logs {home / f'node{i}' / 'node.log'}")

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                node_home = home / f"node{i}"
                cmd = node_command(node_home, byzantine.get(i))
                nursery.start_soon(run_node_process, cmd, node_home / "stderr.log")
            nursery.start_soon(_live_view, apis, byzantine, console)
            async for _ in signals:
                console.print("stopping every node...")
                nursery.cancel_scope.cancel()
                break
    console.print("all nodes stopped")
    return 0


def _stale_schema(home: Path, nodes: int) -> str | None:
    """Why the cluster at `home` cannot start with this version's block store, or None."""
    for i in range(nodes):
        config = load_node_config(home / f"node{i}")
        found = schema_version_of(config.data_dir / "blocks.sqlite")
        if found not in (None, 0, SCHEMA_VERSION):
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
    cmd: list[str], output: Path, *, task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run `cmd` until it exits or the caller's scope is cancelled, its stdout and stderr appended
    to `output`. `nursery.start` returns the started `trio.Process`. On cancel the process gets
    `terminate` (SIGTERM, SIGKILL past the deadline) and is reaped before this returns."""
    with output.open("ab") as sink:
        await trio.run_process(
            cmd,
            check=False,
            stdout=sink,
            stderr=sink,
            deliver_cancel=terminate,
            task_status=task_status,
        )


async def terminate(process: trio.Process, timeout_s: float = STOP_DEADLINE_S) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if the process is still running after `timeout_s`."""
    process.terminate()
    with trio.move_on_after(timeout_s):
        await process.wait()
        return
    process.kill()


async def _live_view(apis: list[str], byzantine: dict[int, str], console: Console) -> None:
    with Live(_table(apis, [None] * len(apis), byzantine), console=console, refresh_per_second=4) as live:
        while True:
            statuses = [await trio.to_thread.run_sync(_fetch_status, api) for api in apis]
            live.update(_table(apis, statuses, byzantine))
            await trio.sleep(POLL_INTERVAL_S)
