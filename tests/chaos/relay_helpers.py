"""Helpers of the relay tests: frames, frame readers with arrival times, a relayed memory-stream
pair, condition waits, and real transports built the way tests/net builds them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from bft.chaos.links import DelayLine, FrameSplitter
from bft.chaos.relay import Relay, Route
from crypto.keys import PrivateKey
from net.transport import Transport

CHAIN_ID = "chaos-relay-test-chain"
LOCALHOST = "127.0.0.1"
MAX_FRAME = 4 * 1024 * 1024 + 64
# Routes of memory-stream tests: never dialed, the test hands the relay both streams.
UNUSED = (LOCALHOST, 9)


def frame(payload: bytes) -> bytes:
    """A length-prefixed frame, as the transport writes them (the relay never looks inside)."""
    return len(payload).to_bytes(4, "big") + payload


def numbered(i: int, size: int = 8) -> bytes:
    """Frame number i, `size` payload bytes."""
    return frame(i.to_bytes(size, "big"))


def number_of(data: bytes) -> int:
    return int.from_bytes(data[4:], "big")


def schedule(line: DelayLine) -> list[tuple[float, bytes]]:
    """Everything `line` holds, with the time each copy goes out (following `next_deadline`)."""
    out: list[tuple[float, bytes]] = []
    for _ in range(1_000_000):
        deadline = line.next_deadline()
        if deadline is None:
            return out
        out += [(deadline, f) for f in line.due(deadline)]
    raise AssertionError("the line never drained")


def memory_relay(routes: dict[Route, tuple[str, int]] | None = None, **kwargs: Any) -> Relay:
    kwargs.setdefault("seed", 1)
    kwargs.setdefault("max_frame_bytes", 1024)
    kwargs.setdefault("max_buffered_bytes", 64 * 1024)
    return Relay(routes or {(0, 1): UNUSED, (1, 0): UNUSED}, **kwargs)


@dataclass
class Reader:
    """Collects the frames arriving on a stream, with their virtual arrival times, until EOF."""

    stream: trio.abc.Stream
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)

    async def run(self) -> None:
        splitter = FrameSplitter(MAX_FRAME)
        try:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    return
                now = trio.current_time()
                self.frames += [(now, f) for f in splitter.feed(data)]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            self.closed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [f for _, f in self.frames]


@dataclass
class RelayedPair:
    """Node src's and node dst's ends of one connection relayed on route (src, dst)."""

    a: trio.abc.Stream
    b: trio.abc.Stream
    at_a: Reader
    at_b: Reader
    done: trio.Event


@contextlib.asynccontextmanager
async def relayed_pair(
    relay: Relay, route: Route = (0, 1), *, lockstep_sink: bool = False, read: bool = True
) -> AsyncIterator[RelayedPair]:
    """Relay a memory-stream connection on `route`; `lockstep_sink`: dst's end only takes what it
    reads (so a sink that does not read back-pressures the relay); `read`: collect both ends."""
    a, relay_client = trio.testing.memory_stream_pair()
    relay_server: trio.abc.Stream
    b: trio.abc.Stream
    if lockstep_sink:
        relay_server, b = trio.testing.lockstep_stream_pair()
    else:
        relay_server, b = trio.testing.memory_stream_pair()
    pair = RelayedPair(a, b, Reader(a), Reader(b), trio.Event())

    async def serve() -> None:
        try:
            await relay.serve_connection(route, relay_client, relay_server)
        finally:
            pair.done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        if read:
            nursery.start_soon(pair.at_a.run)
            nursery.start_soon(pair.at_b.run)
        yield pair
        nursery.cancel_scope.cancel()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, poll_s: float = 0.01) -> None:
    """Poll `predicate` until true; TooSlowError after `timeout_s`."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(poll_s)


# --- real transports (as tests/net builds them) ----------------------------------------------


def make_keys(n: int) -> list[PrivateKey]:
    """n distinct, deterministic validator keys."""
    return [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(n)]


def make_transport(index: int, keys: list[PrivateKey], **kwargs: Any) -> Transport:
    validators = [key.public_key for key in keys]
    return Transport(index, keys[index], CHAIN_ID, validators, {index: (LOCALHOST, 0)}, **kwargs)


async def receive_from(transport: Transport, sender: int, payload: bytes, timeout_s: float = 10.0) -> None:
    """Wait for `payload` from `sender` (other items are skipped)."""
    with trio.fail_after(timeout_s):
        while True:
            peer, got = await transport.incoming.receive()
            if peer == sender and got == payload:
                return
