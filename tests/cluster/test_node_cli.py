"""`bft node` as a user runs it by hand: one line saying where it listens and logs, and Ctrl-C
twice (a second SIGINT while it stops) ends it with one line and exit 130, never a traceback."""

from __future__ import annotations

import functools
import signal
from pathlib import Path

from cluster_helpers import STOP_TIMEOUT_S, MakeCluster, tail, wait_until

# A second SIGINT can only be tested while the node is still stopping; if it stopped first, the
# run is repeated (a bounded number of times).
ATTEMPTS = 3


def test_bft_node_prints_where_it_listens(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(nodes=1)
    cluster.start(0)
    node = cluster.procs[0]
    expected = (
        f"node 0: p2p 127.0.0.1:{node.p2p_port}, API http://127.0.0.1:{node.api_port}, log {node.log_file}"
    )
    wait_until(
        lambda: expected in node.output_file.read_text(errors="replace"),
        30.0,
        "bft node to print where it listens",
        diagnose=lambda: cluster.describe_node(node),
    )
    # Printed once the listeners are bound: the API answers.
    cluster.wait_up([0])


def test_ctrl_c_twice_stops_bft_node_with_one_line_and_exit_130(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(nodes=1)
    node = cluster.procs[0]
    for attempt in range(ATTEMPTS):
        cluster.start(0)
        cluster.wait_up([0])
        log_size = node.log_file.stat().st_size
        cluster.send_signal(0, signal.SIGINT)
        # The node logs event=shutdown when it takes the first signal: the second is then a
        # second one, not merged with the first.
        wait_until(
            functools.partial(_logged_since, node.log_file, log_size, "event=shutdown"),
            10.0,
            "the node to start stopping",
            interval_s=0.002,
            diagnose=lambda: cluster.describe_node(node),
        )
        popen = node.popen
        assert popen is not None
        if popen.poll() is not None:
            assert popen.returncode == 0, f"exit {popen.returncode} after one SIGINT"
            continue
        popen.send_signal(signal.SIGINT)
        code = cluster.wait_exit(0, STOP_TIMEOUT_S)
        node.close_output()
        output = node.output_file.read_text(errors="replace")
        assert "Traceback" not in output, tail(node.output_file, 40)
        if code == 0 and "interrupted again" not in output:
            continue  # it had stopped before the second signal arrived
        assert code == 130, (
            f"exit {code} after two SIGINTs (attempt {attempt}):\n{cluster.describe_node(node)}"
        )
        assert "bft: interrupted again, stopping now" in output, output
        lines = node.log_file.read_bytes()[log_size:].decode(errors="replace").splitlines()
        assert any("event=stopped" in line for line in lines), f"the stores were not closed: log {lines}"
        return
    raise AssertionError(f"the node stopped before a second SIGINT could reach it, {ATTEMPTS} times")


def _logged_since(log_file: Path, offset: int, text: str) -> bool:
    return text in log_file.read_bytes()[offset:].decode(errors="replace")
