"""A full API never takes the node's descriptors: a real `bft node` process of a one-validator
chain, started with RLIMIT_NOFILE lowered to 320 (soft and hard, so it cannot raise it), gets 400
connections at once. The API serves what fits above the 256 reserved descriptors (64), refuses the
rest at once with a 503, counts and logs them, and the node goes on committing and writing its
safety record; once the connections go, the API serves again and the node stops cleanly.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from bft.node.api_server import RESERVED_DESCRIPTORS

T = TypeVar("T")
LOCALHOST = "127.0.0.1"
DESCRIPTOR_LIMIT = 320
CAP = DESCRIPTOR_LIMIT - RESERVED_DESCRIPTORS
CONNECTIONS = 400
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def _until(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.05) + 10):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _free_base_port() -> int:
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(30000, 60000)
        try:
            for port in (base, base + 1):
                with socket.socket() as s:
                    s.bind((LOCALHOST, port))
        except OSError:
            continue
        return base
    raise AssertionError("no two free ports")


def _get(port: int, path: str) -> tuple[int, bytes] | None:
    try:
        conn = http.client.HTTPConnection(LOCALHOST, port, timeout=1.0)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
    except OSError:
        return None


def _ok(answer: tuple[int, bytes] | None) -> bool:
    return answer is not None and answer[0] == 200


def _limit_descriptors() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTOR_LIMIT, DESCRIPTOR_LIMIT))


def _heights(log_file: Path) -> list[int]:
    return [int(h) for h in re.findall(r"event=commit node=0 height=(\d+)", log_file.read_text())]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    base = _free_base_port()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bft",
            "testnet",
            "--nodes",
            "1",
            "--out",
            str(tmp_path),
            "--base-port",
            str(base),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    home = tmp_path / "node0"
    with (home / "process.out").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bft", "node", "--home", str(home)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_descriptors,
        )
        try:
            yield proc, home, base + 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)


def test_a_full_api_leaves_the_node_its_descriptors(node: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    proc, home, api_port = node
    _until(lambda: _get(api_port, "/status"), START_TIMEOUT_S, "the API")
    log_file = home / "node.log"
    assert f"max_connections={CAP} descriptor_limit={DESCRIPTOR_LIMIT}" in log_file.read_text()
    safety_record = home / "data" / "safety_state.cbor"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CONNECTIONS + 64:  # this process holds the client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, CONNECTIONS + 256), hard))
    clients: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            clients.append(socket.create_connection((LOCALHOST, api_port), timeout=5.0))
        # Refused ones get their 503 at once; served ones wait for a request (no answer).
        time.sleep(1.0)
        refused = held = 0
        for client in clients:
            client.setblocking(False)
            try:
                data = client.recv(4096)
            except BlockingIOError:
                held += 1
                continue
            assert data.startswith(b"HTTP/1.1 503"), data[:200]
            assert json.loads(data.partition(b"\r\n\r\n")[2]) == {"error": "too many connections"}
            refused += 1
        assert (held, refused) == (CAP, CONNECTIONS - CAP)

        # With every API place taken, the node still commits and writes its safety record.
        height = _heights(log_file)[-1]
        written = safety_record.stat().st_mtime_ns
        _until(lambda: _heights(log_file)[-1] >= height + 5, 15.0, "five more commits")
        _until(lambda: safety_record.stat().st_mtime_ns != written, 15.0, "a new safety record")
        assert proc.poll() is None
        assert _get(api_port, "/status") is not None  # answered, by a 503: the API is full
    finally:
        for client in clients:
            client.close()

    _until(lambda: _ok(_get(api_port, "/status")), 10.0, "a 200 once the connections went")
    metrics = _until(lambda: _get(api_port, "/metrics"), 10.0, "the metrics")
    found = re.search(rb"^bft_api_connections_refused_total (\S+)$", metrics[1], re.M)
    assert found is not None and float(found.group(1)) >= CONNECTIONS - CAP
    text = log_file.read_text()
    assert "event=api_connection_refused" in text
    assert "event=api_accept_failed" not in text, "accept never ran out of descriptors"
    assert "event=crashed" not in text and "level=error" not in text

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_TIMEOUT_S) == 0
