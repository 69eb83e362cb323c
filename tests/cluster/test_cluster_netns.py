"""A testnet beyond one machine, for real on this one: four validators in network namespaces of
their own (`netns.Hosts`), each with its own address on a virtual Ethernet bridge, written by
`bft testnet --hosts` and run with `bft node` inside its namespace. They commit, peers reach each
other at those addresses (not 127.0.0.1), and a node stopped and started again catches up.

Skipped, saying why, where namespaces cannot be made (not Linux, not root).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_helpers import STOP_TIMEOUT_S, run_bft, tail, wait_until
from netns import Hosts, netns_unavailable

NODES = 4
BASE_PORT = 26600
API_PORT = BASE_PORT + 1
HTTP_TIMEOUT_S = 2.0
# A put waits for its commit, which takes the stopped validator's leader terms (timeouts) when one is down.
COMMIT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
PROGRESS_TIMEOUT_S = 60.0
# Blocks every node must commit, then the others without the stopped one, then it after its restart.
HEIGHTS = 4
# Transactions each node is sent at each phase, in one request that waits for their commits.
PUTS = 40

_unavailable = netns_unavailable()
pytestmark = pytest.mark.skipif(_unavailable is not None, reason=f"no network namespaces: {_unavailable}")


def _request(
    host: str, method: str, path: str, body: bytes | None = None, timeout_s: float = HTTP_TIMEOUT_S
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(host, API_PORT, timeout=timeout_s)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        conn.close()


class Network:
    """The nodes of the testnet in `root`, node i running inside namespace i of `hosts`."""

    def __init__(self, hosts: Hosts, root: Path) -> None:
        self.hosts = hosts
        self.root = root
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * NODES

    def start(self, i: int) -> None:
        home = self.root / f"node{i}"
        with (home / "process.out").open("ab") as out:
            cmd = [*self.hosts.exec_prefix(i), sys.executable, "-m", "bft", "node", "--home", str(home)]
            self.procs[i] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self, i: int) -> int | None:
        """SIGTERM node i and wait for it (SIGKILL past the deadline): its exit code, None if killed."""
        proc = self.procs[i]
        self.procs[i] = None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
            return None

    def height(self, i: int) -> int | None:
        status, body = _request(self.hosts.addresses[i], "GET", "/status")
        return int(body["height"]) if status == 200 else None

    def block_id(self, i: int, height: int) -> str | None:
        status, body = _request(self.hosts.addresses[i], "GET", f"/blocks/{height}")
        return str(body["id"]) if status == 200 else None

    def wait_heights(self, nodes: list[int], height: int, timeout_s: float) -> None:
        def reached() -> bool:
            heights = [self.height(i) for i in nodes]
            return all(h is not None and h >= height for h in heights)

        wait_until(
            reached, timeout_s, f"nodes {nodes} at height {height}", interval_s=0.2, diagnose=self.describe
        )

    def put(self, i: int, keys: list[str]) -> list[dict[str, Any]]:
        """Put "value of K" at every K of `keys` through node i, in one request that waits for the commits."""
        txs = [json.dumps({"op": "put", "key": k, "value": f"value of {k}"}).encode() for k in keys]
        body = json.dumps({"txs": [base64.b64encode(tx).decode() for tx in txs], "wait": "commit"}).encode()
        status, answer = _request(self.hosts.addresses[i], "POST", "/txs", body, COMMIT_TIMEOUT_S)
        assert status == 200, f"POST /txs to node {i} answered {status}: {answer}"
        results: list[dict[str, Any]] = answer["results"]
        return results

    def describe(self) -> str:
        lines = []
        for i in range(NODES):
            proc = self.procs[i]
            state = (
                "stopped"
                if proc is None
                else "running"
                if proc.poll() is None
                else f"exited {proc.returncode}"
            )
            log = tail(self.root / f"node{i}" / "node.log", 8)
            lines.append(f"node {i} ({self.hosts.addresses[i]}, {state}), log tail:\n{log}")
        return "\n".join(lines)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    with Hosts(NODES) as hosts:
        root = tmp_path / "net"
        run_bft(
            [
                "testnet",
                "--hosts",
                ",".join(hosts.addresses),
                "--out",
                str(root),
                "--base-port",
                str(BASE_PORT),
            ]
        )
        net = Network(hosts, root)
        try:
            yield net
        finally:
            codes = {i: net.stop(i) for i in range(NODES)}
        assert all(code in (0, None) for code in codes.values()), f"exit codes {codes}\n{net.describe()}"
        assert all(code == 0 for code in codes.values()), f"a node had to be killed: {codes}"
    assert hosts.leftovers() == [], f"namespaces or links left behind: {hosts.leftovers()}"


def _check_puts(network: Network, node: int, keys: list[str]) -> int:
    """Put `keys` through `node`; every one committed; the highest height they committed at."""
    results = network.put(node, keys)
    assert [r["status"] for r in results] == ["committed"] * len(keys), results
    return max(int(r["height"]) for r in results)


def test_four_validators_on_their_own_addresses_commit_and_survive_a_restart(network: Network) -> None:
    hosts = network.hosts
    config = (network.root / "node2" / "config.toml").read_text()
    assert f'listen = "{hosts.addresses[2]}:{BASE_PORT}"' in config
    for i in range(NODES):
        network.start(i)
    network.wait_heights(list(range(NODES)), HEIGHTS, START_TIMEOUT_S)

    # Every node dialled or was dialled by the others at their namespaces' addresses.
    for i in range(NODES):
        log = (network.root / f"node{i}" / "node.log").read_text()
        remotes = set(re.findall(r"event=peer_connected .*remote=([\d.]+):\d+", log))
        others = set(hosts.addresses) - {hosts.addresses[i]}
        assert others <= remotes, f"node {i} connected to {sorted(remotes)}, expected {sorted(others)}"
        assert "127.0.0.1" not in remotes

    for i in range(NODES):
        _check_puts(network, i, [f"before-{i}-{k}" for k in range(PUTS)])

    # Node 3 stops; the other three commit on without it, then it comes back and catches up.
    assert network.stop(3) == 0
    top = max(h for h in (network.height(i) for i in range(3)) if h is not None)
    for i in range(3):
        _check_puts(network, i, [f"while-down-{i}-{k}" for k in range(PUTS)])
    network.wait_heights([0, 1, 2], top + HEIGHTS, PROGRESS_TIMEOUT_S)
    network.start(3)
    target = max(h for h in (network.height(i) for i in range(3)) if h is not None)
    network.wait_heights([3], target, PROGRESS_TIMEOUT_S)
    last = _check_puts(network, 3, [f"after-restart-{k}" for k in range(PUTS)])
    network.wait_heights(list(range(NODES)), last, PROGRESS_TIMEOUT_S)

    # One chain: every node has the same block at every height up to the last put's.
    for height in range(1, last + 1):
        ids = {network.block_id(i, height) for i in range(NODES)}
        assert len(ids) == 1 and None not in ids, f"height {height}: {ids}"
    for i in range(NODES):
        for k in range(0, PUTS, 7):
            status, body = _request(hosts.addresses[i], "GET", f"/kv/while-down-{k % 3}-{k}")
            assert status == 200 and body["value"] == f"value of while-down-{k % 3}-{k}", (i, status, body)
