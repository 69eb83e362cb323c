"""Harness of the cluster tests: real `bft` node processes on 127.0.0.1, driven as a black box.

Owns: free ports, `bft testnet` into a temporary directory, starting, signalling, killing and
restarting `bft node` processes, polling their HTTP API, condition waits with deadlines, chain
comparison, and cleanup that leaves no process behind.
May not: import the node's code; everything goes through the command line, the HTTP API,
the node's log file and /proc, as a user of the node would see it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

T = TypeVar("T")

LOCALHOST = "127.0.0.1"
HTTP_TIMEOUT_S = 0.5
# A node that gets SIGTERM has a few seconds to stop cleanly; past this it is a test failure.
STOP_TIMEOUT_S = 10.0
START_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline."""


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = POLL_INTERVAL_S,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns a truthy value (not None, False, 0 or empty) and return it.

    Fails with a message naming `what` (and `diagnose()`, if given) once `timeout_s` has passed.
    The number of polls is bounded by the deadline and by an explicit count.
    """
    deadline = time.monotonic() + timeout_s
    max_polls = int(timeout_s / interval_s) + 10
    last: T | None = None
    for _ in range(max_polls):
        last = predicate()
        if last:
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval_s, remaining))
    detail = f"; {diagnose()}" if diagnose is not None else ""
    raise WaitTimeout(f"timed out after {timeout_s:.1f} s waiting for {what} (last value {last!r}){detail}")


# Ports.


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_base_port(count: int, attempts: int = 200) -> int:
    """A base port P such that P .. P+count-1 are all free on 127.0.0.1 right now.

    Candidates come from below the kernel's ephemeral range when there is room, so that the
    nodes' own outgoing connections (which take ephemeral source ports) cannot occupy the
    listen port of a node that is down for a restart; otherwise from a port-0 bind.
    """
    low, _high = _ephemeral_range()
    rng = random.Random()
    for attempt in range(attempts):
        if low - count > 20000 and attempt < attempts // 2:
            base = rng.randrange(20000, low - count)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOCALHOST, 0))
                base = s.getsockname()[1]
            if base + count > 65535:
                continue
        if all(_port_is_free(base + k) for k in range(count)):
            return base
    raise RuntimeError(f"no run of {count} free ports found on {LOCALHOST} in {attempts} attempts")


# HTTP.


def http_get(port: int, path: str, timeout_s: float = HTTP_TIMEOUT_S) -> tuple[int, Any]:
    """GET http://127.0.0.1:<port><path>: (status, decoded JSON body), or (0, None) if the
    node did not answer in time or the body was not JSON."""
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        return response.status, json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        conn.close()


# /proc.


def vm_rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def pids_with_cmdline_containing(text: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains `text`, this process excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def run_bft(args: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `python -m bft ARGS` to completion; fail on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "bft", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"bft {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


# Nodes and clusters.


def _port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[1])


@dataclass
class NodeProcess:
    index: int
    home: Path
    byzantine: str | None
    p2p_port: int
    api_port: int
    popen: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = None
    # Exits the test caused (kill -9, a signal); any other exit is a crash.
    expected_exit: bool = False
    starts: int = 0

    @property
    def log_file(self) -> Path:
        return self.home / "node.log"

    @property
    def output_file(self) -> Path:
        return self.home / f"process-{self.starts}.out"

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"node {self.index} was never started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def close_output(self) -> None:
        if self.output is not None:
            self.output.close()
            self.output = None


@dataclass
class Cluster:
    """`nodes` validators written by `bft testnet` under `root`; node i is Byzantine if in `byzantine`;
    the genesis has the `commit_chain` rule (3: chained HotStuff's three-chain, 2: Jolteon's two-chain)
    and runs the quorum store if `quorum_store` (`bft testnet --quorum-store`), leader reputation if
    `leader_reputation` (`--leader-reputation`), state sync if `state_sync` (`--state-sync`)."""

    root: Path
    nodes: int
    byzantine: Mapping[int, str] = field(default_factory=dict)
    procs: list[NodeProcess] = field(default_factory=list)
    commit_chain: int = 3
    quorum_store: bool = False
    leader_reputation: bool = False
    state_sync: bool = False

    def __post_init__(self) -> None:
        base = free_base_port(2 * self.nodes)
        where = ["--nodes", str(self.nodes), "--out", str(self.root), "--base-port", str(base)]
        data_path = ["--quorum-store"] if self.quorum_store else []
        data_path += ["--leader-reputation"] if self.leader_reputation else []
        data_path += ["--state-sync"] if self.state_sync else []
        run_bft(["testnet", *where, "--commit-chain", str(self.commit_chain), *data_path])
        self.procs = []
        for i in range(self.nodes):
            home = self.root / f"node{i}"
            config = tomllib.loads((home / "config.toml").read_text())
            self.procs.append(
                NodeProcess(
                    i,
                    home,
                    self.byzantine.get(i),
                    p2p_port=_port_of(config["p2p"]["listen"]),
                    api_port=_port_of(config["api"]["listen"]),
                )
            )

    @property
    def all(self) -> list[int]:
        return list(range(self.nodes))

    @property
    def honest(self) -> list[int]:
        return [i for i in range(self.nodes) if i not in self.byzantine]

    # Processes.

    def start(self, i: int, *, state_sync: bool = False, args: Sequence[str] = ()) -> None:
        """Start node i (`bft node`; with `--state-sync` if `state_sync`, then `args`)."""
        node = self.procs[i]
        assert not node.running(), f"node {i} is already running"
        node.close_output()
        node.starts += 1
        cmd = [sys.executable, "-m", "bft", "node", "--home", str(node.home)]
        cmd += ["--state-sync"] if state_sync else []
        cmd += list(args)
        if node.byzantine is not None:
            cmd += ["--byzantine", node.byzantine]
        node.output = node.output_file.open("wb")
        node.expected_exit = False
        node.popen = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=node.output, stderr=subprocess.STDOUT
        )

    def start_all(self, nodes: Iterable[int] | None = None) -> None:
        for i in self.all if nodes is None else nodes:
            self.start(i)

    def send_signal(self, i: int, signum: int) -> None:
        node = self.procs[i]
        assert node.popen is not None and node.running(), f"node {i} is not running"
        node.expected_exit = True
        node.popen.send_signal(signum)

    def wait_exit(self, i: int, timeout_s: float) -> int | None:
        """The exit code of node i, or None if it is still running after `timeout_s`."""
        popen = self.procs[i].popen
        assert popen is not None
        try:
            return popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, nodes: Iterable[int]) -> None:
        """kill -9 each of `nodes` (back to back, before waiting for any), then reap them."""
        chosen = list(nodes)
        for i in chosen:
            self.send_signal(i, signal.SIGKILL)
        for i in chosen:
            code = self.wait_exit(i, STOP_TIMEOUT_S)
            assert code == -signal.SIGKILL, f"node {i} did not die of SIGKILL (exit {code})"
            self.procs[i].close_output()

    def close(self) -> list[str]:
        """Stop every process (SIGTERM, then SIGKILL past the deadline); the problems seen."""
        problems = []
        for node in self.procs:
            if node.popen is None:
                continue
            code = node.popen.poll()
            if code is not None and not node.expected_exit:
                problems.append(
                    f"node {node.index} exited by itself with {code}:\n{self.describe_node(node)}"
                )
            if code is None:
                node.expected_exit = True
                node.popen.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for node in self.procs:
            if node.popen is None or node.popen.returncode is not None:
                node.close_output()
                continue
            try:
                code = node.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                if code != 0:
                    problems.append(
                        f"node {node.index} exited {code} after SIGTERM:\n{self.describe_node(node)}"
                    )
            except subprocess.TimeoutExpired:
                node.popen.kill()
                node.popen.wait(timeout=STOP_TIMEOUT_S)
                problems.append(f"node {node.index} did not stop within {STOP_TIMEOUT_S} s of SIGTERM")
            node.close_output()
        return problems

    def check_alive(self, nodes: Iterable[int] | None = None) -> None:
        """Fail at once, with its output and log, if a node the test did not stop has exited."""
        for i in self.all if nodes is None else nodes:
            node = self.procs[i]
            if node.popen is not None and not node.expected_exit and node.popen.poll() is not None:
                raise AssertionError(
                    f"node {i} exited unexpectedly with {node.popen.returncode}:\n{self.describe_node(node)}"
                )

    def describe_node(self, node: NodeProcess) -> str:
        return (
            f"--- node {node.index} output ({node.output_file}):\n{tail(node.output_file)}\n"
            f"--- node {node.index} log ({node.log_file}):\n{tail(node.log_file)}"
        )

    def describe(self) -> str:
        parts = []
        for node in self.procs:
            state = "never started" if node.popen is None else "running" if node.running() else "exited"
            status = self.status(node.index) if node.running() else None
            summary = (
                f"height={status['height']} view={status['view']} peers={status['peers']}"
                if status is not None
                else "no /status"
            )
            parts.append(f"node {node.index} ({node.byzantine or 'honest'}, {state}): {summary}")
        return "; ".join(parts)

    # API.

    def status(self, i: int) -> dict[str, Any] | None:
        code, body = http_get(self.procs[i].api_port, "/status")
        return body if code == 200 and isinstance(body, dict) else None

    def height(self, i: int) -> int | None:
        status = self.status(i)
        return int(status["height"]) if status is not None else None

    def heights(self, nodes: Iterable[int]) -> dict[int, int | None]:
        return {i: self.height(i) for i in nodes}

    def block(self, i: int, height: int) -> dict[str, Any] | None:
        """Node i's committed block at `height`, or None on 404; retries a node that is slow to answer."""
        port = self.procs[i].api_port
        for _ in range(20):
            code, body = http_get(port, f"/blocks/{height}", timeout_s=2.0)
            if code == 200 and isinstance(body, dict):
                return body
            if code == 404:
                return None
            self.check_alive([i])
        raise AssertionError(f"node {i} did not answer GET /blocks/{height} (last status {code})")

    def log_lines(self, i: int) -> list[str]:
        try:
            return self.procs[i].log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    # Waits.

    def wait(
        self,
        predicate: Callable[[], T | None],
        timeout_s: float,
        what: str,
        nodes: Iterable[int] | None = None,
    ) -> T:
        """`wait_until`, failing early if one of `nodes` (default: all) crashes."""
        watched = self.all if nodes is None else list(nodes)

        def check() -> T | None:
            self.check_alive(watched)
            return predicate()

        return wait_until(check, timeout_s, what, interval_s=0.1, diagnose=self.describe)

    def wait_up(self, nodes: Iterable[int] | None = None, timeout_s: float = START_TIMEOUT_S) -> None:
        chosen = self.all if nodes is None else list(nodes)
        self.wait(
            lambda: all(self.status(i) is not None for i in chosen),
            timeout_s,
            f"/status of nodes {chosen} to answer",
            chosen,
        )

    def wait_heights(
        self, nodes: Iterable[int], at_least: int, timeout_s: float, what: str = ""
    ) -> dict[int, int]:
        """Wait until every one of `nodes` has committed height >= `at_least`; their heights then."""
        chosen = list(nodes)

        def reached() -> dict[int, int] | None:
            found = self.heights(chosen)
            if all(h is not None and h >= at_least for h in found.values()):
                return {i: h for i, h in found.items() if h is not None}
            return None

        label = what or f"nodes {chosen} to reach committed height {at_least}"
        return self.wait(reached, timeout_s, label, chosen)

    def min_height(self, nodes: Iterable[int], timeout_s: float = 10.0) -> int:
        """The lowest committed height of `nodes`, waiting (up to `timeout_s`) for each to answer."""
        chosen = list(nodes)

        def read() -> list[int] | None:
            found = self.heights(chosen)
            values = [h for h in found.values() if h is not None]
            return values if len(values) == len(chosen) else None

        return min(self.wait(read, timeout_s, f"/status heights of nodes {chosen}", chosen))


class MakeCluster(Protocol):
    """The `make_cluster` fixture: a fresh testnet whose processes are stopped at teardown."""

    def __call__(
        self,
        nodes: int = 4,
        byzantine: Mapping[int, str] | None = None,
        *,
        commit_chain: int = 3,
        quorum_store: bool = False,
        leader_reputation: bool = False,
        state_sync: bool = False,
    ) -> Cluster: ...


def assert_same_chain(cluster: Cluster, nodes: Sequence[int], heights: Iterable[int]) -> dict[int, str]:
    """Every one of `nodes` has the same committed block at every height in `heights`, and each
    node's blocks link up (parent id = id one height below) wherever consecutive heights are
    checked. Returns height -> block id."""
    wanted = sorted(set(heights))
    assert wanted and wanted[0] >= 1, f"bad heights to compare: {wanted[:5]}..."
    ids: dict[int, str] = {}
    for i in nodes:
        previous: dict[str, Any] | None = None
        for h in wanted:
            block = cluster.block(i, h)
            assert block is not None, f"node {i} has no committed block at height {h} (404)"
            assert block["height"] == h, f"node {i}: /blocks/{h} returned height {block['height']}"
            if h in ids:
                assert block["id"] == ids[h], (
                    f"chains differ at height {h}: node {nodes[0]} has {ids[h]}, node {i} has {block['id']}"
                )
            else:
                ids[h] = block["id"]
            if previous is not None and previous["height"] == h - 1:
                assert block["parent_id"] == previous["id"], (
                    f"node {i}: block {h} has parent {block['parent_id']}, "
                    f"but block {h - 1} is {previous['id']}"
                )
            previous = block
    return ids


def height_window(top: int, size: int, bottom: int = 1) -> range:
    """The `size` heights ending at `top` (not below `bottom`)."""
    return range(max(bottom, top - size + 1), top + 1)


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send `data`; False if the peer has already closed or reset the connection."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def close_all(socks: Iterable[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


def set_consensus(cluster: Cluster, **settings: float | int) -> None:
    """Rewrite keys of the [consensus] table in every node's config.toml (before starting them):
    every node of a cluster must use the same settings."""
    set_table(cluster, "consensus", **settings)


def set_table(cluster: Cluster, name: str, **settings: float | int) -> None:
    """Rewrite keys of the table `[name]` in every node's config.toml (before starting them),
    adding the table if it is missing. Checks that the file reads back so."""
    header = f"[{name}]"
    for node in cluster.procs:
        path = node.home / "config.toml"
        text = path.read_text()
        if header not in text.splitlines():
            text += f"\n{header}\n"
        head, _, rest = text.partition(header + "\n")
        table, bracket, tail_tables = rest.partition("\n[")  # the table ends at the next header
        for key, value in settings.items():
            line = f"{key} = {value!r}"
            table, found = re.subn(rf"(?m)^{re.escape(key)} = .*$", line, table, count=1)
            if not found:
                table = table.rstrip("\n") + f"\n{line}\n"
        path.write_text(head + header + "\n" + table + bracket + tail_tables)
        written = tomllib.loads(path.read_text())[name]
        assert all(written[k] == v for k, v in settings.items()), f"{path}: {header} is {written}"
