"""The fault-injecting relay between live nodes: an in-process trio TCP relay on the p2p links.

Owns: `Relay` (one listener per ordered pair of validators, the connections it forwards, their
pump tasks, the control API over the per-link faults, and its key=value log lines). May not:
take part in the protocol, decrypt or alter a frame, or touch the nodes' genesis or transport.
The fault decisions themselves live in `bft.chaos.links` (sans-I/O); this module only moves
bytes and time.

Topology (wired by the runner): for each ordered pair (d, t), d != t, the relay listens on one
port (`port_of(d, t)`) and forwards to t's real p2p address; node d is configured to dial t
there. On such a connection the bytes client -> server are the directed link d -> t and the
bytes server -> client the link t -> d. Both nodes of a pair dial and the transport keeps one
connection, but whichever survives, this mapping holds. From byte 0 each direction is a
sequence of frames (4-byte length, then the body: the plain handshake frames and the encrypted
ones alike); the relay splits it and applies the link's `LinkFaults` frame by frame. A length
above `max_frame_bytes` (pass the transport's real cap) closes both sides and is counted
(`refused_oversize`); the body of such a frame is never buffered.

What the faults do to the nodes (they are real, and worth knowing when reading a chaos run):
- The transport authenticates every frame with a counter nonce, so a dropped, duplicated or
  reordered frame makes the receiving node refuse the stream (`frame_refused`), close the
  connection, and the pair redials: whatever was in flight on it is lost. These faults are
  therefore connection resets with message loss, not the gentle loss TCP would hide.
- Delay and jitter delay every frame (handshake included); bandwidth caps the link's bytes per
  second. Order is always kept by these.
- A cut link delivers nothing: what is read is discarded, and so is what was queued when the cut
  came. The nodes notice through their keepalive check (silent for 3 keepalives) and redial; a
  new connection through a cut direction is accepted and forwarded, but nothing passes that way,
  so its handshake times out. A cut one way only (`cut(src, dst)`) is an asymmetric fault; with
  TCP under the transport both directions then fail (the handshake needs both ways, and the
  keepalive check closes the connection from the side that hears nothing), as on a real network
  with one-way loss.

Control (`set_link`, `update`, `cut`, `partition`, `heal`, `links`, `stats`) is synchronous and
called from the same trio run (the runner, a live-control command). A change applies to frames
read after it (the bandwidth cap at once); a cut also discards the frames already queued.
`partition(groups)` cuts every link between two different groups both ways and uncuts the
links within a group (other faults stay); nodes listed in no group form one more group
together. `heal()` puts every link back to no faults at all.

Bounds: per direction of a connection at most `max_buffered_bytes` are held (partial frame,
queued frames, the batch being written); when full, the relay stops reading that source, so the
sender feels TCP back-pressure. At most `MAX_CONNECTIONS_PER_ROUTE` connections per route are
relayed at once; a new one closes the oldest. Every connection ends when either side ends:
after an EOF the frames still queued that way are delivered on time, then both sides close.
Randomness: one `random.Random` per link, seeded from (seed, src, dst), so the decisions on a
link are a reproducible sequence for the frames it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from bft.chaos.links import (
    LENGTH_BYTES,
    NO_FAULTS,
    DelayLine,
    FrameSplitter,
    Link,
    LinkFaults,
    LinkStats,
)
from bft.node.logs import RateLimitedLog, kv

Address = tuple[str, int]
Route = tuple[int, int]

DEFAULT_MAX_BUFFERED_BYTES = 8 * 1024 * 1024
MAX_CONNECTIONS_PER_ROUTE = 4
# A target that does not accept within this is unreachable; the client is closed and redials.
DIAL_TIMEOUT_S = 5.0
_READ_BYTES = 64 * 1024
_WRITE_BATCH_BYTES = 256 * 1024
# While accept() fails (out of descriptors), it is retried this often.
_ACCEPT_RETRY_S = 0.1

__all__ = [
    "DEFAULT_MAX_BUFFERED_BYTES",
    "MAX_CONNECTIONS_PER_ROUTE",
    "NO_FAULTS",
    "Address",
    "LinkFaults",
    "LinkStats",
    "Relay",
    "Route",
]


class _Direction:
    """One direction of one relayed connection: its splitter, its delay line, and the two
    wake-ups (the writer on new frames or new faults, the reader when room is freed)."""

    __slots__ = ("line", "reader_wake", "splitter", "writer_wake", "writing_bytes")

    def __init__(self, link: Link, max_frame_bytes: int) -> None:
        self.splitter = FrameSplitter(max_frame_bytes)
        self.line = DelayLine(link)
        self.writing_bytes = 0
        self.writer_wake = trio.Event()
        self.reader_wake = trio.Event()

    @property
    def held_bytes(self) -> int:
        return self.splitter.buffered_bytes + self.line.buffered_bytes + self.writing_bytes

    def wake_writer(self) -> None:
        self.writer_wake.set()
        self.writer_wake = trio.Event()

    def wake_reader(self) -> None:
        self.reader_wake.set()
        self.reader_wake = trio.Event()


@dataclass(eq=False)
class _Connection:
    route: Route
    number: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    directions: list[_Direction] = field(default_factory=list)
    close_reason: str = "cancelled"


class Relay:
    """Relays the p2p connection of every ordered pair of validators through per-link faults.

    `routes` maps (d, t) to t's real p2p address; the relay listens for it on `host` at
    `listen_ports[(d, t)]` (default 0: any free port, see `port_of`). Start it with
    `await nursery.start(relay.run)`: it returns once every listener is bound. Misbehaving
    streams (oversize lengths, resets, unreachable targets) are logged and counted, never
    raised; misuse (unknown link, bad faults, bad configuration) raises ValueError.
    """

    def __init__(
        self,
        routes: Mapping[Route, Address],
        *,
        seed: int,
        max_frame_bytes: int,
        max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        host: str = "127.0.0.1",
        listen_ports: Mapping[Route, int] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if not routes:
            raise ValueError("a relay needs at least one route")
        for src, dst in routes:
            if src == dst or min(src, dst) < 0:
                raise ValueError(f"a route is a pair of distinct validator indices, got {(src, dst)}")
        if max_frame_bytes < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {max_frame_bytes}")
        if max_buffered_bytes < max_frame_bytes + LENGTH_BYTES:
            raise ValueError(
                f"max_buffered_bytes ({max_buffered_bytes}) must hold one largest frame "
                f"({max_frame_bytes + LENGTH_BYTES} bytes)"
            )
        ports = dict(listen_ports or {})
        if not set(ports) <= set(routes):
            raise ValueError(f"listen_ports for unknown routes: {sorted(set(ports) - set(routes))}")
        self._routes = dict(routes)
        self._listen_ports = {route: ports.get(route, 0) for route in self._routes}
        self._seed = seed
        self._max_frame_bytes = max_frame_bytes
        self._max_buffered_bytes = max_buffered_bytes
        self._host = host
        self._log = logger if logger is not None else logging.getLogger("bft.chaos")
        self._thin_log = RateLimitedLog(self._log, clock=trio.current_time)
        self._links: dict[Route, Link] = {}
        for src, dst in self._routes:
            for key in ((src, dst), (dst, src)):
                self._links.setdefault(key, Link(key[0], key[1], seed))
        self._connections: dict[Route, OrderedDict[int, _Connection]] = {
            route: OrderedDict() for route in self._routes
        }
        self._directions: dict[Route, set[_Direction]] = {key: set() for key in self._links}
        self._numbers = itertools.count(1)
        self._bound_ports: dict[Route, int] = {}

    # --- addresses ---------------------------------------------------------------------------

    @property
    def nodes(self) -> frozenset[int]:
        """Every validator index that appears in a route."""
        return frozenset(itertools.chain.from_iterable(self._links))

    def port_of(self, src: int, dst: int) -> int:
        """The port node `src` dials to reach `dst`; RuntimeError before `run` bound it."""
        if (src, dst) not in self._routes:
            raise ValueError(f"no route {src}->{dst}")
        port = self._bound_ports.get((src, dst))
        if port is None:
            raise RuntimeError("the relay is not listening (start it with nursery.start(relay.run))")
        return port

    # --- control -----------------------------------------------------------------------------

    def links(self) -> dict[Route, LinkFaults]:
        """The current faults of every directed link."""
        return {key: link.faults for key, link in sorted(self._links.items())}

    def stats(self) -> dict[Route, LinkStats]:
        """The counters of every directed link (`buffered_bytes` as held right now)."""
        out = {}
        for key, link in sorted(self._links.items()):
            held = sum(direction.held_bytes for direction in self._directions[key])
            out[key] = dataclasses.replace(link.stats(), buffered_bytes=held)
        return out

    def set_link(self, src: int, dst: int, faults: LinkFaults) -> None:
        """Replace the faults of the directed link src -> dst."""
        self._apply(self._key(src, dst), faults)
        self._log.info(kv(event="link_faults", src=src, dst=dst, **_describe(faults)))

    def update(self, src: int, dst: int, **changes: Any) -> LinkFaults:
        """Change some fields of the link's faults (`LinkFaults` field names); the new faults."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(LinkFaults)}
        if unknown:
            raise ValueError(f"unknown LinkFaults fields: {sorted(unknown)}")
        faults = dataclasses.replace(self._links[self._key(src, dst)].faults, **changes)
        self.set_link(src, dst, faults)
        return faults

    def cut(self, src: int, dst: int) -> None:
        """Cut the one directed link src -> dst (an asymmetric fault); its queue is discarded."""
        self.update(src, dst, cut=True)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between two different groups, both ways; uncut the links within a
        group. Nodes listed in no group form one more group; other faults are kept."""
        listed: dict[int, int] = {}
        group_list = [sorted(set(group)) for group in groups]
        for number, group in enumerate(group_list):
            for node in group:
                if node not in self.nodes:
                    raise ValueError(f"unknown node {node} in partition {group_list}")
                if node in listed:
                    raise ValueError(f"node {node} is in two groups of partition {group_list}")
                listed[node] = number
        rest = sorted(self.nodes - set(listed))
        for node in rest:
            listed[node] = len(group_list)
        for key, link in self._links.items():
            cut = listed[key[0]] != listed[key[1]]
            if link.faults.cut != cut:
                self._apply(key, dataclasses.replace(link.faults, cut=cut))
        shown = [",".join(map(str, group)) for group in [*group_list, rest] if group]
        self._log.info(kv(event="partition", groups="|".join(shown)))

    def heal(self) -> None:
        """Every link back to no faults."""
        for key in self._links:
            self._apply(key, NO_FAULTS)
        self._log.info(kv(event="heal", links=len(self._links)))

    def _key(self, src: int, dst: int) -> Route:
        if (src, dst) not in self._links:
            raise ValueError(f"no link {src}->{dst}")
        return (src, dst)

    def _apply(self, key: Route, faults: LinkFaults) -> None:
        link = self._links[key]
        link.set_faults(faults)
        for direction in self._directions[key]:
            if faults.cut:
                direction.line.discard()
            direction.wake_writer()
            direction.wake_reader()

    # --- serving -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Bind every route's listener, report readiness, then relay until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            listeners: dict[Route, list[trio.SocketListener]] = {}
            for route, port in self._listen_ports.items():
                bound = await trio.open_tcp_listeners(port, host=self._host)
                for listener in bound:
                    stack.push_async_callback(trio.aclose_forcefully, listener)
                listeners[route] = bound
                self._bound_ports[route] = bound[0].socket.getsockname()[1]
            try:
                async with trio.open_nursery() as nursery:
                    for route, bound in listeners.items():
                        for listener in bound:
                            nursery.start_soon(self._accept_loop, route, listener, nursery)
                    self._log.info(
                        kv(
                            event="relay_listening",
                            host=self._host,
                            routes=len(self._routes),
                            seed=self._seed,
                        )
                    )
                    task_status.started()
            finally:
                self._bound_ports.clear()

    async def serve_connection(self, route: Route, client: trio.abc.Stream, server: trio.abc.Stream) -> None:
        """Relay one connection of `route` (node src's stream and the one to dst) until either
        side ends; both streams are closed on return. (`run` calls it per accepted connection;
        tests call it with memory streams.)"""
        conn = self._open_connection(route)
        try:
            with conn.scope:
                await self._relay(conn, client, server)
        finally:
            self._close_connection(conn)
            await _close_streams(client, server)

    async def _accept_loop(self, route: Route, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                self._thin_log.log(
                    logging.WARNING,
                    ("accept_failed", route),
                    kv(event="relay_accept_failed", src=route[0], dst=route[1], error=exc),
                )
                await trio.sleep(_ACCEPT_RETRY_S)
                continue
            nursery.start_soon(self._handle_accepted, route, stream)

    async def _handle_accepted(self, route: Route, client: trio.SocketStream) -> None:
        conn = self._open_connection(route)
        server: trio.SocketStream | None = None
        try:
            with conn.scope:
                server = await self._dial(route)
                if server is not None:
                    await self._relay(conn, client, server)
        finally:
            self._close_connection(conn)
            await _close_streams(client, server)

    async def _dial(self, route: Route) -> trio.SocketStream | None:
        host, port = self._routes[route]
        error: object = f"no connection within {DIAL_TIMEOUT_S} s"
        with trio.move_on_after(DIAL_TIMEOUT_S):
            try:
                return await trio.open_tcp_stream(host, port)
            except OSError as exc:
                error = exc
        self._thin_log.log(
            logging.INFO,
            ("dial_failed", route),
            kv(event="relay_dial_failed", src=route[0], dst=route[1], target=f"{host}:{port}", error=error),
        )
        return None

    def _open_connection(self, route: Route) -> _Connection:
        if route not in self._routes:
            raise ValueError(f"no route {route[0]}->{route[1]}")
        table = self._connections[route]
        conn = _Connection(route, next(self._numbers))
        table[conn.number] = conn
        while len(table) > MAX_CONNECTIONS_PER_ROUTE:
            _, oldest = table.popitem(last=False)
            oldest.close_reason = "replaced by a newer connection"
            oldest.scope.cancel()
        for key in (route, (route[1], route[0])):
            self._links[key].connections += 1
        self._log.debug(kv(event="relay_connection_opened", src=route[0], dst=route[1], conn=conn.number))
        return conn

    def _close_connection(self, conn: _Connection) -> None:
        self._connections[conn.route].pop(conn.number, None)
        for direction in conn.directions:
            self._directions[(direction.line.link.src, direction.line.link.dst)].discard(direction)
            direction.line.clear()
        conn.directions.clear()
        self._log.debug(
            kv(
                event="relay_connection_closed",
                src=conn.route[0],
                dst=conn.route[1],
                conn=conn.number,
                reason=conn.close_reason,
            )
        )

    async def _relay(self, conn: _Connection, client: trio.abc.Stream, server: trio.abc.Stream) -> None:
        src, dst = conn.route
        forward = _Direction(self._links[(src, dst)], self._max_frame_bytes)
        backward = _Direction(self._links[(dst, src)], self._max_frame_bytes)
        conn.directions += [forward, backward]
        self._directions[(src, dst)].add(forward)
        self._directions[(dst, src)].add(backward)
        async with trio.open_nursery() as nursery:
            for direction, source, sink in ((forward, client, server), (backward, server, client)):
                nursery.start_soon(self._read_loop, conn, direction, source, nursery.cancel_scope)
                nursery.start_soon(self._write_loop, conn, direction, sink, nursery.cancel_scope)

    async def _read_loop(
        self, conn: _Connection, direction: _Direction, source: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        """Read frames into the delay line while it has room; on EOF or an oversize length close
        its input (the writer then delivers what came before and ends the connection); on a
        broken stream end the connection at once."""
        link = direction.line.link
        try:
            while True:
                room = self._max_buffered_bytes - direction.held_bytes
                if room <= 0:
                    await direction.reader_wake.wait()
                    continue
                data = await source.receive_some(min(_READ_BYTES, room))
                now = trio.current_time()
                if data:
                    for frame in direction.splitter.feed(data):
                        direction.line.feed(frame, now)
                refused = direction.splitter.refused
                if refused is not None:
                    link.refused_oversize += 1
                    conn.close_reason = f"{link.src}->{link.dst}: {refused}"
                    self._thin_log.log(
                        logging.WARNING,
                        ("oversize", link.src, link.dst),
                        kv(event="relay_frame_refused", src=link.src, dst=link.dst, reason=refused),
                    )
                if not data or refused is not None:
                    # The writer delivers what came before, then ends the connection.
                    direction.line.close_input(now)
                    direction.wake_writer()
                    return
                direction.wake_writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            conn.close_reason = f"{link.src}->{link.dst} read failed: {exc}"
        scope.cancel()

    async def _write_loop(
        self, conn: _Connection, direction: _Direction, sink: trio.abc.Stream, scope: trio.CancelScope
    ) -> None:
        """Write the frames that are due, in batches; once the input ended and the line is
        empty, end the connection."""
        line = direction.line
        link = line.link
        try:
            while True:
                before = line.buffered_bytes
                frames = line.due(trio.current_time(), _WRITE_BATCH_BYTES)
                if frames:
                    data = b"".join(frames)
                    del frames
                    # The frames now live in `data` until it is written: still ours to count.
                    direction.writing_bytes = before - line.buffered_bytes
                    await sink.send_all(data)
                    del data
                    direction.writing_bytes = 0
                    direction.wake_reader()
                    continue
                if line.input_closed and line.empty:
                    if direction.splitter.refused is None:
                        conn.close_reason = f"{link.src}->{link.dst} closed by its source"
                    break
                wake = direction.writer_wake
                deadline = line.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await wake.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            conn.close_reason = f"{link.src}->{link.dst} write failed: {exc}"
        scope.cancel()


async def _close_streams(*streams: trio.abc.AsyncResource | None) -> None:
    """Close every stream at once. Shielded: in a cancelled scope, the first forceful close would
    otherwise raise Cancelled at its checkpoint and leave the others open."""
    with trio.CancelScope(shield=True):
        for stream in streams:
            if stream is not None:
                await trio.aclose_forcefully(stream)


def _describe(faults: LinkFaults) -> dict[str, object]:
    changed = faults.changed_fields()
    return changed if changed else {"faults": "none"}
