"""The pure parts of `bft cluster`: each node's state in the live view, the words for an exit, the
last line of a node's output, the cluster's exit status, the home lock and the port check."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bft.node.cluster_lock import ClusterRefused, Listen, check_ports_free, hold_home_lock
from bft.node.cluster_state import (
    EXIT_INTERRUPTED,
    EXIT_NODE_FAILED,
    EXIT_OK,
    NodeState,
    cluster_exit_status,
    describe_exit,
    last_line,
    node_state,
)

GRACE_S = 10.0
BIND_ERROR = "OSError: [Errno 98] Address already in use"


@pytest.mark.parametrize(
    ("returncode", "answering", "running_s", "tail", "expected"),
    [
        # A process that runs: starting until it answers or the grace period ends.
        (None, False, 0.0, None, NodeState("starting")),
        (None, False, GRACE_S, None, NodeState("starting")),
        (None, True, 0.1, None, NodeState("running")),
        (None, True, 1000.0, None, NodeState("running")),
        (
            None,
            False,
            GRACE_S + 0.5,
            None,
            NodeState("unreachable", "unreachable: no answer to /status after 10 s"),
        ),
        # An exited process is exited whatever answers on its port (another cluster's node).
        (1, False, 0.2, BIND_ERROR, NodeState("exited", f"exited 1: {BIND_ERROR}")),
        (1, True, 0.2, BIND_ERROR, NodeState("exited", f"exited 1: {BIND_ERROR}")),
        (1, True, 100.0, None, NodeState("exited", "exited 1")),
        (0, False, 100.0, None, NodeState("exited", "exited 0")),
        (-signal.SIGKILL, True, 100.0, "irrelevant", NodeState("exited", "killed by SIGKILL")),
        (-signal.SIGTERM, False, 3.0, None, NodeState("exited", "killed by SIGTERM")),
    ],
)
def test_node_state_for_every_combination(
    returncode: int | None, answering: bool, running_s: float, tail: str | None, expected: NodeState
) -> None:
    assert node_state(returncode, answering, running_s, tail, grace_s=GRACE_S) == expected


def test_the_label_is_the_detail_or_the_kind_and_the_short_one_fits_a_cell() -> None:
    assert NodeState("starting").label == NodeState("starting").short == "starting"
    killed = NodeState("exited", "killed by SIGKILL")
    assert killed.label == killed.short == "killed by SIGKILL"
    failed = NodeState("exited", f"exited 1: {BIND_ERROR}")
    assert (failed.label, failed.short) == (f"exited 1: {BIND_ERROR}", "exited 1")
    assert NodeState("unreachable", "unreachable: no answer to /status after 20 s").short == "unreachable"


def test_an_unknown_signal_number_is_still_described() -> None:
    assert describe_exit(-200, None) == "killed by signal 200"


def test_last_line_is_this_runs_last_non_empty_line_without_the_command_prefix(tmp_path: Path) -> None:
    output = tmp_path / "stderr.log"
    output.write_text("bft node: crashed: an earlier run\n")
    offset = output.stat().st_size
    assert last_line(output, offset) is None, "nothing written by this run yet"
    with output.open("a") as f:
        f.write(
            "Traceback (most recent call last):\n  ...\nbft node: crashed: OSError: [Errno 98] in use\n\n  \n"
        )
    assert last_line(output, offset) == "crashed: OSError: [Errno 98] in use"
    assert last_line(tmp_path / "missing.log") is None


def test_the_cluster_exit_status() -> None:
    assert cluster_exit_status([], [0, 0, 0, 0], interrupted_again=False) == EXIT_OK
    assert cluster_exit_status([], [0, 0, None, 0], interrupted_again=False) == EXIT_OK
    # A node that exited during the run, non-zero or by a signal, fails the cluster.
    assert cluster_exit_status([1], [0, 0, 0], interrupted_again=False) == EXIT_NODE_FAILED
    assert cluster_exit_status([-signal.SIGKILL], [0, 0, 0], interrupted_again=False) == EXIT_NODE_FAILED
    # ... but one that stopped cleanly (exit 0, someone's SIGTERM) does not.
    assert cluster_exit_status([0], [0, 0, 0], interrupted_again=False) == EXIT_OK
    # A node that did not stop cleanly on the cluster's SIGTERM fails it too.
    assert cluster_exit_status([], [0, -signal.SIGKILL, 0, 0], interrupted_again=False) == EXIT_NODE_FAILED
    # A second Ctrl-C kills the nodes still running: the stop was interrupted.
    assert cluster_exit_status([], [-signal.SIGKILL] * 4, interrupted_again=True) == EXIT_INTERRUPTED
    assert cluster_exit_status([1], [0], interrupted_again=True) == EXIT_INTERRUPTED


def test_a_second_holder_of_the_home_lock_is_refused_with_the_home_and_the_pid(tmp_path: Path) -> None:
    home = tmp_path / "cluster"
    with hold_home_lock(home) as lock:
        assert lock.read_text().strip() == str(os.getpid())
        # flock locks belong to an open file, so a second open in this process conflicts too.
        with pytest.raises(ClusterRefused) as refused, hold_home_lock(home):
            pytest.fail("the lock was taken twice")
        message = str(refused.value)
        assert str(home) in message and f"pid {os.getpid()}" in message, message
    # Released on exit: it can be taken again.
    with hold_home_lock(home):
        pass


def test_a_lock_file_left_by_a_killed_cluster_does_not_block(tmp_path: Path) -> None:
    home = tmp_path / "cluster"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from bft.node.cluster_lock import hold_home_lock\n"
            "with hold_home_lock(Path(sys.argv[1])):\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(home),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ClusterRefused, match=f"pid {holder.pid}"), hold_home_lock(home):
            pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()
    assert (home / "cluster.lock").read_text().strip() == str(holder.pid), "the stale file stays"
    with hold_home_lock(home) as lock:
        assert lock.read_text().strip() == str(os.getpid())


def test_a_taken_port_is_named() -> None:
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        free.bind(("127.0.0.1", 0))
        free_port = free.getsockname()[1]
        free.close()
        port = taken.getsockname()[1]
        listens = [Listen("node 0 p2p", "127.0.0.1", free_port), Listen("node 0 API", "127.0.0.1", port)]
        with pytest.raises(ClusterRefused) as refused:
            check_ports_free(listens)
        message = str(refused.value)
        assert f"127.0.0.1:{port} (node 0 API)" in message and "in use" in message, message
        check_ports_free(listens[:1])
