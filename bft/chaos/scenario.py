"""Scenario files for `bft chaos run`: parse and validate a scenario TOML into a frozen `Scenario`.

Owns: the scenario format (documented in `configs/scenarios/README.md`), the duration syntax
(`parse_duration`), the action vocabulary that timeline entries and the nemesis both speak
(`Partition`, `Heal`, `Kill`, `Restart`, `Wipe`, `Pause`, `Resume`, `SetLinks`, `ClearLinks`,
`Skew`: the closed union `Action`), the link-fault field names the relay must understand
(`LINK_FAULT_FIELDS`, `CLEAN_LINK_FAULTS`), and `ScenarioError`.
May not: start, signal or touch anything (the runner does), draw random numbers (the nemesis in
`bft.chaos.nemesis` does, from the seed only), or read any file but the scenario itself.

Every problem with a file is one `ScenarioError` naming the file, the table or timeline entry
(numbered from 1 in file order) and the key at fault, e.g.
`configs/scenarios/x.toml: [[timeline]] entry 3 (at 20s): kill: node 7 is not a node (0..3)`.
Everything is resolved here, against the node count: node sets, "all" links, `{ node = k }`
links, partition sides, so that what the timeline holds is concrete actions at concrete times.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from bft.adversary import BEHAVIOURS
from bft.chaos.record import OP_KINDS
from bft.node.config import ConsensusSettings
from bft.node.errors import ConfigError


class ScenarioError(ValueError):
    """A scenario file is missing, malformed or inconsistent; the message names the file, the
    table or timeline entry, and the key."""


# Links and their faults

Link = tuple[int, int]  # a directed p2p link (from, to): what `from` sends, `to` receives
LinkValue = float | int | str | bool

# The fields of the relay's per-link fault state, with their clean values: a link whose fields
# all hold these is a plain pipe. `distribution` shapes the delay's jitter.
CLEAN_LINK_FAULTS: Final[Mapping[str, LinkValue]] = MappingProxyType(
    {
        "delay_s": 0.0,
        "jitter_s": 0.0,
        "distribution": "uniform",
        "drop_rate": 0.0,
        "duplicate_rate": 0.0,
        "reorder_rate": 0.0,
        "bandwidth_bytes_per_s": 0,  # 0: unlimited
        "cut": False,
    }
)
LINK_FAULT_FIELDS: Final = tuple(CLEAN_LINK_FAULTS)
DISTRIBUTIONS: Final = ("uniform", "normal", "pareto")

# Which link-fault fields each link action sets (and its lifting step clears).
LINK_KIND_FIELDS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "delay": ("delay_s", "jitter_s", "distribution"),
        "drop": ("drop_rate",),
        "duplicate": ("duplicate_rate",),
        "reorder": ("reorder_rate",),
        "bandwidth": ("bandwidth_bytes_per_s",),
        "cut": ("cut",),
    }
)

# Fault kinds, in the canonical order the nemesis draws from (so the order of a file's
# `faults` table never changes a plan).
PROCESS_FAULT_KINDS: Final = ("kill", "wipe", "pause", "skew")
LINK_FAULT_KINDS: Final = tuple(LINK_KIND_FIELDS)
FAULT_KINDS: Final = ("partition", *PROCESS_FAULT_KINDS, *LINK_FAULT_KINDS)
# Every action a timeline entry may hold (exactly one per entry).
TIMELINE_ACTIONS: Final = (*FAULT_KINDS, "heal", "restart", "resume", "clear")


# The actions: what the runner does to the cluster at one instant.


@dataclass(frozen=True, slots=True)
class Partition:
    """Split the cluster: links between different groups carry nothing. `groups` cover every
    node, at least two of them, each sorted, ordered by their smallest node. Replaces any
    partition in force; link faults stay."""

    groups: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class Heal:
    """End the partition and clear every fault on every link."""


@dataclass(frozen=True, slots=True)
class Kill:
    """kill -9 these nodes' processes; they stay down until a `Restart`."""

    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Restart:
    """Start these nodes' processes again, with their data directories as they are (a node
    still running is stopped first, gracefully)."""

    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Wipe:
    """kill -9 these nodes and delete their data directories (blocks, journal, safety state);
    they stay down until a `Restart`, then rejoin by block sync."""

    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Pause:
    """SIGSTOP these nodes; they stay frozen until a `Resume` (or a `Kill`/`Wipe`/`Restart`)."""

    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Resume:
    """SIGCONT these nodes."""

    nodes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SetLinks:
    """Set these link-fault fields (names from `LINK_FAULT_FIELDS`) on each of `links`; the
    other fields of those links keep their values."""

    links: tuple[Link, ...]
    changes: Mapping[str, LinkValue]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.changes) - set(LINK_FAULT_FIELDS))
        if unknown or not self.changes or not self.links:
            raise ValueError(f"SetLinks needs links and known fields, got {self.links!r} {unknown!r}")
        object.__setattr__(self, "changes", MappingProxyType(dict(self.changes)))


@dataclass(frozen=True, slots=True)
class ClearLinks:
    """Put these fields (default: all) of each of `links` back to their clean values."""

    links: tuple[Link, ...]
    fields: tuple[str, ...] = LINK_FAULT_FIELDS

    def __post_init__(self) -> None:
        if not self.links or not self.fields or not set(self.fields) <= set(LINK_FAULT_FIELDS):
            raise ValueError(f"ClearLinks needs links and known fields, got {self.links!r} {self.fields!r}")


@dataclass(frozen=True, slots=True)
class Skew:
    """Restart `node` with its timers running `rate` times as fast as real time (2.0: every
    timeout fires after half its nominal duration; 1.0: an honest clock)."""

    node: int
    rate: float


Action = Partition | Heal | Kill | Restart | Wipe | Pause | Resume | SetLinks | ClearLinks | Skew


# The scenario


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """The [cluster] table. `byzantine` maps a validator index to a behaviour name of
    `bft.adversary.BEHAVIOURS` (at most f of them); `clock_rate` holds the nodes whose clock is
    not 1.0; `liveness_bound_s` None means "auto" (see `bft.chaos.nemesis.Plan.liveness_bound_s`)."""

    nodes: int = 4
    byzantine: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    clock_rate: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    liveness_bound_s: float | None = None

    @property
    def f(self) -> int:
        return (self.nodes - 1) // 3

    @property
    def honest(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.nodes) if i not in self.byzantine)

    def rate_of(self, node: int) -> float:
        return self.clock_rate.get(node, 1.0)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """The [load] table: `clients` concurrent clients issuing `rate` operations per second in
    all, drawn from `mix` (weights by op kind, `bft.chaos.record.OP_KINDS`) over `keys` keys.
    Without a [load] table (or with rate 0) there is no load."""

    clients: int = 0
    rate: float = 0.0
    mix: Mapping[str, float] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(OP_KINDS, 1.0)))
    keys: int = 16

    @property
    def enabled(self) -> bool:
        return self.rate > 0


@dataclass(frozen=True, slots=True)
class NemesisSpec:
    """The [nemesis] table (kind "random"): faults start no earlier than `start_s`, none is
    active in the last `stop_s` of the run, `interval_s` is the mean (exponential) gap between
    the end of one fault and the start of the next, each lasts a uniform draw in `length_s`,
    and the kind is drawn by `faults` weights (keys from `FAULT_KINDS`, all > 0)."""

    start_s: float
    stop_s: float
    interval_s: float
    length_s: tuple[float, float]
    faults: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One [[timeline]] entry, resolved: `action` at `at_s`, and, when the fault has a `for`
    (or is a wipe, which always restarts), `lift` at `at_s + for_s`. `number` is the entry's
    position in the file (from 1); `kind` the action's key in the file."""

    number: int
    at_s: float
    kind: str
    action: Action
    for_s: float | None = None
    lift: Action | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed, validated scenario. `consensus` is the nodes' full [consensus] table (the
    built-in defaults with the file's overrides applied); `consensus_overrides` names the keys
    the file set. `source` is the file's path as given (errors and reports name it)."""

    source: str
    name: str
    description: str
    duration_s: float
    seed: int
    cluster: ClusterSpec
    consensus: ConsensusSettings
    consensus_overrides: tuple[str, ...]
    load: LoadSpec
    timeline: tuple[TimelineEntry, ...]
    nemesis: NemesisSpec | None

    def check_duration(self, duration_s: float) -> None:
        """ScenarioError unless every timeline step, lifts included, falls within a run of
        `duration_s` seconds and the nemesis leaves room to act (its start before its stop)."""
        if not math.isfinite(duration_s) or duration_s <= 0:
            raise ScenarioError(f"{self.source}: duration must be positive, got {duration_s}")
        for entry in self.timeline:
            end = entry.at_s + (entry.for_s or 0.0)
            if end > duration_s:
                what = "its `for` ends" if entry.at_s <= duration_s else "it is"
                raise ScenarioError(
                    f"{self.source}: {_entry_where(entry.number, entry.at_s)}: at: "
                    f"{what} at {_fmt_s(end)}, beyond the run's duration {_fmt_s(duration_s)}"
                )
        n = self.nemesis
        if n is not None and n.start_s + n.length_s[0] > duration_s - n.stop_s:
            raise ScenarioError(
                f"{self.source}: [nemesis] start: no room for a fault between start {_fmt_s(n.start_s)} "
                f"and stop {_fmt_s(n.stop_s)} before the end ({_fmt_s(duration_s)})"
            )


# Parsing


def load_scenario(path: Path) -> Scenario:
    """Read and validate the scenario file at `path`; ScenarioError for anything wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: scenario file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario file: {exc}") from exc
    return parse_scenario(text, str(path), default_name=path.stem)


_TOP_KEYS: Final = frozenset(
    {"name", "description", "duration", "seed", "cluster", "consensus", "load", "timeline", "nemesis"}
)


def parse_scenario(text: str, source: str = "<scenario>", default_name: str = "scenario") -> Scenario:
    """Parse and validate scenario TOML; ScenarioError naming `source`, table/entry and key."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from exc
    _check_keys(doc, _TOP_KEYS, {"duration"}, source)
    name = _str(doc, "name", source, default_name)
    description = _str(doc, "description", source, "")
    duration_s = parse_duration(doc["duration"], f"{source}: duration")
    if duration_s <= 0:
        raise ScenarioError(f"{source}: duration must be positive, got {doc['duration']!r}")
    seed = doc.get("seed", 0)
    if type(seed) is not int or seed < 0:
        raise ScenarioError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    cluster = _parse_cluster(_table(doc, "cluster", source), source)
    consensus_table = _table(doc, "consensus", source)
    consensus = _parse_consensus(consensus_table, source)
    load = _parse_load(doc, source)
    raw_timeline = doc.get("timeline", [])
    if not isinstance(raw_timeline, list):
        raise ScenarioError(f"{source}: timeline must be an array of tables ([[timeline]])")
    timeline = tuple(
        _parse_entry(raw, number, cluster, source) for number, raw in enumerate(raw_timeline, start=1)
    )
    nemesis = _parse_nemesis(_table(doc, "nemesis", source), cluster, source) if "nemesis" in doc else None
    scenario = Scenario(
        source=source,
        name=name,
        description=description,
        duration_s=duration_s,
        seed=seed,
        cluster=cluster,
        consensus=consensus,
        consensus_overrides=tuple(sorted(consensus_table)),
        load=load,
        timeline=timeline,
        nemesis=nemesis,
    )
    scenario.check_duration(duration_s)
    return scenario


_DURATION_PART_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, where: str) -> float:
    """Seconds from a duration: a number of seconds (int or float) or a string of one or more
    number-unit parts, units ms, s, m, h ("500ms", "20s", "2m", "1m30s", "1.5s"). ScenarioError
    (prefixed by `where`) for anything else, including negative and non-finite values."""
    if type(value) in (int, float):
        seconds = float(value)  # type: ignore[arg-type]
        if not math.isfinite(seconds):
            raise ScenarioError(f"{where} must be a finite duration, got {value!r}")
        if seconds < 0:
            raise ScenarioError(f"{where} must not be negative, got {value!r}")
        return seconds
    if not isinstance(value, str):
        raise ScenarioError(
            f'{where} must be a duration ("500ms", "20s", "2m") or a number of seconds, '
            f"got {type(value).__name__} {value!r}"
        )
    text = value.strip()
    if text.startswith("-"):
        raise ScenarioError(f"{where} must not be negative, got {value!r}")
    position, seconds = 0, 0.0
    for match in _DURATION_PART_RE.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ScenarioError(
            f'{where}: {value!r} is not a duration (write e.g. "500ms", "20s", "2m", "1m30s")'
        )
    return seconds


def _parse_cluster(table: Mapping[str, Any], source: str) -> ClusterSpec:
    where = f"{source}: [cluster]"
    _check_keys(table, {"nodes", "byzantine", "clock_rate", "liveness_bound"}, set(), where)
    nodes = table.get("nodes", 4)
    if type(nodes) is not int or nodes < 1:
        raise ScenarioError(f"{where} nodes must be a positive integer, got {nodes!r}")
    byzantine: dict[int, str] = {}
    for key, behaviour in _index_table(table, "byzantine", nodes, where).items():
        if not isinstance(behaviour, str) or behaviour not in BEHAVIOURS:
            raise ScenarioError(
                f"{where} byzantine: node {key}: unknown behaviour {behaviour!r} "
                f"(known: {', '.join(sorted(BEHAVIOURS))})"
            )
        byzantine[key] = behaviour
    f = (nodes - 1) // 3
    if len(byzantine) > f:
        raise ScenarioError(
            f"{where} byzantine: {len(byzantine)} Byzantine nodes, but {nodes} nodes tolerate at most f = {f}"
        )
    clock_rate: dict[int, float] = {}
    for key, rate in _index_table(table, "clock_rate", nodes, where).items():
        clock_rate[key] = _positive_rate(rate, f"{where} clock_rate: node {key}")
    bound = table.get("liveness_bound", "auto")
    liveness_bound_s = None if bound == "auto" else parse_duration(bound, f"{where} liveness_bound")
    if liveness_bound_s is not None and liveness_bound_s <= 0:
        raise ScenarioError(f'{where} liveness_bound must be positive or "auto", got {bound!r}')
    return ClusterSpec(
        nodes=nodes,
        byzantine=MappingProxyType(byzantine),
        clock_rate=MappingProxyType({k: v for k, v in sorted(clock_rate.items()) if v != 1.0}),
        liveness_bound_s=liveness_bound_s,
    )


def _index_table(table: Mapping[str, Any], key: str, nodes: int, where: str) -> dict[int, Any]:
    """A table keyed by validator index ({ 3 = ... }); TOML keys are strings."""
    raw = table.get(key, {})
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} {key} must be a table of node index = value, got {raw!r}")
    out: dict[int, Any] = {}
    for text, value in raw.items():
        if not re.fullmatch(r"[0-9]+", text):
            raise ScenarioError(f"{where} {key}: {text!r} is not a node index")
        index = int(text)
        if index >= nodes:
            raise ScenarioError(f"{where} {key}: node {index} is not a node (0..{nodes - 1})")
        if index in out:
            raise ScenarioError(f"{where} {key}: node {index} appears twice")
        out[index] = value
    return dict(sorted(out.items()))


_CONSENSUS_FIELDS: Final = frozenset(f.name for f in fields(ConsensusSettings))


def _parse_consensus(table: Mapping[str, Any], source: str) -> ConsensusSettings:
    where = f"{source}: [consensus]"
    _check_keys(table, _CONSENSUS_FIELDS, set(), where)
    try:
        return ConsensusSettings(**table)
    except ConfigError as exc:  # ConsensusSettings names the key: "[consensus] max_timeout_s ..."
        raise ScenarioError(f"{source}: {exc}") from exc


def _parse_load(doc: Mapping[str, Any], source: str) -> LoadSpec:
    if "load" not in doc:
        return LoadSpec()
    table = _table(doc, "load", source)
    where = f"{source}: [load]"
    _check_keys(table, {"clients", "rate", "mix", "keys"}, set(), where)
    clients = table.get("clients", 4)
    if type(clients) is not int or clients < 0:
        raise ScenarioError(f"{where} clients must be a non-negative integer, got {clients!r}")
    rate = _number(table.get("rate", 50.0), f"{where} rate")
    if rate < 0:
        raise ScenarioError(f"{where} rate must be 0 or more operations per second, got {rate}")
    if rate > 0 and clients == 0:
        raise ScenarioError(f"{where} clients must be at least 1 when rate is {rate}")
    keys = table.get("keys", 16)
    if type(keys) is not int or keys < 1:
        raise ScenarioError(f"{where} keys must be a positive integer, got {keys!r}")
    mix = dict.fromkeys(OP_KINDS, 1.0)
    if "mix" in table:
        mix = _weights(table["mix"], OP_KINDS, f"{where} mix")
    return LoadSpec(clients=clients, rate=rate, mix=MappingProxyType(mix), keys=keys)


def _weights(raw: object, known: tuple[str, ...], where: str) -> dict[str, float]:
    """Weights by name; names from `known`; missing names weigh 0; at least one positive."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be a table of name = weight, got {raw!r}")
    _check_keys(raw, set(known), set(), where)
    out = dict.fromkeys(known, 0.0)
    for name, weight in raw.items():
        value = _number(weight, f"{where} {name}")
        if value < 0:
            raise ScenarioError(f"{where} {name} must be a weight of 0 or more, got {weight!r}")
        out[name] = value
    if not any(out.values()):
        raise ScenarioError(f"{where} needs at least one positive weight")
    return out


def _parse_nemesis(table: Mapping[str, Any], cluster: ClusterSpec, source: str) -> NemesisSpec:
    where = f"{source}: [nemesis]"
    _check_keys(table, {"kind", "start", "stop", "interval", "length", "faults"}, set(), where)
    kind = table.get("kind", "random")
    if kind != "random":
        raise ScenarioError(f'{where} kind must be "random", got {kind!r}')
    start_s = parse_duration(table.get("start", 5.0), f"{where} start")
    stop_s = parse_duration(table.get("stop", 10.0), f"{where} stop")
    interval_s = parse_duration(table.get("interval", 8.0), f"{where} interval")
    raw_length = table.get("length", ["2s", "8s"])
    if isinstance(raw_length, list):
        if len(raw_length) != 2:
            raise ScenarioError(
                f'{where} length must be one duration or a range ["2s", "8s"], got {raw_length!r}'
            )
        low = parse_duration(raw_length[0], f"{where} length")
        high = parse_duration(raw_length[1], f"{where} length")
    else:
        low = high = parse_duration(raw_length, f"{where} length")
    if low <= 0 or high < low:
        raise ScenarioError(f"{where} length must be a positive range, low to high, got {raw_length!r}")
    faults = (
        _weights(table["faults"], FAULT_KINDS, f"{where} faults")
        if "faults" in table
        else dict.fromkeys(FAULT_KINDS, 1.0)
    )
    if cluster.nodes < 2:
        impossible = [k for k in ("partition", *LINK_FAULT_KINDS) if faults[k] > 0]
        if impossible:
            raise ScenarioError(f"{where} faults {impossible[0]}: a 1-node cluster has no links")
    return NemesisSpec(
        start_s=start_s,
        stop_s=stop_s,
        interval_s=interval_s,
        length_s=(low, high),
        faults=MappingProxyType({k: v for k, v in faults.items() if v > 0}),
    )


# Timeline entries


def _entry_where(number: int, at_s: float | None) -> str:
    return f"[[timeline]] entry {number}" + ("" if at_s is None else f" (at {_fmt_s(at_s)})")


def _parse_entry(raw: object, number: int, cluster: ClusterSpec, source: str) -> TimelineEntry:
    where = f"{source}: {_entry_where(number, None)}"
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a table")
    _check_keys(raw, {"at", *TIMELINE_ACTIONS}, {"at"}, where)
    at_s = parse_duration(raw["at"], f"{where}: at")
    where = f"{source}: {_entry_where(number, at_s)}"
    actions = [k for k in raw if k != "at"]
    if not actions:
        raise ScenarioError(f"{where}: no action (one of: {', '.join(TIMELINE_ACTIONS)})")
    if len(actions) > 1:
        raise ScenarioError(f"{where}: two actions, {actions[0]!r} and {actions[1]!r}; write one per entry")
    kind = actions[0]
    action, for_s, lift = _parse_action(kind, raw[kind], cluster, f"{where}: {kind}")
    return TimelineEntry(number=number, at_s=at_s, kind=kind, action=action, for_s=for_s, lift=lift)


def _parse_action(
    kind: str, value: object, cluster: ClusterSpec, where: str
) -> tuple[Action, float | None, Action | None]:
    """(action, for_s, lift) for one timeline entry's action; `where` names entry and key."""
    n = cluster.nodes
    if kind == "heal":
        if value is not True:
            raise ScenarioError(f"{where} must be true, got {value!r}")
        return Heal(), None, None
    if kind == "partition":
        if isinstance(value, dict):
            _check_keys(value, {"groups", "for"}, {"groups"}, where)
            for_s = _for(value, where)
            return _partition(value["groups"], n, f"{where} groups"), for_s, None if for_s is None else Heal()
        return _partition(value, n, where), None, None
    if kind in ("restart", "resume"):
        nodes = _nodes(value, n, where)
        return (Restart(nodes) if kind == "restart" else Resume(nodes)), None, None
    if kind in ("kill", "wipe", "pause"):
        if isinstance(value, dict):
            _check_keys(value, {"node", "nodes", "for"}, set(), where)
            present = [k for k in ("node", "nodes") if k in value]
            if len(present) != 1:
                raise ScenarioError(f"{where} needs exactly one of 'node' and 'nodes'")
            nodes = _nodes(value[present[0]], n, f"{where} {present[0]}")
            for_s = _for(value, where)
        else:
            nodes, for_s = _nodes(value, n, where), None
        if kind == "kill":
            return Kill(nodes), for_s, None if for_s is None else Restart(nodes)
        if kind == "wipe":  # a wipe always restarts: at once, or after `for`
            return Wipe(nodes), for_s or 0.0, Restart(nodes)
        return Pause(nodes), for_s, None if for_s is None else Resume(nodes)
    if kind == "skew":
        table = _action_table(value, {"node", "rate", "for"}, {"node", "rate"}, where)
        node = _node(table["node"], n, f"{where} node")
        rate = _positive_rate(table["rate"], f"{where} rate")
        for_s = _for(table, where)
        return Skew(node, rate), for_s, None if for_s is None else Skew(node, cluster.rate_of(node))
    if kind == "clear":
        if value == "all":
            return ClearLinks(_all_links(n)), None, None
        table = _action_table(value, {"links"}, {"links"}, where)
        return ClearLinks(_links(table["links"], n, f"{where} links")), None, None
    # The link faults.
    if kind == "cut":
        table = _action_table(value, {"from", "to", "for"}, {"from", "to"}, where)
        senders = _nodes(table["from"], n, f"{where} from")
        receivers = _nodes(table["to"], n, f"{where} to")
        links = tuple(sorted({(a, b) for a in senders for b in receivers if a != b}))
        if not links:
            raise ScenarioError(f"{where}: from and to leave no link (a node has no link to itself)")
        changes: dict[str, LinkValue] = {"cut": True}
    else:
        keys = {
            "delay": ({"links", "ms", "jitter_ms", "distribution", "for"}, {"ms"}),
            "drop": ({"links", "rate", "for"}, {"rate"}),
            "duplicate": ({"links", "rate", "for"}, {"rate"}),
            "reorder": ({"links", "rate", "for"}, {"rate"}),
            "bandwidth": ({"links", "bytes_per_s", "for"}, {"bytes_per_s"}),
        }[kind]
        table = _action_table(value, *keys, where)
        links = _links(table.get("links", "all"), n, f"{where} links")
        changes = _link_changes(kind, table, where)
    for_s = _for(table, where)
    lift = None if for_s is None else ClearLinks(links, LINK_KIND_FIELDS[kind])
    return SetLinks(links, changes), for_s, lift


def _link_changes(kind: str, table: Mapping[str, Any], where: str) -> dict[str, LinkValue]:
    if kind == "delay":
        delay_ms = _number(table["ms"], f"{where} ms")
        jitter_ms = _number(table.get("jitter_ms", 0), f"{where} jitter_ms")
        for key, ms in (("ms", delay_ms), ("jitter_ms", jitter_ms)):
            if ms < 0:
                raise ScenarioError(f"{where} {key} must not be negative, got {ms}")
        distribution = table.get("distribution", "uniform")
        if distribution not in DISTRIBUTIONS:
            raise ScenarioError(
                f"{where} distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
            )
        return {"delay_s": delay_ms / 1000, "jitter_s": jitter_ms / 1000, "distribution": distribution}
    if kind == "bandwidth":
        bytes_per_s = table["bytes_per_s"]
        if type(bytes_per_s) is not int or bytes_per_s <= 0:
            raise ScenarioError(f"{where} bytes_per_s must be a positive integer, got {bytes_per_s!r}")
        return {"bandwidth_bytes_per_s": bytes_per_s}
    rate = _number(table["rate"], f"{where} rate")
    if not 0 <= rate <= 1:
        raise ScenarioError(f"{where} rate must be in [0, 1], got {rate}")
    return {LINK_KIND_FIELDS[kind][0]: rate}


def _action_table(value: object, allowed: set[str], required: set[str], where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where} must be a table ({{ {', '.join(sorted(allowed))} }}), got {value!r}")
    _check_keys(value, allowed, required, where)
    return value


def _for(table: Mapping[str, Any], where: str) -> float | None:
    if "for" not in table:
        return None
    for_s = parse_duration(table["for"], f"{where} for")
    if for_s <= 0:
        raise ScenarioError(f"{where} for must be positive, got {table['for']!r}")
    return for_s


# Nodes, links, partitions


def _node(value: object, n: int, where: str) -> int:
    if type(value) is not int:
        raise ScenarioError(f"{where} must be a node index, got {type(value).__name__} {value!r}")
    if not 0 <= value < n:
        raise ScenarioError(f"{where}: node {value} is not a node (0..{n - 1})")
    return value


def _nodes(value: object, n: int, where: str) -> tuple[int, ...]:
    """One node index or a non-empty list of distinct ones, sorted."""
    if isinstance(value, list):
        if not value:
            raise ScenarioError(f"{where}: empty list of nodes")
        nodes = [_node(v, n, where) for v in value]
        if len(set(nodes)) != len(nodes):
            raise ScenarioError(f"{where}: a node appears twice in {value!r}")
        return tuple(sorted(nodes))
    return (_node(value, n, where),)


def _all_links(n: int) -> tuple[Link, ...]:
    return tuple((a, b) for a in range(n) for b in range(n) if a != b)


def node_links(node: int, n: int) -> tuple[Link, ...]:
    """Every directed link to and from `node` in a cluster of `n`, sorted."""
    return tuple(
        sorted({(node, b) for b in range(n) if b != node} | {(a, node) for a in range(n) if a != node})
    )


def resolve_links(value: object, n: int, where: str = "links") -> tuple[Link, ...]:
    """Directed links, sorted and distinct, from `"all"`, `{ node = k }` (every link to and from k;
    a list of nodes for several) or a non-empty list of [from, to] pairs; ScenarioError otherwise."""
    return _links(value, n, where)


def _links(value: object, n: int, where: str) -> tuple[Link, ...]:
    if value == "all":
        if n < 2:
            raise ScenarioError(f"{where}: a 1-node cluster has no links")
        return _all_links(n)
    if isinstance(value, dict):
        _check_keys(value, {"node"}, {"node"}, where)
        return tuple(
            sorted({link for k in _nodes(value["node"], n, f"{where} node") for link in node_links(k, n)})
        )
    if not isinstance(value, list) or not value:
        raise ScenarioError(
            f'{where} must be "all", {{ node = K }} or a list of [from, to] pairs, got {value!r}'
        )
    links: set[Link] = set()
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise ScenarioError(f"{where}: {pair!r} is not a [from, to] pair")
        a, b = _node(pair[0], n, where), _node(pair[1], n, where)
        if a == b:
            raise ScenarioError(f"{where}: [{a}, {b}] is not a link (a node has no link to itself)")
        links.add((a, b))
    return tuple(sorted(links))


def _partition(value: object, n: int, where: str) -> Partition:
    """Groups from a list of lists of nodes; the nodes no group lists form one more group."""
    if not isinstance(value, list) or not value or not all(isinstance(g, list) for g in value):
        raise ScenarioError(
            f"{where} must be a list of groups of nodes, e.g. [[0, 1], [2, 3]], got {value!r}"
        )
    groups: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for group in value:
        nodes = _nodes(group, n, where)
        twice = seen & set(nodes)
        if twice:
            raise ScenarioError(f"{where}: node {min(twice)} is in two groups")
        seen |= set(nodes)
        groups.append(nodes)
    rest = tuple(i for i in range(n) if i not in seen)
    if rest:
        groups.append(rest)
    if len(groups) < 2:
        raise ScenarioError(f"{where}: a partition needs at least two sides, got {value!r}")
    return Partition(tuple(sorted(groups)))


# Small readers


def _check_keys(
    table: Mapping[str, Any], allowed: set[str] | frozenset[str], required: set[str], where: str
) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(table))
    if missing:
        raise ScenarioError(f"{where}: missing key {missing[0]!r}")


def _table(doc: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ScenarioError(f"{source}: {name!r} must be a table ([{name}])")
    return table


def _str(doc: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise ScenarioError(f"{where}: {key} must be a string, got {type(value).__name__} {value!r}")
    return value


def _number(value: object, where: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise ScenarioError(f"{where} must be a number, got {type(value).__name__} {value!r}")
    return float(value)  # type: ignore[arg-type]


def _positive_rate(value: object, where: str) -> float:
    rate = _number(value, where)
    if rate <= 0:
        raise ScenarioError(f"{where} must be a positive clock rate (1.0 = real time), got {rate}")
    return rate


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g}s"
