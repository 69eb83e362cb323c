"""The hostile-connection loop against a local listener whose behaviour the test controls: every
slot opens, misbehaves as its kind says, is counted as closed by the node when the listener closes
it, and reopens; connections still open at the end are counted as such."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from bft.attack.hostile import HostilePlan, new_tallies, run_hostile

LOCALHOST = "127.0.0.1"


@dataclass
class Listener:
    """Accepts on 127.0.0.1 and closes each connection `close_after_s` after accepting it (never,
    if None), recording the bytes each one sent."""

    close_after_s: float | None
    port: int = 0
    received: list[bytearray] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _serve(listener: Listener, server: socket.socket, stop: threading.Event) -> None:
    server.settimeout(0.05)
    open_: list[tuple[float, socket.socket, bytearray]] = []
    while not stop.is_set():
        try:
            conn, _ = server.accept()
            conn.setblocking(False)
            buffer = bytearray()
            with listener.lock:
                listener.received.append(buffer)
            open_.append((time.monotonic(), conn, buffer))
        except TimeoutError:
            pass
        now = time.monotonic()
        for item in list(open_):
            accepted_at, conn, buffer = item
            try:
                while data := conn.recv(4096):
                    with listener.lock:
                        buffer.extend(data)
            except BlockingIOError:
                pass
            except OSError:
                pass
            if listener.close_after_s is not None and now - accepted_at >= listener.close_after_s:
                conn.close()
                open_.remove(item)
    for _, conn, _ in open_:
        conn.close()


@contextmanager
def listening(close_after_s: float | None) -> Iterator[Listener]:
    listener = Listener(close_after_s)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind((LOCALHOST, 0))
    server.listen(512)
    listener.port = server.getsockname()[1]
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, server, stop), daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(5.0)
        server.close()


def test_slots_reopen_after_the_node_closes_them() -> None:
    with listening(close_after_s=0.2) as listener:
        plan = HostilePlan(
            slots={"preauth": 20, "idle-sse": 20},
            duration_s=1.5,
            p2p=(LOCALHOST, listener.port),
            api=(LOCALHOST, listener.port),
            reopen_pause_s=0.05,
        )
        tallies = new_tallies(plan)
        run_hostile(plan, tallies)
    for kind, tally in tallies.items():
        # Each slot holds about 0.2 s, pauses 0.05 s: several connections per slot in 1.5 s.
        assert tally.opened >= 3 * tally.slots, (kind, tally)
        assert tally.closed_by_node >= 2 * tally.slots, (kind, tally)
        assert tally.closed_by_node + tally.open_at_end == tally.opened, (kind, tally)
        assert tally.held_s_max < 1.0, (kind, tally)
    with listener.lock:
        sse_requests = sum(1 for buffer in listener.received if buffer.startswith(b"GET /events"))
    assert sse_requests >= tallies["idle-sse"].opened - tallies["idle-sse"].slots


def test_trickle_sends_one_byte_per_interval_and_counts_open_connections_at_the_end() -> None:
    with listening(close_after_s=None) as listener:
        plan = HostilePlan(
            slots={"slow-body": 5},
            duration_s=1.25,
            api=(LOCALHOST, listener.port),
            trickle_s=0.1,
        )
        tallies = new_tallies(plan)
        run_hostile(plan, tallies)
        time.sleep(0.1)
        with listener.lock:
            received = [bytes(buffer) for buffer in listener.received]
    tally = tallies["slow-body"]
    assert tally.opened == 5 and tally.open_at_end == 5 and tally.closed_by_node == 0, tally
    assert tally.held_s_max >= 1.0, tally
    for data in received:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"POST /txs") and b"Content-Length: 1048576" in head, head
        # About 12 intervals in 1.25 s; a loaded machine may run late, never early.
        assert 5 <= len(body) <= 13, body
        assert b'{"txs": ["'.startswith(body[:10]), body


def test_refused_connects_are_counted_and_retried() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind((LOCALHOST, 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on `port` now
    plan = HostilePlan(slots={"preauth": 3}, duration_s=0.5, p2p=(LOCALHOST, port))
    tallies = new_tallies(plan)
    run_hostile(plan, tallies)
    tally = tallies["preauth"]
    assert tally.opened == 0 and tally.connect_failed >= 3 * 3, tally


def test_a_ctrl_c_that_lands_inside_a_close_ends_the_attack_with_a_keyboard_interrupt_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C (KeyboardInterrupt) can land anywhere; here just after a socket was closed and
    before the loop forgot it. The clean-up must still close every socket and let the
    KeyboardInterrupt through (`bft` turns it into one line), not fail on the half-forgotten one."""
    real_close = socket.socket.close
    loop_thread = threading.current_thread()
    interrupted: list[socket.socket] = []

    def close_then_interrupt(sock: socket.socket) -> None:
        real_close(sock)
        if threading.current_thread() is loop_thread and not interrupted:
            interrupted.append(sock)
            raise KeyboardInterrupt

    with listening(close_after_s=0.1) as listener:
        plan = HostilePlan(
            slots={"preauth": 5},
            duration_s=5.0,
            p2p=(LOCALHOST, listener.port),
            api=(LOCALHOST, listener.port),
            reopen_pause_s=0.05,
        )
        monkeypatch.setattr(socket.socket, "close", close_then_interrupt)
        with pytest.raises(KeyboardInterrupt) as caught:
            run_hostile(plan, new_tallies(plan))
        monkeypatch.undo()
    assert interrupted, "no socket was closed by the loop"
    assert caught.value.__context__ is None, f"the clean-up failed: {caught.value.__context__!r}"
