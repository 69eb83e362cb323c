"""Floods a validator with a valid key can send: requests it never reads the answers to, and gossip.

Owns: `ValidatorFlood` (one authenticated connection from validator `me`, as its own software
would open it, that sends one kind of message as fast as TCP takes it and never reads what the
node sends back) and its tally. The kinds:
- `sync-flood`: SyncRequests for ranges of committed blocks, from height 1 up to `--height`,
  each the largest a response may carry (the answering node reads SQLite and encodes);
- `block-flood`: BlockRequests for a known block and as many of its ancestors as allowed;
- `gossip-fill`: mempool gossip of distinct, valid key-value transactions (fills mempools).
May not: import the node's runtime or the replica; it speaks the transport's handshake and
frames and the wire format, as a Byzantine validator's own program would.

Run it with the validator's own node stopped: a second connection for the same pair would be
closed as a duplicate.
"""

from __future__ import annotations

import itertools
import math
import socket
from dataclasses import dataclass
from typing import Final

import trio

from bft.app.kv import put_tx
from bft.core import wire
from bft.core.messages import BlockRequest, SyncRequest
from bft.core.types import BlockId
from bft.node.gossip import Transactions, encode_transactions
from crypto.keys import PrivateKey
from net.frames import FrameSealer
from net.handshake import DialerHandshake
from net.transport import DEFAULT_MAX_FRAME_BYTES

SYNC_FLOOD: Final = "sync-flood"
BLOCK_FLOOD: Final = "block-flood"
GOSSIP_FILL: Final = "gossip-fill"
FLOOD_KINDS: Final = (SYNC_FLOOD, BLOCK_FLOOD, GOSSIP_FILL)

HANDSHAKE_TIMEOUT_S: Final = 5.0
RECONNECT_PAUSE_S: Final = 0.2
# By default a gossip message stays well inside a frame, as the node's own gossip does.
GOSSIP_MESSAGE_BYTES: Final = DEFAULT_MAX_FRAME_BYTES // 4
SMALL_RCVBUF_BYTES: Final = 4096

Address = tuple[str, int]


@dataclass(slots=True)
class FloodTally:
    connections: int = 0
    handshakes_refused: int = 0
    messages_sent: int = 0
    bytes_sent: int = 0
    disconnects: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "handshakes_refused": self.handshakes_refused,
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "disconnects": self.disconnects,
        }


@dataclass(frozen=True, slots=True)
class ValidatorFlood:
    """Validator `key` (of `chain_id`) floods the node at `address` whose key is `peer_key`.

    `height` is the top of the sync ranges asked for; `block_id` the block `block-flood` asks
    for; `rate_per_s` caps messages per second (0: as fast as TCP takes them); `tx_size_bytes`
    the size of each gossiped transaction and `message_bytes` of each gossip message (up to a
    frame: large frames test the node's bound on what it buffers unread)."""

    kind: str
    key: PrivateKey
    chain_id: str
    peer_key: bytes
    address: Address
    duration_s: float
    height: int = 1
    block_id: BlockId | None = None
    rate_per_s: float = 0.0
    tx_size_bytes: int = 256
    message_bytes: int = GOSSIP_MESSAGE_BYTES

    def __post_init__(self) -> None:
        if self.kind not in FLOOD_KINDS:
            raise ValueError(f"unknown flood {self.kind!r}; choose from {', '.join(FLOOD_KINDS)}")
        if self.kind == BLOCK_FLOOD and self.block_id is None:
            raise ValueError("block-flood needs a block id")
        if not 0 < self.duration_s < math.inf or self.rate_per_s < 0 or self.height < 1:
            raise ValueError("duration must be positive and finite, rate non-negative, height >= 1")

    def payload(self, n: int) -> bytes:
        """The `n`th message of the flood, encoded for the wire."""
        if self.kind == SYNC_FLOOD:
            start = 1 + n % self.height
            return wire.encode(SyncRequest(start, wire.MAX_BLOCKS_PER_RESPONSE))
        if self.kind == BLOCK_FLOOD:
            assert self.block_id is not None
            return wire.encode(BlockRequest(self.block_id, wire.MAX_BLOCKS_PER_RESPONSE))
        per_message = max(1, self.message_bytes // self.tx_size_bytes)
        txs = tuple(self._tx(n * per_message + k) for k in range(per_message))
        return encode_transactions(Transactions(txs))

    def _tx(self, n: int) -> bytes:
        """A distinct, valid key-value put of about `tx_size_bytes` bytes."""
        key = f"flood-{self.key.public_key.hex()[:8]}-{n}"
        value = "x" * max(0, self.tx_size_bytes - len(put_tx(key, "")))
        return put_tx(key, value)


async def _open(flood: ValidatorFlood, tally: FloodTally) -> tuple[trio.SocketStream, FrameSealer] | None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF_BYTES)
        with trio.fail_after(HANDSHAKE_TIMEOUT_S):
            await sock.connect(flood.address)
            stream = trio.SocketStream(sock)
            handshake = DialerHandshake(flood.key, flood.chain_id, flood.peer_key)
            await stream.send_all(handshake.start())
            while handshake.result is None:
                data = await stream.receive_some(4096)
                if not data:
                    raise OSError("closed during the handshake")
                reply = handshake.feed(data)
                if reply:
                    await stream.send_all(reply)
    except Exception:
        sock.close()
        tally.handshakes_refused += 1
        return None
    tally.connections += 1
    return stream, FrameSealer(handshake.result.send_key, DEFAULT_MAX_FRAME_BYTES)


async def run_flood(flood: ValidatorFlood, tally: FloodTally) -> None:
    """Flood for `duration_s`, reconnecting when the node closes the connection; counts into
    `tally`."""
    numbers = itertools.count()
    pause_s = 1.0 / flood.rate_per_s if flood.rate_per_s > 0 else 0.0
    with trio.move_on_after(flood.duration_s):
        while True:
            opened = await _open(flood, tally)
            if opened is None:
                await trio.sleep(RECONNECT_PAUSE_S)
                continue
            stream, sealer = opened
            try:
                while True:
                    frame = sealer.seal(flood.payload(next(numbers)))
                    await stream.send_all(frame)
                    tally.messages_sent += 1
                    tally.bytes_sent += len(frame)
                    await trio.sleep(pause_s)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                tally.disconnects += 1
            finally:
                await trio.aclose_forcefully(stream)
            await trio.sleep(RECONNECT_PAUSE_S)
