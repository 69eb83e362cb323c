"""The simulated network: who receives a message, when, and how many times.

Owns: `Instance` (a running copy of a validator), `NetworkParams`, `TimePartition`,
`AsyncPeriod`, `ViewPartition`, `format_groups` and `Network.route`, which turns one send into
zero or more (delivery time, destination instance) pairs using a seeded random source.

Model (partial synchrony with a global stabilisation time, GST):
- Before GST a message may be dropped or duplicated, and its delay is drawn from a wide
  distribution; after GST nothing is dropped or duplicated and every delay is at most `delta_s`.
  A message sent at time t always arrives by max(t, GST) + delta_s if it is not dropped.
- Time partitions (random groups of validator indices) are active in [start_s, end_s) before
  GST; a message sent across groups is held and delivered after GST (it is delayed, not lost).
- Asynchronous periods after GST: in [start_s, end_s) the network is asynchronous again, with
  their own drop and duplicate rates and delay spread, and optionally a partition of validator
  indices; whatever is sent in the period (and not dropped) arrives by end_s + delta_s, as
  before GST it does by GST + delta_s.
- View partitions (Twins', and the fault plan's) apply to a message by its view v: for v in
  [first_view, end_view) it reaches only the instances in the sender's group; messages without
  a view (SyncInfo, BlockRequest, BlockResponse, undecodable bytes) always pass. A view
  partition also heals at `heal_s` (Twins': GST): a split with no quorum group stops views from
  advancing at all, so the range alone might never be left. A held message arrives after the
  heal. An instance in none of the groups goes with copy 0 of its validator (so a plan's split
  of validator indices carries Twins' second copies along).
- Send(to=j) reaches j's instances; Broadcast reaches every instance of every other index.
  Nothing is ever delivered to the sender's own index.
May not: encode, decode or interpret messages (the harness passes the view in), or hold a clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
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


InstanceGroups = tuple[frozenset[Instance], ...]


@dataclass(frozen=True, slots=True)
class AsyncPeriod:
    """An asynchronous period after GST: [start_s, end_s) with its own drop and duplicate rates,
    delays up to `max_delay_s` (but by end_s + delta_s), and validator indices split into
    `groups` (none if empty), whose crossing messages are held until end_s."""

    start_s: float
    end_s: float
    drop_rate: float
    dup_rate: float
    max_delay_s: float
    groups: tuple[frozenset[int], ...] = ()

    def __post_init__(self) -> None:
        if not self.start_s < self.end_s:
            raise ValueError("need start_s < end_s")
        if not (0 <= self.drop_rate < 1 and 0 <= self.dup_rate < 1):
            raise ValueError("rates must be in [0, 1)")

    def separates(self, a: int, b: int) -> bool:
        return bool(self.groups) and not any(a in g and b in g for g in self.groups)


@dataclass(frozen=True, slots=True)
class ViewPartition:
    """Messages of views [first_view, end_view) sent before `heal_s` reach only the sender's
    group of `groups`; a message held back arrives after `heal_s`."""

    first_view: int
    end_view: int
    groups: InstanceGroups
    heal_s: float

    def __post_init__(self) -> None:
        if not 0 < self.first_view < self.end_view:
            raise ValueError("need 0 < first_view < end_view")

    @property
    def views(self) -> range:
        return range(self.first_view, self.end_view)

    def describe(self) -> str:
        last = self.end_view - 1
        views = f"view {last}" if self.first_view == last else f"views {self.first_view}..{last}"
        return f"{views}: {format_groups(self.groups)} (heals by {self.heal_s:.3f}s)"


def format_groups(groups: Iterable[Iterable[int | Instance]]) -> str:
    """Groups (of validator indices or of instances) as `0,1 | 2,0'1,3`."""
    return " | ".join(",".join(str(m) for m in sorted(g, key=_member_order)) for g in groups)


def _member_order(member: int | Instance) -> tuple[int, int]:
    return (member, 0) if isinstance(member, int) else (member.index, member.copy)


@dataclass(frozen=True, slots=True)
class _Phase:
    """How the network behaves now: asynchronous until `until_s`, or (no phase) synchronous."""

    until_s: float
    drop_rate: float
    dup_rate: float
    max_delay_s: float


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered_scheduled: int = 0
    dropped: int = 0
    duplicated: int = 0
    held: int = 0
    # Of `held`, those a view partition held.
    held_by_view: int = 0


class Network:
    """Routes sends between instances; all randomness comes from the `rng` passed in."""

    def __init__(
        self,
        instances: Iterable[Instance],
        params: NetworkParams,
        rng: random.Random,
        time_partitions: Sequence[TimePartition] = (),
        view_partitions: Sequence[ViewPartition] = (),
        async_periods: Sequence[AsyncPeriod] = (),
    ) -> None:
        self.params = params
        self._rng = rng
        self._instances = sorted(instances)
        self._by_index: dict[int, list[Instance]] = {}
        for inst in self._instances:
            self._by_index.setdefault(inst.index, []).append(inst)
        self._time_partitions = tuple(time_partitions)
        self._async_periods = tuple(sorted(async_periods, key=lambda a: a.start_s))
        # By view: (heal_s, each instance's group) of every view partition covering that view.
        self._view_groups: dict[int, list[tuple[float, dict[Instance, int]]]] = {}
        for p in view_partitions:
            member = {i: g for g, grp in enumerate(p.groups) for i in grp}
            for inst in self._instances:
                if inst not in member and Instance(inst.index) in member:
                    member[inst] = member[Instance(inst.index)]
            for view in p.views:
                self._view_groups.setdefault(view, []).append((p.heal_s, member))
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

    def _phase(self, now: float) -> _Phase | None:
        """Before GST, or in an asynchronous period after it: how; otherwise None."""
        p = self.params
        if now < p.gst_s:
            return _Phase(p.gst_s, p.drop_rate, p.dup_rate, p.max_delay_s)
        for a in self._async_periods:
            if a.start_s <= now < a.end_s:
                return _Phase(a.end_s, a.drop_rate, a.dup_rate, a.max_delay_s)
        return None

    def _held_until(self, now: float, src: Instance, dst: Instance, view: int | None) -> float | None:
        """When a partition that keeps this message from `dst` heals (None: none does)."""
        if now < self.params.gst_s:
            for p in self._time_partitions:
                if p.start_s <= now < p.end_s and p.separates(src.index, dst.index):
                    return self.params.gst_s
        else:
            for a in self._async_periods:
                if a.start_s <= now < a.end_s and a.separates(src.index, dst.index):
                    return a.end_s
        if view is not None:
            for heal_s, groups in self._view_groups.get(view, ()):
                if now < heal_s:
                    g_src, g_dst = groups.get(src), groups.get(dst)
                    if g_src is None or g_src != g_dst:
                        self.stats.held_by_view += 1
                        return heal_s
        return None

    def _delay(self, now: float, phase: _Phase | None) -> float:
        p = self.params
        if phase is None:
            return self._rng.uniform(p.min_delay_s, p.delta_s)
        delay = self._rng.uniform(p.min_delay_s, phase.max_delay_s)
        # Partial synchrony: whatever was sent in an asynchronous phase arrives by its end + delta.
        latest = phase.until_s + self._rng.uniform(p.min_delay_s, p.delta_s)
        return min(delay, latest - now)

    def route(
        self, now: float, src: Instance, to: int | None, view: int | None
    ) -> list[tuple[float, Instance]]:
        """Deliveries (absolute time, destination) for one message sent by `src` at `now`."""
        out: list[tuple[float, Instance]] = []
        p = self.params
        phase = self._phase(now)
        for dst in self.recipients(src, to):
            self.stats.sent += 1
            held_until = self._held_until(now, src, dst, view)
            if held_until is not None:
                self.stats.held += 1
                out.append((held_until + self._rng.uniform(p.min_delay_s, p.delta_s), dst))
                continue
            if phase is not None and self._rng.random() < phase.drop_rate:
                self.stats.dropped += 1
                continue
            out.append((now + self._delay(now, phase), dst))
            if phase is not None and self._rng.random() < phase.dup_rate:
                self.stats.duplicated += 1
                out.append((now + self._delay(now, phase), dst))
        self.stats.delivered_scheduled += len(out)
        return out
