"""The handshake and frame catalogue: every way a stranger or a validator can break the p2p protocol.

Owns: `PROBES` (named probes, each one bad connection against a node's p2p port), running them
one after another (`run_catalogue`), and what each should leave in the node's log (`expect`: a
`key=value` marker of the refusal line). Stranger probes need no key; validator probes complete a
real handshake with a validator's key first (that validator's own node must be stopped, or the
connection is closed as a duplicate) and then send bad frames.
May not: import the node's runtime; it speaks the handshake and frame format as an attacker would.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import trio

from crypto.keys import PrivateKey
from net.frames import FrameSealer
from net.handshake import DialerHandshake
from net.transport import DEFAULT_MAX_FRAME_BYTES

# How long a probe waits for the node to close its connection.
CLOSE_WAIT_S: Final = 15.0
CONNECT_TIMEOUT_S: Final = 5.0
GARBAGE_BYTES: Final = 4096

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Target:
    """The node to probe, and the validator key the validator probes use (None: strangers only)."""

    address: Address
    chain_id: str
    public_key: bytes
    validator_key: PrivateKey | None = None


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    expect: str
    closed_by_node: bool
    closed_after_s: float

    def summary(self) -> dict[str, object]:
        return {
            "expect": self.expect,
            "should_close": PROBES[self.name].closes,
            "closed_by_node": self.closed_by_node,
            "closed_after_s": round(self.closed_after_s, 2),
        }


Probe = Callable[[trio.SocketStream, Target], Awaitable[None]]


async def _handshake(
    stream: trio.SocketStream, target: Target, *, corrupt_finish: bool = False
) -> FrameSealer:
    """Complete a dialer handshake with the validator key (FINISH's last byte flipped if asked)."""
    assert target.validator_key is not None
    handshake = DialerHandshake(target.validator_key, target.chain_id, target.public_key)
    await stream.send_all(handshake.start())
    while handshake.result is None:
        data = await stream.receive_some(4096)
        if not data:
            raise trio.BrokenResourceError("closed during the handshake")
        reply = handshake.feed(data)
        if corrupt_finish:
            reply = reply[:-1] + bytes([reply[-1] ^ 1])
        if reply:
            await stream.send_all(reply)
    return FrameSealer(handshake.result.send_key, DEFAULT_MAX_FRAME_BYTES)


async def _garbage(stream: trio.SocketStream, target: Target) -> None:
    await stream.send_all(os.urandom(GARBAGE_BYTES))


async def _oversized_hello(stream: trio.SocketStream, target: Target) -> None:
    await stream.send_all(b"\xff\xff\xff\xff")


async def _silent(stream: trio.SocketStream, target: Target) -> None:
    return


async def _wrong_chain_id(stream: trio.SocketStream, target: Target) -> None:
    other = ("not-" + target.chain_id)[:200]
    await stream.send_all(DialerHandshake(PrivateKey.generate(), other, target.public_key).start())


async def _unknown_key(stream: trio.SocketStream, target: Target) -> None:
    await stream.send_all(DialerHandshake(PrivateKey.generate(), target.chain_id, target.public_key).start())


async def _bad_finish_signature(stream: trio.SocketStream, target: Target) -> None:
    await _handshake(stream, target, corrupt_finish=True)


async def _frame_too_large(stream: trio.SocketStream, target: Target) -> None:
    await _handshake(stream, target)
    await stream.send_all(b"\x7f\xff\xff\xff")


async def _bad_tag(stream: trio.SocketStream, target: Target) -> None:
    await _handshake(stream, target)
    await stream.send_all((1024).to_bytes(4, "big") + os.urandom(1024))


async def _replayed_frame(stream: trio.SocketStream, target: Target) -> None:
    sealer = await _handshake(stream, target)
    frame = sealer.seal(b"\x82\x00\x00")
    await stream.send_all(frame + frame)


async def _undecodable(stream: trio.SocketStream, target: Target) -> None:
    sealer = await _handshake(stream, target)
    await stream.send_all(sealer.seal(os.urandom(512)))


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """A probe, whether it needs a validator key, the log marker of its refusal, and whether the
    node should close the connection (an undecodable payload is refused per message; the
    connection stays up)."""

    probe: Probe
    expect: str
    needs_key: bool = False
    closes: bool = True


PROBES: Final[dict[str, ProbeSpec]] = {
    "garbage": ProbeSpec(_garbage, "kind=malformed"),
    "oversized-hello": ProbeSpec(_oversized_hello, "kind=malformed"),
    "silent": ProbeSpec(_silent, "kind=timeout"),
    "wrong-chain-id": ProbeSpec(_wrong_chain_id, "kind=wrong_chain_id"),
    "unknown-key": ProbeSpec(_unknown_key, "kind=unknown_key"),
    "bad-finish-signature": ProbeSpec(_bad_finish_signature, "kind=bad_signature", needs_key=True),
    "frame-too-large": ProbeSpec(_frame_too_large, "event=frame_refused", needs_key=True),
    "bad-tag": ProbeSpec(_bad_tag, "event=frame_refused", needs_key=True),
    "replayed-frame": ProbeSpec(_replayed_frame, "event=frame_refused", needs_key=True),
    "undecodable": ProbeSpec(_undecodable, "what=message", needs_key=True, closes=False),
}
# A probe whose connection should stay up is watched this long.
STAYS_UP_WAIT_S: Final = 1.0


async def _closed(stream: trio.SocketStream, wait_s: float) -> bool:
    """Read until the node closes the connection; False if it was still open after `wait_s`."""
    with trio.move_on_after(wait_s):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        return True
    return False


async def run_probe(name: str, target: Target) -> ProbeResult:
    """Open a connection, run probe `name` on it, wait for the node to close it (or, for a probe
    whose connection should stay up, watch it for STAYS_UP_WAIT_S)."""
    spec = PROBES[name]
    with trio.fail_after(CONNECT_TIMEOUT_S):
        stream = await trio.open_tcp_stream(*target.address)
    started = trio.current_time()
    try:
        try:
            await spec.probe(stream, target)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return ProbeResult(name, spec.expect, True, trio.current_time() - started)
        closed = await _closed(stream, CLOSE_WAIT_S if spec.closes else STAYS_UP_WAIT_S)
        return ProbeResult(name, spec.expect, closed, trio.current_time() - started)
    finally:
        await trio.aclose_forcefully(stream)


def probe_names(target: Target) -> list[str]:
    """The probes that can run against `target` (validator probes need its key)."""
    return [name for name, spec in PROBES.items() if not spec.needs_key or target.validator_key is not None]


async def run_catalogue(target: Target, names: list[str]) -> list[ProbeResult]:
    """Each probe in turn, so the node's log lines can be told apart by order."""
    return [await run_probe(name, target) for name in names]
