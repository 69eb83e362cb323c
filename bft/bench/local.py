"""The cluster `bft bench` drives: a local one it starts, and the wait until a cluster is ready.

Owns: the testnet in the data directory (`prepare_home`, with the application its nodes run:
`app_factory`), one `bft node` process per validator in a nursery the caller owns
(`start_nodes`), and readiness (`wait_ready`: every node answers `/status`, with all its peers
for a local cluster, no process exited, before a deadline).
May not: import the node's runtime or the protocol core (only `bft.node`'s testnet, config and
process helpers, as `bft cluster` uses them); stop processes itself (cancelling their nursery
does); import trio or httpx at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bft.app.noop import NOOP_FACTORY
from bft.bench.errors import BenchError
from bft.bench.probe import fetch_status, int_field

if TYPE_CHECKING:
    import httpx
    import trio

LOCALHOST: Final = "127.0.0.1"
# Every node of a local cluster must be connected to all its peers before the load starts.
READY_TIMEOUT_S: Final = 60.0
READY_POLL_S: Final = 0.2
# The `[app] factory` of each application a local cluster can run ("" = the node's default).
_FACTORIES: Final = {"kv": "", "noop": NOOP_FACTORY}


def free_base_port(count: int, attempts: int = 200) -> int:
    """A base port P with P .. P+count-1 free on 127.0.0.1 now (`bft.node.testnet.free_base_port`)."""
    from bft.node.errors import ConfigError
    from bft.node.testnet import free_base_port as find

    try:
        return find(count, attempts, LOCALHOST)
    except ConfigError as exc:
        raise BenchError(str(exc)) from exc


def app_factory(app: str) -> str:
    """The `[app] factory` of a local cluster running `app` ("kv" or "noop"; "" is the node's
    default, the key-value ledger)."""
    if app not in _FACTORIES:
        raise BenchError(f"unknown application {app!r} (known: {', '.join(_FACTORIES)})")
    return _FACTORIES[app]


def prepare_home(
    home: Path,
    nodes: int,
    commit_chain: int,
    app: str = "kv",
    *,
    quorum_store: bool = False,
    leader_reputation: bool = False,
) -> list[str]:
    """Write a testnet of `nodes` validators with the `commit_chain` rule (and the quorum store if
    `quorum_store`, leader reputation if `leader_reputation`), its nodes running `app`
    (`app_factory`), into `home` unless one is there; the API URLs. BenchError if the one there
    has another size, rule, quorum store or leader reputation setting, or application."""
    from bft.node.config import load_genesis, load_node_config
    from bft.node.errors import NodeError
    from bft.node.testnet import node_home, write_testnet

    factory = app_factory(app)
    try:
        if not (home / "genesis.json").exists():
            write_testnet(
                nodes,
                home,
                free_base_port(2 * nodes),
                commit_chain=commit_chain,
                quorum_store=quorum_store,
                leader_reputation=leader_reputation,
                app_factory=factory,
            )
        genesis = load_genesis(home / "genesis.json")
        configured = load_node_config(node_home(home, 0)).app_factory
    except NodeError as exc:
        raise BenchError(str(exc)) from exc
    if len(genesis.validators) != nodes:
        raise BenchError(f"{home} holds a {len(genesis.validators)}-node testnet, not {nodes}")
    if genesis.commit_chain != commit_chain:
        raise BenchError(
            f"{home} holds a testnet of commit chain {genesis.commit_chain}, not {commit_chain} "
            f"(pass --commit-chain {genesis.commit_chain}, or another --home)"
        )
    if genesis.quorum_store != quorum_store:
        held, hint = (
            ("with", "pass --quorum-store") if genesis.quorum_store else ("without", "drop --quorum-store")
        )
        raise BenchError(f"{home} holds a testnet {held} the quorum store ({hint}, or another --home)")
    if genesis.leader_reputation != leader_reputation:
        held, hint = (
            ("with", "pass --leader-reputation")
            if genesis.leader_reputation
            else ("without", "drop --leader-reputation")
        )
        raise BenchError(f"{home} holds a testnet {held} leader reputation ({hint}, or another --home)")
    if configured != factory:
        hints = {"": "omit --consensus-only", NOOP_FACTORY: "pass --consensus-only"}
        hint = f"{hints[configured]}, or another --home" if configured in hints else "use another --home"
        raise BenchError(
            f"{home} holds a testnet whose nodes run [app] factory {configured!r}, not {factory!r} ({hint})"
        )
    return [f"http://{v.api}" for v in genesis.validators]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def start_nodes(nursery: trio.Nursery, home: Path, nodes: int) -> list[trio.Process]:
    """One `bft node` process per node directory of `home`, owned by `nursery`: cancelling it
    stops them (SIGTERM, then SIGKILL past a deadline) and reaps them."""
    from bft.node.cluster import node_command, run_node_process

    processes: list[trio.Process] = []
    for i in range(nodes):
        node_home = home / f"node{i}"
        process = await nursery.start(run_node_process, node_command(node_home), node_home / "stderr.log")
        processes.append(process)
    return processes


async def wait_ready(
    http: httpx.AsyncClient,
    apis: Sequence[str],
    want_peers: int | None,
    processes: Sequence[trio.Process],
    home: Path | None,
    timeout_s: float,
) -> None:
    """Until every node answers `/status` (with `want_peers` peers, if given); BenchError if a
    process exits or the deadline passes."""
    import trio

    last: list[dict[str, Any] | None] = [None] * len(apis)
    with trio.move_on_after(timeout_s):
        for _ in range(int(timeout_s / READY_POLL_S) + 10):
            _check_alive(processes, home)
            last = [await fetch_status(http, api) for api in apis]
            peers = [int_field(s, "peers") for s in last]
            if all(s is not None for s in last) and (
                want_peers is None or all((p or 0) >= want_peers for p in peers)
            ):
                return
            await trio.sleep(READY_POLL_S)
    seen = ", ".join(f"{api}: {_describe_status(status)}" for api, status in zip(apis, last, strict=True))
    raise BenchError(f"the cluster was not ready after {timeout_s:.0f} s ({seen})")


def _describe_status(status: dict[str, Any] | None) -> str:
    return "no answer" if status is None else f"{status.get('peers')} peers"


def _check_alive(processes: Sequence[trio.Process], home: Path | None) -> None:
    for i, process in enumerate(processes):
        if process.returncode is not None:
            detail = ""
            if home is not None:
                detail = (
                    f":\n{_tail(home / f'node{i}' / 'stderr.log')}\n{_tail(home / f'node{i}' / 'node.log')}"
                )
            raise BenchError(f"node {i} exited with {process.returncode} before the load started{detail}")
