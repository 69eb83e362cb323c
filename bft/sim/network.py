"""The simulated network: who receives a message, when, and how many times.

Owns: `Instance` (a running copy of a validator), `NetworkParams`, `TimePartition` and
`Network.route`, which turns one send into zero or more (delivery time, destination instance)
pairs using a seeded random source.

Model (partial synchrony with a global stabilisation time, GST):
- Before GST a message may be dropped or duplicated, and its delay is drawn from a wide
  distribution; after GST nothing is dropped or duplicated and every delay is at most `delta_s`.
  A message sent at time t always arrives by max(t, GST) + delta_s if it is not dropped.
- Time partitions (random groups of validator indices) are active in [start_s, end_s) before
  GST; a message sent across groups is held and delivered after GST (it is delayed, not lost).
- View partitions (Twins) apply to a message by its view v: it reaches only the instances in the
  sender's group of v's partition; messages without a view (SyncInfo, BlockRequest,
  BlockResponse, undecodable bytes) always pass. View partitions also lift at GST, so that a
  scenario whose views have no quorum group can still be required to be live afterwards.
- Send(to=j) reaches j's instances; Broadcast reaches every instance of every other index.
  Nothing is ever delivered to the sender's own index.
May not: encode, decode or interpret messages (the harness passes the view in), or hold a clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Instance:
    """One running program: validator `index`, `copy` 0 normally, 1 for a Twins twin."""

    index: int
    copy: int = 0

    def __str__(self) -> str:
        return f"{self.index}" if self.copy == 0 else f"{self.index}'{self.copy}"


@dataclass(frozen=True, slots=True)
class NetworkParams:
    gst_s: float
    drop_rate: float
    dup_rate: float
    # Before GST a delay is uniform in [min_delay_s, max_delay_s]; after GST in [min_delay_s, delta_s].
    min_delay_s: float
    max_delay_s: float
    delta_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay_s <= self.delta_s:
            raise ValueError("need 0 <= min_delay_s <= delta_s")
        if self.max_delay_s < self.min_delay_s:
            raise ValueError("need max_delay_s >= min_delay_s")
        if not (0 <= self.drop_rate < 1 and 0 <= self.dup_rate < 1):
            raise ValueError("rates must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class TimePartition:
    """Validator indices split into `groups` during [start_s, end_s) (and never after GST)."""

    start_s: float
    end_s: float
    groups: tuple[frozenset[int], ...]

    def separates(self, a: int, b: int) -> bool:
        return not any(a in g and b in g for g in self.groups)


ViewPartition = tuple[frozenset[Instance], ...]


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered_scheduled: int = 0
    dropped: int = 0
    duplicated: int = 0
    held: int = 0


class Network:
    """Routes sends between instances; all randomness comes from the `rng` passed in."""

    def __init__(
        self,
        instances: Iterable[Instance],
        params: NetworkParams,
        rng: random.Random,
        time_partitions: Sequence[TimePartition] = (),
        view_partitions: Mapping[int, ViewPartition] | None = None,
    ) -> None:
        self.params = params
        self._rng = rng
        self._instances = sorted(instances)
        self._by_index: dict[int, list[Instance]] = {}
        for inst in self._instances:
            self._by_index.setdefault(inst.index, []).append(inst)
        self._time_partitions = tuple(time_partitions)
        self._view_groups: dict[int, dict[Instance, int]] = {}
        for view, groups in (view_partitions or {}).items():
            self._view_groups[view] = {i: g for g, grp in enumerate(groups) for i in grp}
        self.stats = NetworkStats()

    @property
    def instances(self) -> list[Instance]:
        return list(self._instances)

    def recipients(self, src: Instance, to: int | None) -> list[Instance]:
        """The instances a Send(to) (or a Broadcast, `to` None) from `src` is addressed to."""
        if to is None:
            return [i for i in self._instances if i.index != src.index]
        if to == src.index:
            return []
        return list(self._by_index.get(to, ()))

    def _blocked(self, now: float, src: Instance, dst: Instance, view: int | None) -> bool:
        """True if a partition keeps this message from `dst` until GST."""
        if now >= self.params.gst_s:
            return False
        for p in self._time_partitions:
            if p.start_s <= now < p.end_s and p.separates(src.index, dst.index):
                return True
        if view is not None:
            groups = self._view_groups.get(view)
            if groups is not None:
                g_src, g_dst = groups.get(src), groups.get(dst)
                if g_src is None or g_src != g_dst:
                    return True
        return False

    def _delay(self, now: float) -> float:
        p = self.params
        if now >= p.gst_s:
            return self._rng.uniform(p.min_delay_s, p.delta_s)
        delay = self._rng.uniform(p.min_delay_s, p.max_delay_s)
        # Partial synchrony: whatever was sent before GST arrives by GST + delta.
        latest = p.gst_s + self._rng.uniform(p.min_delay_s, p.delta_s)
        return min(delay, latest - now)

    def route(
        self, now: float, src: Instance, to: int | None, view: int | None
    ) -> list[tuple[float, Instance]]:
        """Deliveries (absolute time, destination) for one message sent by `src` at `now`."""
        out: list[tuple[float, Instance]] = []
        p = self.params
        pre_gst = now < p.gst_s
        for dst in self.recipients(src, to):
            self.stats.sent += 1
            if self._blocked(now, src, dst, view):
                self.stats.held += 1
                out.append((p.gst_s + self._rng.uniform(p.min_delay_s, p.delta_s), dst))
                continue
            if pre_gst and self._rng.random() < p.drop_rate:
                self.stats.dropped += 1
                continue
            out.append((now + self._delay(now), dst))
            if pre_gst and self._rng.random() < p.dup_rate:
                self.stats.duplicated += 1
                out.append((now + self._delay(now), dst))
        self.stats.delivered_scheduled += len(out)
        return out
