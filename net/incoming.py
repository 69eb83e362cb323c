"""What peers sent and the node has not taken yet: one channel, bounded in frames and per peer in bytes.

Owns: `IncomingChannel` (`put` for the transport's readers, `receive` / `receive_nowait` for the
one consumer) and the bytes each peer has waiting in it.
May not: interpret payloads, or block a reader for longer than the wait it is given.

Why a byte bound per peer: the frame bound alone (shared by all peers) let one validator that
sends large frames faster than the node handles them fill the channel with a thousand frames of
up to 4 MiB each, gigabytes the node holds, and every honest peer's next message waited behind
all of them. With the bound, a peer has at most `peer_bytes` waiting (always at least one frame);
its reader waits for room, which is TCP back-pressure on that peer alone, then drops.
"""

from __future__ import annotations

from collections import Counter

import trio


class IncomingChannel:
    """(peer index, payload) in arrival order; at most `max_frames` in all and, per peer,
    `peer_bytes` of payload (a peer with nothing waiting may always put one frame)."""

    def __init__(self, max_frames: int, peer_bytes: int) -> None:
        if max_frames < 1 or peer_bytes < 1:
            raise ValueError("an incoming channel needs room for at least one frame and one byte")
        self._send, self._receive = trio.open_memory_channel[tuple[int, bytes]](max_frames)
        self._peer_bytes = peer_bytes
        self._waiting_bytes: Counter[int] = Counter()
        self._room: dict[int, trio.Event] = {}

    def waiting_bytes(self, peer: int) -> int:
        """Bytes `peer` has in the channel now."""
        return self._waiting_bytes[peer]

    def _fits(self, peer: int, size: int) -> bool:
        waiting = self._waiting_bytes[peer]
        return waiting == 0 or waiting + size <= self._peer_bytes

    async def put(self, peer: int, payload: bytes, wait_s: float) -> bool:
        """Add `payload` from `peer`, waiting at most `wait_s` for room; whether it was added
        (False: the caller drops and counts it). Raises nothing for a closed channel: False."""
        size = len(payload)
        item = (peer, payload)
        if self._fits(peer, size):
            try:
                self._send.send_nowait(item)
                self._waiting_bytes[peer] += size
                return True
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        with trio.move_on_after(wait_s):
            while not self._fits(peer, size):
                await self._room.setdefault(peer, trio.Event()).wait()
            # Counted before the wait for a frame slot, so that this reader's frames (there is one
            # reader per peer) cannot overtake the bound while it waits.
            self._waiting_bytes[peer] += size
            sent = False
            try:
                await self._send.send(item)
                sent = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                if not sent:  # the wait ran out (a cancelled send sends nothing) or it closed
                    self._uncount(peer, size)
            return sent
        return False

    def _uncount(self, peer: int, size: int) -> None:
        self._waiting_bytes[peer] -= size
        if self._waiting_bytes[peer] <= 0:
            del self._waiting_bytes[peer]
        room = self._room.pop(peer, None)
        if room is not None:
            room.set()

    def _taken(self, item: tuple[int, bytes]) -> tuple[int, bytes]:
        self._uncount(item[0], len(item[1]))
        return item

    async def receive(self) -> tuple[int, bytes]:
        return self._taken(await self._receive.receive())

    def receive_nowait(self) -> tuple[int, bytes]:
        return self._taken(self._receive.receive_nowait())
