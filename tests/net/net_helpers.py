"""Shared helpers of the net tests: deterministic keys, condition waits, running transports, raw peers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from crypto.keys import PrivateKey
from net.frames import FrameOpener, FrameSealer
from net.handshake import DialerHandshake, HandshakeResult, ListenerHandshake
from net.transport import Transport

CHAIN_ID = "net-test-chain"
LOCALHOST = "127.0.0.1"
MAX_FRAME = 4 * 1024 * 1024 + 64


def make_keys(n: int) -> list[PrivateKey]:
    """n distinct, deterministic validator keys."""
    return [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(n)]


def stranger_key() -> PrivateKey:
    """A key that is in no test validator set."""
    return PrivateKey.from_seed(b"\xee" * 32)


def validator_map(keys: list[PrivateKey]) -> dict[bytes, int]:
    return {key.public_key: index for index, key in enumerate(keys)}


def run_handshake(
    dialer: DialerHandshake, listener: ListenerHandshake
) -> tuple[HandshakeResult, HandshakeResult, list[bytes]]:
    """Drive both sides to completion in memory; return both results and the three messages."""
    hello = dialer.start()
    reply = listener.feed(hello)
    finish = dialer.feed(reply)
    assert listener.feed(finish) == b""
    assert dialer.result is not None and listener.result is not None
    return dialer.result, listener.result, [hello, reply, finish]


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, poll_s: float = 0.01) -> None:
    """Poll `predicate` until true; TooSlowError after `timeout_s`."""
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(poll_s)


@dataclass
class Node:
    """A transport running in its own cancel scope, so a test can stop and restart it."""

    transport: Transport
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: trio.Event = field(default_factory=trio.Event)

    async def stop(self) -> None:
        self.scope.cancel()
        with trio.fail_after(5):
            await self.stopped.wait()


async def start_node(nursery: trio.Nursery, transport: Transport) -> Node:
    node = Node(transport)

    async def runner(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with node.scope:
                await transport.run(task_status=task_status)
        finally:
            node.stopped.set()

    await nursery.start(runner)
    return node


def make_transport(
    index: int, keys: list[PrivateKey], port: int = 0, n_validators: int | None = None, **kwargs: Any
) -> Transport:
    validators = [key.public_key for key in keys[: n_validators or len(keys)]]
    return Transport(index, keys[index], CHAIN_ID, validators, {index: (LOCALHOST, port)}, **kwargs)


@contextlib.asynccontextmanager
async def running_cluster(
    keys: list[PrivateKey], running: list[int] | None = None, **kwargs: Any
) -> AsyncIterator[tuple[trio.Nursery, dict[int, Node]]]:
    """Start transports for the validators `running` (default: all) on 127.0.0.1 port 0,
    then tell each the others' real ports."""
    indices = list(range(len(keys))) if running is None else running
    async with trio.open_nursery() as nursery:
        nodes = {i: await start_node(nursery, make_transport(i, keys, **kwargs)) for i in indices}
        addresses = {i: (LOCALHOST, node.transport.listen_port) for i, node in nodes.items()}
        for node in nodes.values():
            node.transport.set_addresses(addresses)
        yield nursery, nodes
        nursery.cancel_scope.cancel()


def fully_connected(nodes: Mapping[int, Node]) -> bool:
    return all(node.transport.connected_peers >= set(nodes) - {i} for i, node in nodes.items())


def one_connection_per_pair(nodes: Mapping[int, Node]) -> bool:
    """Both ends of every pair see the same single socket, and no duplicate is still alive."""
    for i, node in nodes.items():
        stats = node.transport.stats()
        if stats["live_connections"] != len(nodes) - 1:
            return False
        for j, conn in stats["connections"].items():
            if j not in nodes:
                return False
            other = nodes[j].transport.stats()["connections"].get(i)
            if other is None or other["local"] != conn["remote"] or other["remote"] != conn["local"]:
                return False
            if other["dialed_by"] != conn["dialed_by"]:
                return False
    return True


async def raw_dial(
    port: int, key: PrivateKey, expected: PrivateKey, chain_id: str = CHAIN_ID
) -> tuple[trio.SocketStream, HandshakeResult]:
    """Connect to a transport's listener and complete a handshake as `key` (a raw, scriptable peer)."""
    stream = await trio.open_tcp_stream(LOCALHOST, port)
    handshake = DialerHandshake(key, chain_id, expected.public_key)
    await stream.send_all(handshake.start())
    with trio.fail_after(5):
        while handshake.result is None:
            data = await stream.receive_some(4096)
            assert data, "listener closed during the handshake"
            reply = handshake.feed(data)
            if reply:
                await stream.send_all(reply)
    return stream, handshake.result


async def read_until_closed(stream: trio.abc.Stream, timeout_s: float = 5.0) -> bytes:
    """Read until EOF or reset; TooSlowError if the other side keeps it open."""
    received = bytearray()
    with trio.fail_after(timeout_s):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            received += data
    return bytes(received)


class RawPeer:
    """The frames of an authenticated raw connection, from the raw side."""

    def __init__(self, result: HandshakeResult) -> None:
        self.sealer = FrameSealer(result.send_key)
        self.opener = FrameOpener(result.receive_key, MAX_FRAME)
