"""Hostile connections: strangers on a node's p2p port and clients that never finish or never read.

Owns: the kinds of hostile connection (`KINDS`), one trio task per connection slot that opens a
connection, misbehaves on it until the node closes it (or the attack ends), and opens the next one
at once, and the tally of what the node did to each kind (`KindTally`: how many were opened, how
many the node closed, how long the longest was held).
May not: import the node's runtime or the protocol core; it sends raw bytes over TCP, as an
attacker with no key would.

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

import contextlib
import ipaddress
import math
import resource
import select
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import trio

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
# How often a connection that never reads checks whether the node closed it.
CLOSED_POLL_S: Final = 0.25
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


def _node_closed(sock: trio.socket.SocketType) -> bool:
    """Whether the node has closed or reset this connection, without reading from it."""
    poller = select.poll()
    mask = select.POLLRDHUP | select.POLLHUP | select.POLLERR
    poller.register(sock.fileno(), mask)
    return any(events & mask for _, events in poller.poll(0))


async def _connect(address: Address, source: str | None, small_rcvbuf: bool) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if small_rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF_BYTES)
        if source is not None:
            await sock.bind((source, 0))
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


def _request(method: str, path: str, headers: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: node\r\n{headers}".encode("ascii")


async def _until_closed(stream: trio.SocketStream, tally: KindTally) -> None:
    """Read (and drop) whatever the node sends until it closes the connection."""
    answered = False
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        if not answered:
            answered = True
            tally.answered += 1


async def _trickle(
    stream: trio.SocketStream, head: bytes, filler: bytes, plan: HostilePlan, tally: KindTally
) -> None:
    """Send `head`, then one byte of `filler` every `trickle_s`, until the node closes or answers."""
    await stream.send_all(head)
    position = 0
    while True:
        with trio.move_on_after(plan.trickle_s):
            await _until_closed(stream, tally)
            return
        await stream.send_all(filler[position % len(filler) : position % len(filler) + 1])
        position += 1


async def _never_read(stream: trio.SocketStream, request: bytes) -> None:
    """Send `request`, never read the answer, return once the node closed the connection."""
    await stream.send_all(request)
    while not _node_closed(stream.socket):
        await trio.sleep(CLOSED_POLL_S)


async def _misbehave(kind: str, stream: trio.SocketStream, plan: HostilePlan, tally: KindTally) -> None:
    """Hold the connection the way `kind` does until the node closes it."""
    if kind == PREAUTH:
        await _until_closed(stream, tally)
    elif kind == PREAUTH_TRICKLE:
        await _trickle(stream, _TRICKLE_PREFIX, b"\x00", plan, tally)
    elif kind == SLOW_HEADERS:
        await _trickle(stream, _request("GET", "/status"), b"X-Slow: aaaaaaaa\r\n", plan, tally)
    elif kind == SLOW_BODY:
        head = _request(
            "POST", "/txs", f"Content-Type: application/json\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n"
        )
        await _trickle(stream, head, b'{"txs": ["', plan, tally)
    elif kind == IDLE_SSE:
        await _never_read(stream, _request("GET", "/events", "Accept: text/event-stream\r\n\r\n"))
    elif kind == UNREAD_BLOCKS:
        one = _request("GET", f"/blocks/{plan.block_height}", "\r\n")
        await _never_read(stream, one * PIPELINED_REQUESTS)
    else:  # pragma: no cover - HostilePlan checks the kinds
        raise ValueError(kind)


async def _slot(kind: str, slot: int, plan: HostilePlan, tally: KindTally, end_at: float) -> None:
    address = plan.p2p if kind in P2P_KINDS else plan.api
    assert address is not None
    source = _source_address(address[0], slot, plan.sources)
    never_reads = kind in (IDLE_SSE, UNREAD_BLOCKS)
    while trio.current_time() < end_at:
        try:
            stream = await _connect(address, source, never_reads)
        except (OSError, trio.TooSlowError):
            tally.connect_failed += 1
            await trio.sleep(RETRY_PAUSE_S)
            continue
        tally.opened += 1
        opened_at = trio.current_time()
        closed_by_node = False
        with trio.move_on_at(end_at):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await _misbehave(kind, stream, plan, tally)
            closed_by_node = True
        tally.on_held(trio.current_time() - opened_at, closed_by_node)
        await trio.aclose_forcefully(stream)
        await trio.sleep(plan.reopen_pause_s)


def new_tallies(plan: HostilePlan) -> dict[str, KindTally]:
    """An empty tally for each kind the plan holds connections of."""
    return {kind: KindTally(slots=count) for kind, count in plan.slots.items() if count > 0}


async def run_hostile(plan: HostilePlan, tallies: dict[str, KindTally]) -> None:
    """Hold the plan's connections for `duration_s`, counting into `tallies` (`new_tallies`)."""
    raise_descriptor_limit(sum(plan.slots.values()) + 256)
    end_at = trio.current_time() + plan.duration_s
    async with trio.open_nursery() as nursery:
        for kind, tally in tallies.items():
            for slot in range(tally.slots):
                nursery.start_soon(_slot, kind, slot, plan, tally, end_at)
