"""The fault machine of one directed p2p link (sans-I/O): frames in, frames out at their time.

Owns: `LinkFaults` (what a link does to frames), `FrameSplitter` (a byte stream cut into whole
length-prefixed frames, refusing a huge announced length before buffering its body), `Link` (one
directed link's faults, seeded random decisions, token bucket and counters) and `DelayLine` (the
frames of one direction of one connection on their way, with `feed(frame, now)`, `due(now)` and
`next_deadline()`). May not: do I/O, read a clock, log, or look inside a frame: the relay sees
only ciphertext, so a frame is opaque bytes here (its 4-byte length included).

Decisions, all taken when a frame is read (`feed`), in this order, from the link's own
`random.Random` (seeded from the relay seed and the link, so the same seed and the same frames
give the same decisions): cut (discarded, no draw), then one draw each for drop, duplicate and
reorder, then one for the delay when there is jitter. So a change of faults applies to frames
read after it, except the bandwidth cap, which is applied when a frame leaves and so holds at
once for frames already queued.

- Delay: delivery time = arrival + a sample of `delay_s` with `jitter_s` (clamped at 0), never
  before the previous frame's: the line keeps order. "uniform" draws from delay ± jitter;
  "normal" has mean delay and standard deviation jitter; "pareto" (shape 2.5) never goes below
  delay and adds a heavy tail whose mean is jitter, cut at 100 jitters so that one sample
  cannot stall a link for ever.
- Reorder: the frame is held back and delivered right after the next frame of the line (the
  next one is then not itself held). If the input ends first it goes last.
- Duplicate: the frame is delivered twice, back to back (each copy pays the bandwidth).
- Bandwidth: a token bucket per link (shared by its connections) that holds `BURST_S` seconds
  of bytes; a frame goes when its bytes fit, and one larger than the bucket goes when the
  bucket is full and leaves it in debt, so the long-run rate is exactly the cap.
- Cut: a frame read is discarded; `DelayLine.discard` throws away what a line already holds.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, fields
from typing import Literal, get_args

Distribution = Literal["uniform", "normal", "pareto"]
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)
LENGTH_BYTES = 4
# Seconds of traffic the token bucket holds: small, so a capped link is smooth at its rate.
BURST_S = 0.01
PARETO_SHAPE = 2.5
# The pareto tail is cut at this many jitters above the delay.
PARETO_CAP = 100.0
# Float slack of the token bucket: a frame due "exactly now" must not miss by a rounding error.
_TOKEN_SLACK_BYTES = 0.01


@dataclass(frozen=True, slots=True)
class LinkFaults:
    """What one directed link does to the frames it carries. The default is a perfect link.

    Contract: construction raises ValueError for a negative or non-finite time, a rate outside
    [0, 1], an unknown distribution or a bandwidth that is not positive.
    """

    delay_s: float = 0.0
    jitter_s: float = 0.0
    distribution: Distribution = "uniform"
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    bandwidth_bytes_per_s: float | None = None
    cut: bool = False

    def __post_init__(self) -> None:
        for name in ("delay_s", "jitter_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("drop_rate", "duplicate_rate", "reorder_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        rate = self.bandwidth_bytes_per_s
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"bandwidth_bytes_per_s must be positive or None, got {rate!r}")

    @property
    def is_clean(self) -> bool:
        """Whether this is the perfect link."""
        return self == NO_FAULTS

    def changed_fields(self) -> dict[str, object]:
        """The fields that differ from the perfect link (for log lines and reports)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) != getattr(NO_FAULTS, f.name)
        }


NO_FAULTS = LinkFaults()


class FrameOversize(Exception):
    """A length prefix above the cap: the stream cannot be split any further."""

    def __init__(self, length: int, cap: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the cap of {cap}")
        self.length = length
        self.cap = cap


class FrameSplitter:
    """Cuts a byte stream into whole frames (4-byte big-endian length, then that many bytes).

    Contract: `feed` returns the frames completed so far, each with its length prefix, in order,
    and keeps the rest (at most one partial frame plus what was fed after it). A length above
    `max_frame_bytes` is found as soon as its 4 bytes are in, before any of the body is kept:
    `feed` still returns the frames before it, `refused` is then set, everything after it is
    thrown away, and every later `feed` raises it (a stream cannot resynchronise).
    """

    __slots__ = ("_buffer", "_failed", "_max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        if max_frame_bytes < 0:
            raise ValueError(f"max_frame_bytes must be >= 0, got {max_frame_bytes}")
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._failed: FrameOversize | None = None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held that are not yet part of a returned frame."""
        return len(self._buffer)

    @property
    def refused(self) -> FrameOversize | None:
        """The oversize length that ended the stream, if one did."""
        return self._failed

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        if self._failed is not None:
            raise self._failed
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        start = 0
        while len(buffer) - start >= LENGTH_BYTES:
            length = int.from_bytes(buffer[start : start + LENGTH_BYTES], "big")
            if length > self._max_frame_bytes:
                self._failed = FrameOversize(length, self._max_frame_bytes)
                buffer.clear()
                return frames
            end = start + LENGTH_BYTES + length
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[start:end]))
            start = end
        del buffer[:start]
        return frames


@dataclass(frozen=True, slots=True)
class LinkStats:
    """Counters of one directed link since the relay started (all connections together).

    `frames`/`bytes`: read from the source (length prefixes included); `delivered`: frame copies
    handed to the destination's stream; `dropped`, `duplicated`, `reordered`: frames so decided;
    `cut_discarded`: frames thrown away by a cut (on arrival or already queued); `connections`:
    connections that carried the link; `refused_oversize`: connections closed for a length above
    the cap; `buffered_bytes`: held right now (partial frames, queued frames, a batch being written).
    """

    frames: int = 0
    bytes: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    cut_discarded: int = 0
    connections: int = 0
    refused_oversize: int = 0
    buffered_bytes: int = 0


class Link:
    """One directed link: its current faults, its random decisions, its token bucket, its counters.

    Contract: the same (seed, src, dst) and the same sequence of `feed` calls on its lines give
    the same decisions. `set_faults` takes effect for frames read afterwards (the bandwidth cap at
    once); discarding what is queued on a cut is the caller's job (`DelayLine.discard`).
    """

    __slots__ = (
        "_rng",
        "_tokens",
        "_tokens_at",
        "buffered_bytes",
        "connections",
        "cut_discarded",
        "delivered",
        "dropped",
        "dst",
        "duplicated",
        "faults",
        "frames",
        "frames_bytes",
        "refused_oversize",
        "reordered",
        "src",
    )

    def __init__(self, src: int, dst: int, seed: int, faults: LinkFaults = NO_FAULTS) -> None:
        self.src = src
        self.dst = dst
        self.faults = faults
        # A string seed is hashed with SHA-512 by `random`: stable across runs and Python versions.
        self._rng = random.Random(f"bft-chaos-link:{seed}:{src}:{dst}")
        self._tokens = 0.0
        # None: the bucket is full the next time it is looked at (after a start or a new cap).
        self._tokens_at: float | None = None
        self.frames = 0
        self.frames_bytes = 0
        self.delivered = 0
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0
        self.cut_discarded = 0
        self.connections = 0
        self.refused_oversize = 0
        self.buffered_bytes = 0

    def set_faults(self, faults: LinkFaults) -> None:
        if faults.bandwidth_bytes_per_s != self.faults.bandwidth_bytes_per_s:
            self._tokens_at = None
        self.faults = faults

    def stats(self) -> LinkStats:
        return LinkStats(
            frames=self.frames,
            bytes=self.frames_bytes,
            delivered=self.delivered,
            dropped=self.dropped,
            duplicated=self.duplicated,
            reordered=self.reordered,
            cut_discarded=self.cut_discarded,
            connections=self.connections,
            refused_oversize=self.refused_oversize,
            buffered_bytes=self.buffered_bytes,
        )

    # --- decisions -----------------------------------------------------------------------------

    def draw(self) -> tuple[bool, bool, bool, float]:
        """(drop, duplicate, reorder, delay_s) for the next frame read, with the current faults."""
        faults = self.faults
        rng = self._rng
        drop = rng.random() < faults.drop_rate
        duplicate = rng.random() < faults.duplicate_rate
        reorder = rng.random() < faults.reorder_rate
        return drop, duplicate, reorder, self._sample_delay()

    def _sample_delay(self) -> float:
        faults = self.faults
        delay, jitter = faults.delay_s, faults.jitter_s
        if jitter == 0:
            return delay
        if faults.distribution == "uniform":
            sample = delay + self._rng.uniform(-jitter, jitter)
        elif faults.distribution == "normal":
            sample = self._rng.gauss(delay, jitter)
        else:
            excess = jitter * (PARETO_SHAPE - 1) * (self._rng.paretovariate(PARETO_SHAPE) - 1)
            sample = delay + min(excess, PARETO_CAP * jitter)
        return max(0.0, sample)

    # --- token bucket --------------------------------------------------------------------------

    def _capacity(self, rate: float) -> float:
        return rate * BURST_S

    def _refill(self, rate: float, now: float) -> None:
        capacity = self._capacity(rate)
        if self._tokens_at is None:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + max(0.0, now - self._tokens_at) * rate)
        self._tokens_at = now

    def take(self, size_bytes: int, now: float) -> bool:
        """Spend the tokens of a frame of `size_bytes` if it may leave now."""
        rate = self.faults.bandwidth_bytes_per_s
        if rate is None:
            return True
        self._refill(rate, now)
        need = min(float(size_bytes), self._capacity(rate))
        if self._tokens + _TOKEN_SLACK_BYTES < need:
            return False
        self._tokens -= size_bytes
        return True

    def ready_at(self, size_bytes: int) -> float | None:
        """When a frame of `size_bytes` may leave; None if at once (no cap, or the bucket unread)."""
        rate = self.faults.bandwidth_bytes_per_s
        if rate is None or self._tokens_at is None:
            return None
        need = min(float(size_bytes), self._capacity(rate))
        if self._tokens + _TOKEN_SLACK_BYTES >= need:
            return self._tokens_at
        return self._tokens_at + (need - self._tokens) / rate


@dataclass(slots=True)
class _Entry:
    at: float
    frame: bytes
    copies: int


class DelayLine:
    """The frames of one direction of one connection, between the source and the destination.

    Contract: `feed(frame, now)` applies the link's faults to a frame read at `now`; `due(now)`
    returns the frame copies whose time has come and whose bytes the bandwidth allows, in
    delivery order; `next_deadline()` is when `due` may next return something (None: nothing is
    waiting on time). `buffered_bytes` counts each held frame once. After `close_input` the line
    takes no more frames and releases a frame held for reordering.
    """

    __slots__ = ("_buffered", "_held", "_input_closed", "_last_at", "_link", "_queue")

    def __init__(self, link: Link) -> None:
        self._link = link
        self._queue: deque[_Entry] = deque()
        self._held: _Entry | None = None
        self._last_at = -math.inf
        self._buffered = 0
        self._input_closed = False

    @property
    def link(self) -> Link:
        return self._link

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    @property
    def empty(self) -> bool:
        return not self._queue and self._held is None

    @property
    def input_closed(self) -> bool:
        return self._input_closed

    def feed(self, frame: bytes, now: float) -> None:
        if self._input_closed:
            raise RuntimeError("feed after close_input")
        link = self._link
        link.frames += 1
        link.frames_bytes += len(frame)
        if link.faults.cut:
            link.cut_discarded += 1
            return
        drop, duplicate, reorder, delay_s = link.draw()
        if drop:
            link.dropped += 1
            return
        at = max(now + delay_s, self._last_at)
        self._last_at = at
        if duplicate:
            link.duplicated += 1
        entry = _Entry(at, frame, 2 if duplicate else 1)
        self._add_bytes(len(frame))
        held = self._held
        if held is not None:
            self._queue.append(entry)
            held.at = at
            self._queue.append(held)
            self._held = None
        elif reorder:
            link.reordered += 1
            self._held = entry
        else:
            self._queue.append(entry)

    def due(self, now: float, max_bytes: int | None = None) -> list[bytes]:
        """The copies due at `now`; with `max_bytes`, stop once that many bytes are out (at
        least one copy goes if any is due)."""
        out: list[bytes] = []
        out_bytes = 0
        link = self._link
        queue = self._queue
        while queue and queue[0].at <= now:
            entry = queue[0]
            size = len(entry.frame)
            if max_bytes is not None and out and out_bytes + size > max_bytes:
                break
            if not link.take(size, now):
                break
            out.append(entry.frame)
            out_bytes += size
            link.delivered += 1
            entry.copies -= 1
            if entry.copies == 0:
                queue.popleft()
                self._add_bytes(-size)
        return out

    def next_deadline(self) -> float | None:
        if not self._queue:
            return None
        head = self._queue[0]
        ready = self._link.ready_at(len(head.frame))
        return head.at if ready is None else max(head.at, ready)

    def close_input(self, now: float) -> None:
        """No more frames will be fed; a frame held for reordering goes last."""
        self._input_closed = True
        held = self._held
        if held is not None:
            held.at = max(now, self._last_at)
            self._queue.append(held)
            self._held = None

    def discard(self) -> int:
        """Throw away every frame held (a cut): counted as `cut_discarded`; how many."""
        count = len(self._queue) + (self._held is not None)
        self._link.cut_discarded += count
        self.clear()
        return count

    def clear(self) -> None:
        """Forget every frame held, uncounted (the connection is gone)."""
        self._queue.clear()
        self._held = None
        self._add_bytes(-self._buffered)

    def _add_bytes(self, delta: int) -> None:
        self._buffered += delta
        self._link.buffered_bytes += delta


__all__ = [
    "BURST_S",
    "DISTRIBUTIONS",
    "NO_FAULTS",
    "DelayLine",
    "Distribution",
    "FrameOversize",
    "FrameSplitter",
    "Link",
    "LinkFaults",
    "LinkStats",
]
