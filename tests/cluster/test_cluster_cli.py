"""`bft cluster` as a user runs it: keys on first use, four node processes that commit within
seconds, and Ctrl-C (SIGINT) that stops every one of them and exits 0; a second cluster on the
same home or on a taken port refused before any node starts; a node killed during the run shown
as such, with the command that restarts it, and the cluster's exit status non-zero; Ctrl-C twice
without a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_helpers import (
    STOP_TIMEOUT_S,
    free_base_port,
    http_get,
    pids_with_cmdline_containing,
    tail,
    wait_until,
)

NODES = 4
# Acceptance: blocks committed within 5 seconds of the nodes being up.
FIRST_COMMIT_S = 5.0
CLUSTER_EXIT_TIMEOUT_S = 15.0


@pytest.fixture
def cluster_home(tmp_path: Path) -> Iterator[Path]:
    """The data directory of a `bft cluster`; any process still running from it at teardown is
    killed (by pid) and fails the test."""
    home = tmp_path / "cluster-home"
    yield home
    leftovers = pids_with_cmdline_containing(str(home))
    for pid in leftovers:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        if "bft" in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if leftovers:
        pytest.fail(f"processes left running from {home}: {leftovers}", pytrace=False)


def _statuses(ports: list[int]) -> list[dict[str, object] | None]:
    found: list[dict[str, object] | None] = []
    for port in ports:
        code, body = http_get(port, "/status")
        found.append(body if code == 200 and isinstance(body, dict) else None)
    return found


def test_bft_cluster_commits_quickly_and_ctrl_c_stops_everything(cluster_home: Path, tmp_path: Path) -> None:
    base = free_base_port(2 * NODES)
    output = tmp_path / "cluster.out"
    launched = time.monotonic()
    with output.open("wb") as out:
        cluster = subprocess.Popen(
            [sys.executable, "-m", "bft", "cluster", "--home", str(cluster_home), "--base-port", str(base)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _run_and_interrupt(cluster, cluster_home, output, base, launched)
        finally:
            if cluster.poll() is None:
                cluster.kill()
                cluster.wait(timeout=STOP_TIMEOUT_S)


def _run_and_interrupt(
    cluster: subprocess.Popen[bytes], home: Path, output: Path, base: int, launched: float
) -> None:
    def diagnose() -> str:
        return f"bft cluster exit={cluster.poll()}; output:\n{tail(output, 30)}"

    # Keys and configuration are written on first use.
    genesis_file = home / "genesis.json"
    wait_until(genesis_file.exists, 30.0, f"{genesis_file} to be written", diagnose=diagnose)
    genesis = wait_until(lambda: _read_json(genesis_file), 10.0, "a complete genesis.json", diagnose=diagnose)
    apis: list[str] = [v["api"] for v in genesis["validators"]]
    assert len(apis) == NODES, f"genesis lists {len(apis)} validators"
    ports = [int(api.rsplit(":", 1)[1]) for api in apis]
    assert ports == [base + 2 * i + 1 for i in range(NODES)], f"API ports {ports} with --base-port {base}"
    for i in range(NODES):
        assert (home / f"node{i}" / "node_key").stat().st_mode & 0o077 == 0, (
            f"node{i}/node_key is readable by others"
        )

    def all_up() -> bool:
        assert cluster.poll() is None, f"bft cluster exited with {cluster.returncode}"
        return all(s is not None for s in _statuses(ports))

    wait_until(all_up, 30.0, "every node's /status to answer", diagnose=diagnose)
    up = time.monotonic()

    def all_committed() -> bool:
        statuses = _statuses(ports)
        return all(s is not None and isinstance(s["height"], int) and s["height"] >= 1 for s in statuses)

    wait_until(all_committed, 30.0, "every node to commit a block", diagnose=diagnose)
    committed = time.monotonic()
    print(
        f"bft cluster: APIs up {up - launched:.2f} s after launch, "
        f"first commit on every node {committed - up:.2f} s later"
    )
    assert committed - up <= FIRST_COMMIT_S, (
        f"first commit on every node took {committed - up:.2f} s after all APIs answered"
    )

    # The command tells the user where each node's API is.
    printed = wait_until(
        lambda: all(api in output.read_text(errors="replace") for api in apis),
        10.0,
        "bft cluster to print every node's API address",
        diagnose=diagnose,
    )
    assert printed

    children = pids_with_cmdline_containing(str(home))
    node_children = [pid for pid in children if pid != cluster.pid]
    assert len(node_children) >= NODES, f"expected {NODES} node processes under {home}, found {children}"

    cluster.send_signal(signal.SIGINT)
    try:
        code = cluster.wait(timeout=CLUSTER_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0, f"bft cluster exit code after SIGINT: {code} (None: still running); {diagnose()}"
    left = pids_with_cmdline_containing(str(home))
    assert not left, f"processes still running after bft cluster exited: {left}"
    for i in range(NODES):
        lines = [line for line in (home / f"node{i}" / "node.log").read_text().splitlines() if line.strip()]
        assert lines and "event=stopped" in lines[-1], f"node {i} did not stop cleanly; log ends {lines[-3:]}"


def _read_json(path: Path) -> dict[str, list[dict[str, str]]] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and len(data.get("validators", [])) == NODES else None


def _start_cluster(home: Path, base: int, output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bft", "cluster", "--home", str(home), "--base-port", str(base)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_all_up(cluster: subprocess.Popen[bytes], base: int, output: Path) -> list[int]:
    ports = [base + 2 * i + 1 for i in range(NODES)]

    def all_up() -> bool:
        assert cluster.poll() is None, f"bft cluster exited with {cluster.returncode}:\n{tail(output, 30)}"
        return all(s is not None for s in _statuses(ports))

    wait_until(all_up, 60.0, "every node's /status to answer", diagnose=lambda: tail(output, 30))
    return ports


def _stop(cluster: subprocess.Popen[bytes]) -> None:
    if cluster.poll() is None:
        cluster.kill()
        cluster.wait(timeout=STOP_TIMEOUT_S)


def _node_pids(home: Path, i: int) -> list[int]:
    return pids_with_cmdline_containing(f"--home {home / f'node{i}'}")


def test_a_second_cluster_on_the_same_home_is_refused_and_a_killed_node_is_reported(
    cluster_home: Path, tmp_path: Path
) -> None:
    base = free_base_port(2 * NODES)
    output = tmp_path / "cluster.out"
    cluster = _start_cluster(cluster_home, base, output)
    try:
        _wait_all_up(cluster, base, output)

        # A second cluster on the same home: refused at once, naming the home and the first's pid.
        second = subprocess.run(
            [sys.executable, "-m", "bft", "cluster", "--home", str(cluster_home), "--base-port", str(base)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_EXIT_TIMEOUT_S,
            check=False,
        )
        assert second.returncode == 2, (
            f"second cluster exited {second.returncode}:\n{second.stdout}{second.stderr}"
        )
        assert str(cluster_home) in second.stderr and f"pid {cluster.pid}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr, second.stderr
        for i in range(NODES):
            assert len(_node_pids(cluster_home, i)) == 1, f"node {i}: not exactly the first cluster's process"

        # A node killed during the run: one line saying so, with the command that restarts it.
        (victim,) = _node_pids(cluster_home, 1)
        os.kill(victim, signal.SIGKILL)
        notice = f"node 1 killed by SIGKILL; restart it by hand: bft node --home {cluster_home / 'node1'}"
        wait_until(
            lambda: notice in output.read_text(errors="replace"),
            10.0,
            "bft cluster to report node 1 killed",
            diagnose=lambda: tail(output, 30),
        )
        assert cluster.poll() is None, "bft cluster ended when one node died"

        cluster.send_signal(signal.SIGINT)
        code = cluster.wait(timeout=CLUSTER_EXIT_TIMEOUT_S)
        text = output.read_text(errors="replace")
        assert code == 1, f"bft cluster exit code {code} after a node was killed; output:\n{tail(output, 30)}"
        assert "node 1 was not running when the cluster stopped (killed by SIGKILL)" in text, tail(output, 30)
        assert "all nodes stopped" not in text, tail(output, 30)
        # The final table shows node 1's state, not "(down)".
        assert "(down)" not in text
    finally:
        _stop(cluster)


def test_a_taken_port_is_refused_before_any_node_starts(cluster_home: Path, tmp_path: Path) -> None:
    base = free_base_port(2 * NODES)
    taken = base + 2  # node 1's p2p port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "bft", "cluster", "--home", str(cluster_home), "--base-port", str(base)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLUSTER_EXIT_TIMEOUT_S * 2,
            check=False,
        )
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stdout}{result.stderr}"
    assert f"127.0.0.1:{taken} (node 1 p2p)" in result.stderr, result.stderr
    assert "no node was started" in result.stderr, result.stderr
    for i in range(NODES):
        assert not (cluster_home / f"node{i}" / "stderr.log").exists(), f"node {i} was started"
    # Nothing written with the taken ports, so that --base-port on the same home is a way out.
    assert not (cluster_home / "genesis.json").exists(), "a testnet was written on taken ports"


def test_ctrl_c_twice_stops_the_cluster_without_a_traceback(cluster_home: Path, tmp_path: Path) -> None:
    base = free_base_port(2 * NODES)
    output = tmp_path / "cluster.out"
    cluster = _start_cluster(cluster_home, base, output)
    try:
        _wait_all_up(cluster, base, output)
        cluster.send_signal(signal.SIGINT)
        # The second Ctrl-C comes while the cluster is stopping its nodes.
        wait_until(
            lambda: "stopping every node" in output.read_text(errors="replace"),
            10.0,
            "bft cluster to start stopping",
            interval_s=0.005,
            diagnose=lambda: tail(output, 30),
        )
        assert cluster.poll() is None, "the cluster stopped before a second Ctrl-C could reach it"
        cluster.send_signal(signal.SIGINT)
        code = cluster.wait(timeout=CLUSTER_EXIT_TIMEOUT_S)
        text = output.read_text(errors="replace")
        assert "Traceback" not in text, tail(output, 40)
        assert code == 130, f"exit code {code} after two Ctrl-C; output:\n{tail(output, 30)}"
        assert "bft: interrupted again, stopping now" in text, tail(output, 30)
        assert not pids_with_cmdline_containing(str(cluster_home)), "node processes left running"
    finally:
        _stop(cluster)
