"""Hostile connections: strangers on a node's p2p port and clients that never finish or never read.

Owns: the kinds of hostile connection (`KINDS`), the connection slots (each opens a connection,
misbehaves on it until the node closes it or the attack ends, and opens the next one after
`reopen_pause_s`), and the tally of what the node did to each kind (`KindTally`: how many were
opened, how many the node closed, how long the longest was held).
May not: import the node's runtime or the protocol core; it sends raw bytes over TCP, as an
attacker with no key would.

Why one epoll loop over non-blocking sockets, not a trio task per slot: the attacker shares the
machine with the cluster it measures. With a task per slot it spent 43-46% of a core on its own
scheduling (reconnects, per-byte timers, polling unread connections every 0.25 s), and that CPU
came out of the honest nodes' share, not the attacked node's defences. Here a slot costs a few
system calls per event and nothing while it waits: a connection that never reads waits for the
node's close in the kernel (EPOLLRDHUP), not in a poll loop.

The kinds, and the resource each one tries to hold:
- `preauth`: a p2p connection that sends nothing (a pending-handshake slot);
- `preauth-trickle`: a handshake frame's length prefix, then a byte every `trickle_s` (the same,
  against a deadline that only counts silence);
- `slow-headers`: an HTTP request whose header lines come a byte every `trickle_s`;
- `slow-body`: a POST /txs announcing a 1 MiB body sent a byte every `trickle_s`;
- `idle-sse`: GET /events and never read (a subscriber, its task and its buffers);
- `unread-blocks`: GET /blocks/<height> pipelined and never read (answers held in memory).
A node that holds up closes each of them within its deadlines; `held_s_max` shows it.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import math
import resource
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

PREAUTH: Final = "preauth"
PREAUTH_TRICKLE: Final = "preauth-trickle"
SLOW_HEADERS: Final = "slow-headers"
SLOW_BODY: Final = "slow-body"
IDLE_SSE: Final = "idle-sse"
UNREAD_BLOCKS: Final = "unread-blocks"
P2P_KINDS: Final = (PREAUTH, PREAUTH_TRICKLE)
API_KINDS: Final = (SLOW_HEADERS, SLOW_BODY, IDLE_SSE, UNREAD_BLOCKS)
KINDS: Final = P2P_KINDS + API_KINDS

CONNECT_TIMEOUT_S: Final = 5.0
# After a failed connect, the slot waits this long before the next try.
RETRY_PAUSE_S: Final = 0.05
# The longest the loop sleeps in one wait (so that a stop request is seen this soon).
_MAX_WAIT_S: Final = 0.1
# Pipelined block requests per `unread-blocks` connection.
PIPELINED_REQUESTS: Final = 32
SLOW_BODY_BYTES: Final = 1024 * 1024
# A small receive buffer makes a connection that never reads push back on the node sooner.
SMALL_RCVBUF_BYTES: Final = 4096
# A plausible handshake frame's length prefix (the first bytes an honest dialer sends).
_TRICKLE_PREFIX: Final = (200).to_bytes(4, "big")

Address = tuple[str, int]


@dataclass(slots=True)
class KindTally:
    """What happened to the connections of one kind (a mutable tally the tasks update)."""

    slots: int
    opened: int = 0
    connect_failed: int = 0
    closed_by_node: int = 0
    answered: int = 0
    open_at_end: int = 0
    held_s_total: float = 0.0
    held_s_max: float = 0.0

    def on_held(self, held_s: float, closed_by_node: bool) -> None:
        self.held_s_total += held_s
        self.held_s_max = max(self.held_s_max, held_s)
        if closed_by_node:
            self.closed_by_node += 1
        else:
            self.open_at_end += 1

    def summary(self) -> dict[str, float | int]:
        held = self.closed_by_node + self.open_at_end
        return {
            "slots": self.slots,
            "opened": self.opened,
            "connect_failed": self.connect_failed,
            "closed_by_node": self.closed_by_node,
            "answered": self.answered,
            "open_at_end": self.open_at_end,
            "held_s_max": round(self.held_s_max, 2),
            "held_s_mean": round(self.held_s_total / held, 2) if held else 0.0,
        }


@dataclass(frozen=True, slots=True)
class HostilePlan:
    """Which connections to hold against which node, for how long.

    `slots` maps a kind to the number of connections of that kind held at once; `sources`, when
    the target is on loopback, spreads connections over that many source addresses 127.0.0.2...
    (so a per-address cap sees several strangers); `block_height` is the height `unread-blocks`
    asks for (a large block makes a large answer); `reopen_pause_s` is how long a slot waits
    after the node closed its connection before it opens the next (the churn rate)."""

    slots: Mapping[str, int]
    duration_s: float
    p2p: Address | None = None
    api: Address | None = None
    trickle_s: float = 1.0
    sources: int = 0
    block_height: int = 1
    reopen_pause_s: float = 0.1

    def __post_init__(self) -> None:
        unknown = set(self.slots) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
        if any(kind in P2P_KINDS for kind in self.slots) and self.p2p is None:
            raise ValueError("p2p kinds need the node's p2p address")
        if any(kind in API_KINDS for kind in self.slots) and self.api is None:
            raise ValueError("API kinds need the node's API address")
        if not 0 < self.duration_s < math.inf or self.trickle_s <= 0 or self.reopen_pause_s < 0:
            raise ValueError("duration and trickle interval must be positive and finite")


def raise_descriptor_limit(needed: int) -> int:
    """Raise this process's soft descriptor limit towards `needed` (up to the hard limit); the
    soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


def _source_address(host: str, slot: int, sources: int) -> str | None:
    if sources <= 0:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if not address.is_loopback or address.version != 4:
        return None
    return f"127.0.0.{2 + slot % sources}"


def _request(method: str, path: str, headers: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: node\r\n{headers}".encode("ascii")


@dataclass(frozen=True, slots=True)
class _Script:
    """What a kind sends: `head` once connected, then (if `filler`) one byte of it every
    `trickle_s`; `reads`: whether it reads (and drops) what the node sends."""

    head: bytes
    filler: bytes = b""
    reads: bool = True


def _script(kind: str, plan: HostilePlan) -> _Script:
    if kind == PREAUTH:
        return _Script(b"")
    if kind == PREAUTH_TRICKLE:
        return _Script(_TRICKLE_PREFIX, b"\x00")
    if kind == SLOW_HEADERS:
        return _Script(_request("GET", "/status"), b"X-Slow: aaaaaaaa\r\n")
    if kind == SLOW_BODY:
        head = _request(
            "POST", "/txs", f"Content-Type: application/json\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n"
        )
        return _Script(head, b'{"txs": ["')
    if kind == IDLE_SSE:
        return _Script(_request("GET", "/events", "Accept: text/event-stream\r\n\r\n"), reads=False)
    if kind == UNREAD_BLOCKS:
        one = _request("GET", f"/blocks/{plan.block_height}", "\r\n")
        return _Script(one * PIPELINED_REQUESTS, reads=False)
    raise ValueError(kind)  # pragma: no cover - HostilePlan checks the kinds


@dataclass(slots=True)
class _Slot:
    """One connection slot: its current socket (None between connections) and where it is."""

    kind: str
    address: Address
    source: str | None
    script: _Script
    tally: KindTally
    sock: socket.socket | None = None
    connected: bool = False
    answered: bool = False
    opened_at: float = 0.0
    position: int = 0
    # Bumped on every open and close, so that a timer set for an earlier connection is ignored.
    generation: int = 0
    unsent: bytes = b""


_CLOSED_MASK: Final = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR


@dataclass
class _Loop:
    """The attack: every slot's connection on one epoll, and a heap of timers."""

    plan: HostilePlan
    slots: list[_Slot]
    end_at: float
    epoll: select.epoll = field(default_factory=select.epoll)
    by_fd: dict[int, _Slot] = field(default_factory=dict)
    timers: list[tuple[float, int, int, _Slot, Callable[[_Slot], None]]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def at(self, when: float, slot: _Slot, action: Callable[[_Slot], None]) -> None:
        heapq.heappush(self.timers, (when, next(self._order), slot.generation, slot, action))

    def run(self) -> None:
        try:
            for slot in self.slots:
                self.open(slot)
            while (now := time.monotonic()) < self.end_at:
                while self.timers and self.timers[0][0] <= now:
                    _, _, generation, slot, action = heapq.heappop(self.timers)
                    if generation == slot.generation:
                        action(slot)
                wait = min(_MAX_WAIT_S, self.end_at - now)
                if self.timers:
                    wait = min(wait, max(0.0, self.timers[0][0] - now))
                for fd, events in self.epoll.poll(wait):
                    # A socket closed earlier in this batch is gone from `by_fd`.
                    if (owner := self.by_fd.get(fd)) is not None:
                        self.on_events(owner, events)
        finally:
            for slot in self.slots:
                if slot.sock is not None:
                    self.close(slot, closed_by_node=False, reopen=False)
            self.epoll.close()

    def open(self, slot: _Slot) -> None:
        slot.generation += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # out of descriptors: try again shortly
            self.connect_failed(slot)
            return
        sock.setblocking(False)
        try:
            if not slot.script.reads:
                # A small receive buffer makes a connection that never reads push back sooner.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF_BYTES)
            if slot.source is not None:
                sock.bind((slot.source, 0))
            code = sock.connect_ex(slot.address)
        except OSError:
            code = errno.EADDRNOTAVAIL
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.connect_failed(slot)
            return
        slot.sock, slot.connected, slot.answered, slot.position = sock, False, False, 0
        self.by_fd[sock.fileno()] = slot
        self.epoll.register(sock.fileno(), select.EPOLLOUT | _CLOSED_MASK)
        self.at(time.monotonic() + CONNECT_TIMEOUT_S, slot, self.connect_timed_out)

    def connect_failed(self, slot: _Slot) -> None:
        slot.tally.connect_failed += 1
        slot.generation += 1
        self.at(time.monotonic() + RETRY_PAUSE_S, slot, self.open)

    def connect_timed_out(self, slot: _Slot) -> None:
        if slot.sock is not None and not slot.connected:
            self.forget(slot)
            self.connect_failed(slot)

    def on_events(self, slot: _Slot, events: int) -> None:
        assert slot.sock is not None
        if not slot.connected:
            if events & (select.EPOLLERR | select.EPOLLHUP) or slot.sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_ERROR
            ):
                self.forget(slot)
                self.connect_failed(slot)
                return
            self.on_connected(slot)
            return
        if events & select.EPOLLOUT and slot.unsent:
            self.send(slot, slot.unsent)
            if slot.sock is None:
                return
        if events & select.EPOLLIN and self.drain(slot):
            return
        if slot.sock is not None and events & _CLOSED_MASK and not events & select.EPOLLIN:
            self.close(slot, closed_by_node=True)

    def on_connected(self, slot: _Slot) -> None:
        assert slot.sock is not None
        slot.connected, slot.opened_at = True, time.monotonic()
        slot.tally.opened += 1
        slot.generation += 1  # cancels the connect timer
        self.send(slot, slot.script.head)
        if slot.sock is not None and slot.script.filler:
            self.at(slot.opened_at + self.plan.trickle_s, slot, self.trickle)

    def watch(self, slot: _Slot) -> None:
        assert slot.sock is not None
        mask = _CLOSED_MASK | (select.EPOLLIN if slot.script.reads else 0)
        self.epoll.modify(slot.sock.fileno(), mask | (select.EPOLLOUT if slot.unsent else 0))

    def send(self, slot: _Slot, data: bytes) -> None:
        assert slot.sock is not None
        try:
            sent = slot.sock.send(data) if data else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close(slot, closed_by_node=True)
            return
        slot.unsent = data[sent:]
        self.watch(slot)

    def trickle(self, slot: _Slot) -> None:
        filler = slot.script.filler
        offset = slot.position % len(filler)
        slot.position += 1
        if not slot.unsent:
            self.send(slot, filler[offset : offset + 1])
        if slot.sock is not None:
            self.at(time.monotonic() + self.plan.trickle_s, slot, self.trickle)

    def drain(self, slot: _Slot) -> bool:
        """Read and drop what the node sent; whether that found the connection closed."""
        assert slot.sock is not None
        while True:
            try:
                data = slot.sock.recv(65536)
            except BlockingIOError:
                return False
            except OSError:
                data = b""
            if not data:
                self.close(slot, closed_by_node=True)
                return True
            if not slot.answered:
                slot.answered = True
                slot.tally.answered += 1

    def forget(self, slot: _Slot) -> None:
        """Drop the slot's socket without a tally (a connection that never opened)."""
        assert slot.sock is not None
        fd = slot.sock.fileno()
        # -1 (or no entry): a Ctrl-C cut an earlier forget of this socket short; the clean-up
        # that follows must finish, not fail on it (a closed descriptor left epoll by itself).
        if fd != -1 and self.by_fd.pop(fd, None) is not None:
            self.epoll.unregister(fd)
        slot.sock.close()
        slot.sock, slot.unsent = None, b""
        slot.generation += 1

    def close(self, slot: _Slot, closed_by_node: bool, reopen: bool = True) -> None:
        if slot.connected:
            slot.tally.on_held(time.monotonic() - slot.opened_at, closed_by_node)
        slot.connected = False
        self.forget(slot)
        if reopen:
            self.at(time.monotonic() + self.plan.reopen_pause_s, slot, self.open)


def new_tallies(plan: HostilePlan) -> dict[str, KindTally]:
    """An empty tally for each kind the plan holds connections of."""
    return {kind: KindTally(slots=count) for kind, count in plan.slots.items() if count > 0}


def run_hostile(plan: HostilePlan, tallies: dict[str, KindTally]) -> None:
    """Hold the plan's connections for `duration_s`, counting into `tallies` (`new_tallies`).

    Blocks this thread until the attack ends; an exception (KeyboardInterrupt included) ends it
    early, with every connection still open counted as `open_at_end`."""
    raise_descriptor_limit(sum(plan.slots.values()) + 256)
    slots = []
    for kind, tally in tallies.items():
        address = plan.p2p if kind in P2P_KINDS else plan.api
        assert address is not None
        script = _script(kind, plan)
        slots += [
            _Slot(kind, address, _source_address(address[0], index, plan.sources), script, tally)
            for index in range(tally.slots)
        ]
    _Loop(plan, slots, time.monotonic() + plan.duration_s).run()
