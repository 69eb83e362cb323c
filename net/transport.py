"""The trio driver: listens, dials, authenticates and keeps one encrypted connection per peer.

Owns: `Transport` (its nursery, listener, per-peer dial loops with backoff, per-peer bounded
outgoing queues, the bounded `incoming` channel, the one-connection-per-pair rule, statistics
and the key=value log lines of every refusal). May not: interpret payloads (they are opaque
bytes to it), import `bft`, or block a caller of `send` / `broadcast`.

Behaviour worth knowing:
- Both sides of a pair dial. When two authenticated connections exist for one pair, the one
  dialed by the lower validator index is kept on both ends (both ends apply the same rule to
  the same two connections, so they agree); between two dialed by the same validator the newer
  wins, since the older one is what a restarted peer left behind. A dial loop only dials while
  its peer is not connected, so the losing side stops dialing. A failed dial backs off
  exponentially (from `reconnect_base_s`, with jitter, up to `reconnect_max_s`); the backoff
  starts over once the peer was connected again, whichever side dialed.
- Outgoing: `send` puts the payload on the peer's `OutgoingQueue` without waiting. The queue is
  bounded in frames (`queue_frames`) and in payload bytes (`queue_bytes`); what does not fit is
  dropped and counted (`dropped_outgoing`). It outlives connections, so what is sent while a
  peer is briefly unreachable goes out once it connects; but nothing older than `queue_age_s` is
  ever sent: a sweep about once a second, `send` itself and the write loop drop stale payloads
  and count them (`expired_outgoing`), so a peer that went away or stopped reading holds at
  most `queue_bytes` of our memory, released within `queue_age_s` (plus about a second).
  `queued_bytes(peer)` tells a producer that a peer is not reading before it builds more for it.
- Incoming: all peers share one `IncomingChannel`, bounded in frames (`incoming_frames`) and
  per peer in bytes (`incoming_peer_bytes`, default two largest frames), so that one peer
  sending large frames faster than the node takes them holds at most that much of our memory
  and puts at most that much ahead of the others' messages. A reader whose frame does not fit
  waits at most `incoming_wait_s`, then drops the frame and counts it per peer. The short wait turns a
  burst into TCP back-pressure on that one peer instead of loss; it never stalls other peers'
  readers, and trio queues blocked senders first-come first-served, so a flooding peer gets
  no more than its share of the channel.
- An idle connection carries an empty keepalive frame every `keepalive_s`; a connection silent
  for three of those is closed, so a peer that vanished without a FIN is noticed and redialed.
  Empty payloads are therefore reserved and `send` refuses them.
- Unauthenticated inbound connections (pending handshakes) are held in a table of at most
  `max_pending_handshakes`, at most `max_pending_per_host` of them from one source address.
  A newcomer is never refused for lack of room: if its address is at its share, that address's
  own oldest pending connection is closed; else, if the table is full, the oldest one of all.
  Either way a connection that has not yet sent one complete handshake message goes before one
  that has (oldest first among each): an honest dialer sends its HELLO the moment it connects,
  so what has been silent longest is the least likely to be a peer, and the newcomer, admitted,
  leaves the "silent" class within a round trip. Such a closure is an `evicted` refusal. Each
  pending connection must deliver its first complete handshake message within
  `first_bytes_timeout_s` and finish within `handshake_timeout_s`; buffers are capped by the
  1 KiB handshake frame limit. So strangers, however many connections they open from however
  many addresses, hold slots for at most about a second each and cannot keep out a validator
  that dials us; honest peers already connected are never affected; and since we dial our
  peers too, a flood on our listener alone cannot keep us apart from them.
- Strangers are also rate-limited by source host before they get that far: a connection from a
  host that is no validator's (the hosts of the addresses we were given) may begin a handshake
  at most `stranger_burst` at once and `stranger_rate_per_s` a second after that; beyond, it is
  closed (reset) at accept, before it costs a task, a slot or a key, and counted and logged as
  a `rate_limited` refusal. A stranger on a validator's own host is left to the eviction above.
- Refusal log lines (`handshake_refused`, `frame_refused`) are thinned by `RateLimitedLog`: one
  per kind, source host and role every few seconds, then a count of those left out; the
  counters in `stats()` stay exact.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import json
import logging
import random
import re
import socket
import struct
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from typing import TypedDict

import trio

from crypto.keys import PUBLIC_KEY_LEN, PrivateKey
from net.errors import FrameError, HandshakeRefused, RefusalKind
from net.frames import TAG_BYTES, FrameOpener, FrameSealer
from net.handshake import DialerHandshake, HandshakeResult, ListenerHandshake
from net.incoming import IncomingChannel
from net.outqueue import OutgoingQueue
from net.ratelog import RateLimitedLog

DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024 + 64
# Per peer: four maximal frames, or many thousands of votes. With 3-6 peers that is 48-96 MiB of
# queued payload at worst, plus one batch in flight per connection (at most one frame of 4 MiB
# plus _WRITE_BATCH_BYTES), well under 300 MB for the whole node. A peer that reads at all drains
# it at network speed; one that does not gets its excess dropped rather than our memory.
DEFAULT_QUEUE_BYTES = 16 * 1024 * 1024
# Consensus messages this old are stale (timeouts are re-sent on every local deadline, lagging
# nodes catch up by block sync), and a peer gone this long is restarting, not blinking.
DEFAULT_QUEUE_AGE_S = 10.0
# Stale payloads of peers that are not being written to are swept this often.
_EXPIRY_SWEEP_S = 1.0
_READ_BYTES = 64 * 1024
_HANDSHAKE_READ_BYTES = 4096
# Frames queued together are written with one send_all, up to this many bytes.
_WRITE_BATCH_BYTES = 256 * 1024
# A connection that has sent nothing for this many keepalive periods is considered dead.
_IDLE_KEEPALIVES = 3
# Source hosts whose stranger rate is remembered; the least recently seen is forgotten beyond.
_MAX_STRANGER_HOSTS = 4096
# While accept() finds no free descriptor, it is retried this often (as trio.serve_listeners does).
_ACCEPT_RETRY_S = 0.1
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_BARE_LOG_VALUE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")

Address = tuple[str, int]


class ConnectionInfo(TypedDict):
    """The live connection to one peer: who dialed it, its two socket addresses, when it was
    authenticated (`trio.current_time()`) and the bytes of frames it carried each way (sealed,
    keepalives included, the handshake not)."""

    dialed_by: int
    local: str
    remote: str
    connected_at: float
    bytes_sent: int
    bytes_received: int


class TransportStats(TypedDict):
    """A snapshot of the transport's counters (see `Transport.stats`)."""

    connected_peers: list[int]
    connections: dict[int, ConnectionInfo]
    # Per peer, over all its connections since the transport was made (as in ConnectionInfo).
    bytes_sent: dict[int, int]
    bytes_received: dict[int, int]
    dropped_outgoing: dict[int, int]
    expired_outgoing: dict[int, int]
    dropped_incoming: dict[int, int]
    queued_outgoing: dict[int, int]
    queued_outgoing_bytes: dict[int, int]
    refused_handshakes: dict[str, int]
    pending_handshakes: int
    live_connections: int


def _log_line(event: str, me: int, **fields: object) -> str:
    """One line of key=value pairs; values with spaces or quotes are JSON-quoted."""
    parts = [f"event={event}", f"me={me}"]
    for name, value in fields.items():
        text = str(value)
        if not _BARE_LOG_VALUE.fullmatch(text):
            text = json.dumps(text)
        parts.append(f"{name}={text}")
    return " ".join(parts)


def _format_sockaddr(sockaddr: object) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host, port = sockaddr[0], sockaddr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(sockaddr)


def _host_of(remote: str) -> str:
    """The host part of "host:port" or "[v6]:port" (what the per-address cap is keyed by);
    any other description (an in-process stream's) is taken whole."""
    if remote.startswith("[") and "]:" in remote:
        return remote[1 : remote.index("]:")]
    host, sep, port = remote.rpartition(":")
    return host if sep and host and ":" not in host and port.isdigit() else remote


def _describe(stream: trio.abc.Stream, *, local: bool) -> str:
    if isinstance(stream, trio.SocketStream):
        try:
            return _format_sockaddr(stream.socket.getsockname() if local else stream.socket.getpeername())
        except OSError:
            return "unknown"
    return "in-process"


class _Connection:
    """One authenticated connection; mutable, owned by the task that runs it."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "cancel_scope",
        "close_reason",
        "connected_at",
        "dialed_by",
        "local",
        "opener",
        "peer",
        "remote",
        "sealer",
        "stream",
    )

    def __init__(
        self,
        peer: _Peer,
        dialed_by: int,
        stream: trio.abc.Stream,
        sealer: FrameSealer,
        opener: FrameOpener,
        local: str,
        remote: str,
    ) -> None:
        self.peer = peer
        self.dialed_by = dialed_by
        self.stream = stream
        self.sealer = sealer
        self.opener = opener
        self.local = local
        self.remote = remote
        self.cancel_scope = trio.CancelScope()
        self.close_reason = "cancelled"
        self.connected_at = trio.current_time()
        self.bytes_sent = 0
        self.bytes_received = 0

    def on_sent(self, size_bytes: int) -> None:
        self.bytes_sent += size_bytes
        self.peer.bytes_sent += size_bytes

    def on_received(self, size_bytes: int) -> None:
        self.bytes_received += size_bytes
        self.peer.bytes_received += size_bytes


class _Pending:
    """One inbound connection still in its handshake; mutable, shared by its task and `_admit`."""

    __slots__ = ("evicted", "host", "scope", "spoke")

    def __init__(self, host: str) -> None:
        self.host = host
        # Its handshake runs in this scope: cancelled to evict it, its deadline moved once it spoke.
        self.scope = trio.CancelScope()
        # Whether it has sent one complete handshake message (eviction takes silent ones first).
        self.spoke = False
        self.evicted: str | None = None


class _Peer:
    """Everything the transport keeps about one other validator, across connections."""

    __slots__ = (
        "address",
        "bytes_received",
        "bytes_sent",
        "changed",
        "connection",
        "dropped_incoming",
        "dropped_outgoing",
        "index",
        "public_key",
        "queue",
        "queued",
    )

    def __init__(self, index: int, public_key: bytes, address: Address | None, queue: OutgoingQueue) -> None:
        self.index = index
        self.public_key = public_key
        self.address = address
        self.queue = queue
        # Set when a payload is queued; the write loop replaces it before it waits again.
        self.queued = trio.Event()
        self.connection: _Connection | None = None
        # Set (and replaced) whenever `address` or `connection` changes; the dial loop waits on it.
        self.changed = trio.Event()
        self.dropped_outgoing = 0
        self.dropped_incoming = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_queued(self) -> None:
        if self.queued.is_set():
            self.queued = trio.Event()
        await self.queued.wait()


class Transport:
    """Authenticated, encrypted links from validator `me` to every other validator.

    Contract: `run` must be running for anything to move; `send`, `broadcast`, `stats`,
    `set_addresses` and `connected_peers` may be called at any time from trio code (they never
    block). Delivered items on `incoming` are (authenticated peer index, payload). Misbehaving
    peers and strangers are refused and logged, never raised; misuse by the caller (unknown
    index, oversized or empty payload, bad configuration) raises ValueError.
    """

    def __init__(
        self,
        me: int,
        key: PrivateKey,
        chain_id: str,
        validators: Sequence[bytes],
        addresses: Mapping[int, Address],
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        queue_frames: int = 1024,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        queue_age_s: float = DEFAULT_QUEUE_AGE_S,
        incoming_frames: int = 1024,
        incoming_peer_bytes: int | None = None,
        incoming_wait_s: float = 0.1,
        handshake_timeout_s: float = 5.0,
        first_bytes_timeout_s: float = 1.0,
        max_pending_handshakes: int = 64,
        max_pending_per_host: int = 16,
        stranger_rate_per_s: float = 4.0,
        stranger_burst: int = 16,
        reconnect_base_s: float = 0.1,
        reconnect_max_s: float = 2.0,
        keepalive_s: float = 5.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if not 0 <= me < len(validators):
            raise ValueError(f"validator index {me} out of range for {len(validators)} validators")
        if any(len(public_key) != PUBLIC_KEY_LEN for public_key in validators):
            raise ValueError(f"every validator public key must be {PUBLIC_KEY_LEN} bytes")
        if len(set(validators)) != len(validators):
            raise ValueError("validator public keys must be distinct")
        if key.public_key != validators[me]:
            raise ValueError(f"the private key does not belong to validator {me}")
        if me not in addresses:
            raise ValueError(f"addresses must include our own listen address (validator {me})")
        if max_frame_bytes <= TAG_BYTES:
            raise ValueError(f"max_frame_bytes must exceed the {TAG_BYTES}-byte tag")
        for name, value in (
            ("queue_frames", queue_frames),
            ("incoming_frames", incoming_frames),
            ("max_pending_handshakes", max_pending_handshakes),
            ("max_pending_per_host", max_pending_per_host),
            ("stranger_burst", stranger_burst),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if queue_bytes < max_frame_bytes - TAG_BYTES:
            raise ValueError(
                f"queue_bytes ({queue_bytes}) must hold at least one largest payload "
                f"({max_frame_bytes - TAG_BYTES} bytes)"
            )
        if not 0 < reconnect_base_s <= reconnect_max_s:
            raise ValueError("need 0 < reconnect_base_s <= reconnect_max_s")
        if (
            min(handshake_timeout_s, first_bytes_timeout_s, keepalive_s, queue_age_s) <= 0
            or incoming_wait_s < 0
        ):
            raise ValueError("timeouts must be positive")
        if stranger_rate_per_s <= 0:
            raise ValueError(f"stranger_rate_per_s must be positive, got {stranger_rate_per_s}")
        self._me = me
        self._key = key
        self._chain_id = chain_id
        self._index_by_key = {bytes(public_key): index for index, public_key in enumerate(validators)}
        self._listen_address = addresses[me]
        self._max_frame_bytes = max_frame_bytes
        self._incoming_wait_s = incoming_wait_s
        self._handshake_timeout_s = handshake_timeout_s
        self._first_bytes_timeout_s = first_bytes_timeout_s
        self._max_pending_handshakes = max_pending_handshakes
        self._max_pending_per_host = max_pending_per_host
        self._stranger_rate_per_s = stranger_rate_per_s
        self._stranger_burst = stranger_burst
        # Source host -> (tokens, when counted), for hosts that are no validator's; bounded.
        self._stranger_tokens: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._validator_hosts = {address[0] for address in addresses.values()}
        self._queue_age_s = queue_age_s
        self._reconnect_base_s = reconnect_base_s
        self._reconnect_max_s = reconnect_max_s
        self._keepalive_s = keepalive_s
        self._log = logger if logger is not None else logging.getLogger("bft.net")
        # Refusals are caused by others: thinned per kind, host and role (the counters are exact).
        self._refusal_log = RateLimitedLog(self._log, clock=trio.current_time)
        self._peers = {
            index: _Peer(
                index,
                bytes(public_key),
                addresses.get(index),
                OutgoingQueue(queue_frames, queue_bytes, queue_age_s),
            )
            for index, public_key in enumerate(validators)
            if index != me
        }
        self.incoming = IncomingChannel(
            incoming_frames, incoming_peer_bytes if incoming_peer_bytes is not None else 2 * max_frame_bytes
        )
        self._refused: Counter[str] = Counter()
        # Pending inbound handshakes, oldest first (dicts keep insertion order).
        self._pending: dict[int, _Pending] = {}
        self._pending_ids = itertools.count()
        self._live_connections = 0
        self._listen_port: int | None = None
        self._running = False

    @property
    def me(self) -> int:
        """Our validator index."""
        return self._me

    @property
    def listen_port(self) -> int:
        """The port actually listened on (useful with port 0); RuntimeError before `run` started."""
        if self._listen_port is None:
            raise RuntimeError("the transport is not listening (start it with nursery.start(transport.run))")
        return self._listen_port

    @property
    def connected_peers(self) -> set[int]:
        """Indices of the peers with an authenticated connection right now."""
        return {index for index, peer in self._peers.items() if peer.connection is not None}

    @property
    def max_payload_bytes(self) -> int:
        """The largest payload `send` accepts (the frame cap minus the AEAD tag)."""
        return self._max_frame_bytes - TAG_BYTES

    def set_addresses(self, addresses: Mapping[int, Address]) -> None:
        """Set or change where peers listen; dial loops waiting for an address start dialing.

        Our own entry, if present, is ignored (the listener is bound once, by `run`).
        """
        for index, address in addresses.items():
            self._validator_hosts.add(address[0])
            if index == self._me:
                continue
            peer = self._peer(index)
            peer.address = address
            peer.notify()

    def send(self, to: int, payload: bytes) -> bool:
        """Queue `payload` for peer `to` without blocking; False (and counted) if its queue is
        full in frames or bytes (after dropping what in it is older than `queue_age_s`)."""
        peer = self._peer(to)
        if not payload:
            raise ValueError("empty payloads are reserved for keepalives")
        if len(payload) > self.max_payload_bytes:
            raise ValueError(f"payload of {len(payload)} bytes exceeds the limit of {self.max_payload_bytes}")
        if not peer.queue.put(bytes(payload), trio.current_time()):
            peer.dropped_outgoing += 1
            return False
        peer.queued.set()
        return True

    def queued_bytes(self, peer: int) -> int:
        """Payload bytes waiting in the outgoing queue of `peer` (a peer that does not read has
        a full queue: a producer can refuse to build more for it)."""
        return self._peer(peer).queue.size_bytes

    def broadcast(self, payload: bytes) -> None:
        """`send` to every peer (not to ourselves); full queues drop and count as in `send`."""
        for index in self._peers:
            self.send(index, payload)

    def stats(self) -> TransportStats:
        """A snapshot of connections, queues, drop and expiry counters, and refused handshakes
        by kind (`evicted` included)."""
        connections: dict[int, ConnectionInfo] = {}
        for index, peer in self._peers.items():
            if peer.connection is not None:
                conn = peer.connection
                connections[index] = ConnectionInfo(
                    dialed_by=conn.dialed_by,
                    local=conn.local,
                    remote=conn.remote,
                    connected_at=conn.connected_at,
                    bytes_sent=conn.bytes_sent,
                    bytes_received=conn.bytes_received,
                )
        return TransportStats(
            connected_peers=sorted(connections),
            connections=connections,
            bytes_sent={index: peer.bytes_sent for index, peer in self._peers.items()},
            bytes_received={index: peer.bytes_received for index, peer in self._peers.items()},
            dropped_outgoing={index: peer.dropped_outgoing for index, peer in self._peers.items()},
            expired_outgoing={index: peer.queue.expired for index, peer in self._peers.items()},
            dropped_incoming={index: peer.dropped_incoming for index, peer in self._peers.items()},
            queued_outgoing={index: len(peer.queue) for index, peer in self._peers.items()},
            queued_outgoing_bytes={index: peer.queue.size_bytes for index, peer in self._peers.items()},
            refused_handshakes=dict(self._refused),
            pending_handshakes=len(self._pending),
            live_connections=self._live_connections,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on our address, dial every peer, serve connections until cancelled.

        `task_status.started()` is called once the listener is bound, so after
        `await nursery.start(transport.run)` `listen_port` is valid. Runs at most once at a time.
        """
        if self._running:
            raise RuntimeError("Transport.run is already running")
        self._running = True
        host, port = self._listen_address
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
            try:
                # With a host name that resolves to several addresses and port 0, each listener
                # may get its own port; the first is the one we advertise.
                self._listen_port = listeners[0].socket.getsockname()[1]
                self._log.info(_log_line("listening", self._me, address=f"{host}:{self._listen_port}"))
                async with trio.open_nursery() as nursery:
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener, nursery)
                    nursery.start_soon(self._expiry_loop)
                    for peer in self._peers.values():
                        nursery.start_soon(self._dial_loop, peer)
                    task_status.started()
            finally:
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
        finally:
            self._listen_port = None
            self._running = False

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections; a stranger's beyond its host's rate is closed here, before it
        costs a task, a slot or any handshake state."""
        while True:
            try:
                sock, address = await listener.socket.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                self._refusal_log.log(
                    logging.WARNING,
                    ("accept_failed", exc.errno),
                    _log_line(
                        "accept_failed", self._me, error=errno.errorcode.get(exc.errno or 0, exc.errno)
                    ),
                )
                await trio.sleep(_ACCEPT_RETRY_S)
                continue
            host = str(address[0]) if isinstance(address, tuple) else str(address)
            if self._stranger_admitted(host, trio.current_time()):
                nursery.start_soon(self.handle_inbound, trio.SocketStream(sock), _format_sockaddr(address))
                continue
            # The cheap path: no stream and no task (and `_on_refused` makes the line only if
            # it is written).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            sock.close()
            reason = f"over {self._stranger_rate_per_s} connections a second from {host}, no validator's host"
            refusal = HandshakeRefused(RefusalKind.RATE_LIMITED, reason)
            self._on_refused(_format_sockaddr(address), "listener", refusal)

    def _stranger_admitted(self, host: str, now: float) -> bool:
        """Whether a connection from `host` may begin a handshake now. A validator's host always
        may (its strangers are left to the pending table's eviction); any other host at most
        `stranger_burst` at once and `stranger_rate_per_s` a second after that. Why: each
        admitted stranger is a task, a slot and an eviction; churned from addresses no validator
        has, they made a node spend most of a core accepting and evicting."""
        if host in self._validator_hosts:
            return True
        tokens, counted_at = self._stranger_tokens.pop(host, (float(self._stranger_burst), now))
        tokens = min(
            float(self._stranger_burst), tokens + max(0.0, now - counted_at) * self._stranger_rate_per_s
        )
        admitted = tokens >= 1.0
        self._stranger_tokens[host] = (tokens - 1.0 if admitted else tokens, now)
        while len(self._stranger_tokens) > _MAX_STRANGER_HOSTS:
            self._stranger_tokens.popitem(last=False)
        return admitted

    async def handle_inbound(self, stream: trio.abc.Stream, remote: str | None = None) -> None:
        """Serve one accepted connection (handshake as listener, then traffic) until it ends.

        The listener calls this for every TCP connection; tests and in-process fault injection
        may pass any trio stream. Never raises for peer misbehaviour; always closes `stream`.
        """
        remote = remote if remote is not None else _describe(stream, local=False)
        try:
            pending = _Pending(_host_of(remote))
            pending_id = self._admit(pending)
            try:
                handshake = ListenerHandshake(self._key, self._chain_id, self._index_by_key)
                result = await self._run_handshake(stream, handshake, remote, None, pending)
            finally:
                self._pending.pop(pending_id, None)
            if result is not None:
                peer = self._peers[self._index_by_key[result.peer_public_key]]
                await self._run_connection(stream, peer, peer.index, result, remote)
        finally:
            await trio.aclose_forcefully(stream)

    def _peer(self, index: int) -> _Peer:
        peer = self._peers.get(index)
        if peer is None:
            raise ValueError(f"{index!r} is not a peer of validator {self._me}")
        return peer

    def _admit(self, pending: _Pending) -> int:
        """Enter `pending` in the table, first evicting one entry if its host is at its share or
        the table is full (see the module docstring for which one and why); its table key."""
        same_host = [entry for entry in self._pending.values() if entry.host == pending.host]
        if len(same_host) >= self._max_pending_per_host:
            self._evict(
                same_host,
                f"address {pending.host} has {len(same_host)} pending handshakes, "
                f"its share is {self._max_pending_per_host}; evicted for a newer one",
            )
        elif len(self._pending) >= self._max_pending_handshakes:
            self._evict(
                list(self._pending.values()),
                f"{len(self._pending)} pending handshakes, the table's limit; evicted for a newcomer",
            )
        pending_id = next(self._pending_ids)
        self._pending[pending_id] = pending
        return pending_id

    def _evict(self, candidates: list[_Pending], reason: str) -> None:
        """Close the oldest silent candidate, else the oldest one (`candidates` are oldest first)."""
        victim = next((entry for entry in candidates if not entry.spoke), candidates[0])
        for pending_id, entry in self._pending.items():
            if entry is victim:
                del self._pending[pending_id]
                break
        victim.evicted = reason
        victim.scope.cancel()

    def _on_refused(self, remote: str, role: str, refusal: HandshakeRefused, peer: int | None = None) -> None:
        self._refused[refusal.kind.value] += 1
        fields: dict[str, object] = {"remote": remote, "role": role}
        if peer is not None:
            fields["peer"] = peer
        # The line is made only if the thinning writes it: a flood's refusals cost a count.
        line = functools.partial(
            _log_line, "handshake_refused", self._me, **fields, kind=refusal.kind, reason=refusal.reason
        )
        self._refusal_log.log(
            logging.WARNING, ("handshake_refused", refusal.kind, _host_of(remote), role), line
        )

    async def _run_handshake(
        self,
        stream: trio.abc.Stream,
        handshake: DialerHandshake | ListenerHandshake,
        remote: str,
        peer: int | None,
        pending: _Pending | None = None,
    ) -> HandshakeResult | None:
        """Drive `handshake` on `stream` under its deadlines; the result, or None once refused
        (counted and logged). An inbound one (`pending` given) must deliver its first complete
        message within `first_bytes_timeout_s` and can be evicted through `pending.scope`."""
        role = "dialer" if isinstance(handshake, DialerHandshake) else "listener"
        refusal: HandshakeRefused | None = None
        finish_at = trio.current_time() + self._handshake_timeout_s
        first_at = finish_at
        scope = trio.CancelScope()
        if pending is not None:
            # Only strangers need the short deadline: our own dials reach an expected key.
            first_at = min(finish_at, trio.current_time() + self._first_bytes_timeout_s)
            scope = pending.scope
        scope.deadline = first_at
        with scope:
            try:
                if isinstance(handshake, DialerHandshake):
                    await stream.send_all(handshake.start())
                while handshake.result is None:
                    data = await stream.receive_some(_HANDSHAKE_READ_BYTES)
                    if not data:
                        raise HandshakeRefused(RefusalKind.CLOSED, "connection closed during handshake")
                    reply = handshake.feed(data)
                    if pending is not None and not pending.spoke and handshake.messages_received:
                        pending.spoke = True
                        scope.deadline = finish_at
                    if reply:
                        await stream.send_all(reply)
                return handshake.result
            except HandshakeRefused as exc:
                refusal = exc
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                refusal = HandshakeRefused(RefusalKind.CLOSED, f"connection lost during handshake: {exc}")
        if refusal is None and pending is not None and pending.evicted is not None:
            refusal = HandshakeRefused(RefusalKind.EVICTED, pending.evicted)
        if refusal is None and pending is not None and not pending.spoke and first_at < finish_at:
            refusal = HandshakeRefused(
                RefusalKind.TIMEOUT, f"no complete handshake message within {self._first_bytes_timeout_s} s"
            )
        if refusal is None:
            refusal = HandshakeRefused(
                RefusalKind.TIMEOUT, f"handshake not finished within {self._handshake_timeout_s} s"
            )
        self._on_refused(remote, role, refusal, peer)
        return None

    async def _dial_loop(self, peer: _Peer) -> None:
        backoff_s = self._reconnect_base_s
        while True:
            while peer.address is None or peer.connection is not None:
                if peer.connection is not None:
                    # Connected (by either side's dial): after it ends, start over from a short
                    # backoff, so a peer that restarts is redialed within a fraction of a second.
                    backoff_s = self._reconnect_base_s
                await peer.changed.wait()
            if await self._dial_once(peer, peer.address):
                backoff_s = self._reconnect_base_s
            # Jitter keeps two validators that keep failing together from redialing in lockstep.
            await trio.sleep(backoff_s * random.uniform(0.5, 1.0))
            backoff_s = min(2 * backoff_s, self._reconnect_max_s)

    async def _dial_once(self, peer: _Peer, address: Address) -> bool:
        """Dial, authenticate and serve one connection; True if it got authenticated."""
        host, port = address
        remote = _format_sockaddr(address)
        try:
            with trio.fail_after(self._handshake_timeout_s):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as exc:
            self._log.debug(
                _log_line(
                    "dial_failed", self._me, peer=peer.index, remote=remote, error=str(exc) or repr(exc)
                )
            )
            return False
        try:
            handshake = DialerHandshake(self._key, self._chain_id, peer.public_key)
            result = await self._run_handshake(stream, handshake, remote, peer.index)
            if result is None:
                return False
            await self._run_connection(stream, peer, self._me, result, remote)
            return True
        finally:
            await trio.aclose_forcefully(stream)

    def _register(self, conn: _Connection) -> bool:
        """Make `conn` the peer's connection unless the current one wins the tie-break."""
        peer = conn.peer
        current = peer.connection
        if current is not None:
            if conn.dialed_by > current.dialed_by:
                return False
            current.close_reason = f"replaced by a connection dialed by {conn.dialed_by}"
            current.cancel_scope.cancel()
        peer.connection = conn
        peer.notify()
        return True

    async def _run_connection(
        self, stream: trio.abc.Stream, peer: _Peer, dialed_by: int, result: HandshakeResult, remote: str
    ) -> None:
        conn = _Connection(
            peer,
            dialed_by,
            stream,
            FrameSealer(result.send_key, self._max_frame_bytes),
            FrameOpener(result.receive_key, self._max_frame_bytes),
            _describe(stream, local=True),
            remote,
        )
        if not self._register(conn):
            kept = peer.connection.dialed_by if peer.connection is not None else None
            self._log.info(
                _log_line(
                    "duplicate_connection_closed",
                    self._me,
                    peer=peer.index,
                    remote=remote,
                    dialed_by=dialed_by,
                    kept=kept,
                )
            )
            return
        self._live_connections += 1
        self._log.info(
            _log_line("peer_connected", self._me, peer=peer.index, remote=remote, dialed_by=dialed_by)
        )
        try:
            with conn.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, conn, nursery.cancel_scope)
                    conn.close_reason = await self._read_loop(conn, result.leftover)
                    nursery.cancel_scope.cancel()
        finally:
            self._live_connections -= 1
            if peer.connection is conn:
                peer.connection = None
                peer.notify()
            self._log.info(
                _log_line(
                    "peer_disconnected", self._me, peer=peer.index, remote=remote, reason=conn.close_reason
                )
            )

    async def _write_loop(self, conn: _Connection, scope: trio.CancelScope) -> None:
        """Write the peer's queue in batches (stale payloads are dropped by `take`, never sent),
        and a keepalive frame whenever nothing was written for `keepalive_s`."""
        peer = conn.peer
        try:
            idle_at = trio.current_time() + self._keepalive_s
            while True:
                payloads = peer.queue.take(trio.current_time(), _WRITE_BATCH_BYTES)
                if not payloads and trio.current_time() < idle_at:
                    with trio.move_on_at(idle_at):
                        await peer.wait_queued()
                    continue
                # No payload: the deadline passed, this is the keepalive frame.
                if len(payloads) <= 1:
                    data = conn.sealer.seal(payloads[0] if payloads else b"")
                else:
                    data = b"".join([conn.sealer.seal(payload) for payload in payloads])
                # Only the sealed copy stays alive while a slow reader makes send_all wait.
                del payloads
                await conn.stream.send_all(data)
                conn.on_sent(len(data))
                del data
                idle_at = trio.current_time() + self._keepalive_s
        except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            conn.close_reason = f"write failed: {exc}"
            scope.cancel()

    async def _expiry_loop(self) -> None:
        """Drop stale payloads of every queue about once a second, so that what waits for a
        peer that is gone (or not reading) is released even if nothing else is sent to it."""
        while True:
            await trio.sleep(min(_EXPIRY_SWEEP_S, self._queue_age_s))
            now = trio.current_time()
            for peer in self._peers.values():
                peer.queue.expire(now)

    async def _read_loop(self, conn: _Connection, leftover: bytes) -> str:
        """Deliver frames until the connection ends; return why it ended."""
        try:
            if leftover:
                conn.on_received(len(leftover))
                await self._deliver(conn.peer, conn.opener.feed(leftover))
            while True:
                data: bytes | bytearray = b""
                with trio.move_on_after(_IDLE_KEEPALIVES * self._keepalive_s) as idle:
                    data = await conn.stream.receive_some(_READ_BYTES)
                if idle.cancelled_caught:
                    return f"peer silent for {_IDLE_KEEPALIVES * self._keepalive_s} s"
                if not data:
                    conn.opener.close()
                    return "closed by peer"
                conn.on_received(len(data))
                await self._deliver(conn.peer, conn.opener.feed(data))
        except FrameError as exc:
            self._refusal_log.log(
                logging.WARNING,
                ("frame_refused", type(exc).__name__, _host_of(conn.remote), conn.peer.index),
                _log_line(
                    "frame_refused", self._me, peer=conn.peer.index, remote=conn.remote, reason=str(exc)
                ),
            )
            return f"bad frame: {exc}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            return f"connection lost: {exc}"

    async def _deliver(self, peer: _Peer, payloads: list[bytes]) -> None:
        for payload in payloads:
            if payload and not await self.incoming.put(peer.index, payload, self._incoming_wait_s):
                peer.dropped_incoming += 1
