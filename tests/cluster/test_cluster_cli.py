"""`bft cluster` as a user runs it: keys on first use, four node processes that commit within
seconds, and Ctrl-C (SIGINT) that stops every one of them and exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
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
