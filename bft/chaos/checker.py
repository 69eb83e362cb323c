"""The checker of a chaos run: from what the documented HTTP API showed, prove nothing went wrong.

Owns: `check(record) -> CheckReport`, the closed set of `ViolationKind`s with `Violation`
values, the figures (`CheckFigures`), and `AgreementWatch`, the incremental agreement check the
runner feeds blocks to while it fetches them (the final check runs through the same watch, so the
two cannot disagree on what a divergence is).
May not: do I/O, look at anything but the `RunRecord` (no node internals, no logs), import
`bft.app` (the ledger is judged by the independent model in `bft.chaos.model`), or trust a node
outside `record.honest`: a Byzantine node's dump, samples and answers are ignored.

The rules, each a `ViolationKind` (only honest nodes' dumps and samples count):

- divergent_block: two honest nodes hold different block ids at one height (or one node
  reported two different blocks at one height to the watch).
- app_hash_mismatch: two honest nodes' blocks at one height carry different app hashes.
- broken_chain: a node's own dump is not the chain 1, 2, ..., top: a height is missing or
  repeated, a height is below 1, or block h's parent_id is not block h-1's id. One violation per
  node, naming the first problem and the counts.
- lost_ack: a write acknowledged as committed (outcome "ok", op put/cas/del) whose tx hash is
  not in an honest node's chain although that chain reaches the acknowledged height; and, once
  per node, a chain that ends below the highest acknowledged height.
- duplicate_tx: one tx hash more than once in one honest node's chain.
- ack_mismatch: an acknowledged write whose height (or index, when given) is not where the
  reference chain first holds its tx.
- cas_wrong: an acknowledged cas whose code (0 applied, non-zero refused) disagrees with the
  model's replay of the reference chain at the tx's position.
- wrong_read: an acknowledged get (with a height within the reference chain) whose value is not
  the model's value of the key after that height.
- stale_read: an acknowledged get whose height is below the height of a write to the same key
  acknowledged (complete_s) strictly before the get was invoked (invoke_s). A refused cas (code
  non-zero) writes nothing and does not count as a write here.
- liveness_stall: for each recovery point at t, with H(t) the highest honest height sampled at
  or before t or in each honest node's first sample at or after t (0 if none; the first look
  counts as "at t", so that a commit made just before t but sampled after it is not taken for a
  resumption, at the price of up to one sampling interval in the measured recovery): some
  honest sample must show a height above H(t) within `record.liveness_bound_s` of t. If none
  does and the last honest sample is less than the bound after t, or a new fault began (a
  `FaultEvent` of a fault kind) after t and before commits resumed and within the bound, the
  point is not judged (a figure), not a violation: the cluster was not left alone for the bound.
  The recovery time is when the first such sample was taken, minus t.
- memory_growth: see `MEMORY_*` and `_memory_violations`.

The reference chain is the honest dump with the longest valid prefix (heights 1..p, each linked
to its parent; ties to the lowest node). The model replays it, and it is where acknowledged
positions are compared, so a run whose nodes diverge is still judged as far as it can be.
Ops with outcome "fail" or "info", and acknowledged ops the record cannot place (no tx hash, no
height, no code), are counted, never violations by themselves.
Cost: O(n log n) in ops, txs and samples; memory O(txs of one chain) beyond the record.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bft.chaos.model import KvModel, Replayed, TxEffect
from bft.chaos.record import OP_KINDS, OUTCOMES, BlockRecord, ClientOp, RunRecord, StatusSample
from bft.chaos.scenario import FAULT_KINDS

# memory_growth: judged only for runs of at least MEMORY_MIN_RUN_S, for a node with at least
# MEMORY_MIN_SAMPLES RSS samples in the second quarter [d/4, d/2) and in the last quarter
# [3d/4, d] of the run (d = duration_s). A violation when the maximum RSS of the last quarter
# exceeds both MEMORY_GROWTH_FACTOR times and MEMORY_GROWTH_BYTES more than the maximum of the
# second quarter: the first quarter is warm-up (caches, the mempool filling), and a leak shows as
# growth that continues after it, while the two margins keep noise and small heaps out.
MEMORY_MIN_RUN_S = 60.0
MEMORY_MIN_SAMPLES = 3
MEMORY_GROWTH_FACTOR = 1.5
MEMORY_GROWTH_BYTES = 64 * 1024 * 1024

_WRITES = frozenset({"put", "cas", "del"})
# Per kind, at most this many violations are printed by `format_summary` (all are kept).
_SUMMARY_PER_KIND = 20


class ViolationKind(enum.StrEnum):
    """What went wrong. Values are stable: reports, dashboards and tests match on them."""

    DIVERGENT_BLOCK = "divergent_block"
    BROKEN_CHAIN = "broken_chain"
    APP_HASH_MISMATCH = "app_hash_mismatch"
    LOST_ACK = "lost_ack"
    DUPLICATE_TX = "duplicate_tx"
    ACK_MISMATCH = "ack_mismatch"
    CAS_WRONG = "cas_wrong"
    WRONG_READ = "wrong_read"
    STALE_READ = "stale_read"
    LIVENESS_STALL = "liveness_stall"
    MEMORY_GROWTH = "memory_growth"


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: its kind (a closed set) and a human detail carrying the numbers; where
    known, the run time, the node and the height it is about."""

    kind: ViolationKind
    detail: str
    t_s: float | None = None
    node: int | None = None
    height: int | None = None

    def format(self) -> str:
        where = [
            part
            for part in (
                None if self.t_s is None else f"t={self.t_s:.2f}s",
                None if self.node is None else f"node {self.node}",
                None if self.height is None else f"height {self.height}",
            )
            if part is not None
        ]
        return f"{self.kind}" + (f" ({', '.join(where)})" if where else "") + f": {self.detail}"


@dataclass(frozen=True, slots=True)
class RecoveryFigure:
    """How commits resumed after one recovery point. `recovered_after_s` is None when no rise
    was seen; `judged` is False when the run ended (its last honest sample) too soon to tell."""

    t_s: float
    what: str
    judged: bool
    recovered_after_s: float | None


@dataclass(frozen=True, slots=True)
class CheckFigures:
    """The numbers of a check. Counts of what was judged sit next to counts of what could not be."""

    writes_acknowledged: int
    ops_by_kind: dict[str, dict[str, int]]  # op kind -> outcome -> count, every pair present
    final_height: dict[int, int]  # honest node -> highest height in its dump (0: none)
    reference_node: int | None  # whose chain the model replayed (None: no honest blocks)
    reference_height: int  # how far it was replayed
    longest_stall_s: float  # longest interval with no rise of the highest honest height
    longest_stall_start_s: float | None
    recoveries: tuple[RecoveryFigure, ...]
    recoveries_not_judged: int
    heights_compared: int  # heights held by two or more honest nodes
    blocks_compared: int  # honest blocks compared with another honest node's at their height
    txs_checked: int  # acknowledged writes looked up in every honest chain
    txs_replayed: int  # txs of the reference chain through the model
    reads_checked: int  # acknowledged gets compared with the model
    cas_checked: int  # acknowledged cas compared with the model
    stale_reads_checked: int  # acknowledged gets compared with earlier acknowledged writes
    writes_not_judged: int  # acknowledged writes without a tx hash
    reads_not_judged: int  # acknowledged gets without a height, or above the reference chain
    cas_not_judged: int  # acknowledged cas without a code, or not in the replayed chain
    memory_nodes_judged: int
    ignored_dumps: tuple[int, ...]  # nodes not in record.honest whose dumps were ignored


@dataclass(frozen=True, slots=True)
class CheckReport:
    """The verdict on one run: `ok` iff there is no violation."""

    scenario: str
    seed: int
    command: str
    violations: list[Violation]
    figures: CheckFigures

    @property
    def ok(self) -> bool:
        return not self.violations

    def format_summary(self) -> str:
        """Terminal lines: the verdict, the counts and figures, each violation (at most
        `_SUMMARY_PER_KIND` per kind), and on failure the replay command and the seed."""
        f = self.figures
        verdict = "PASS" if self.ok else f"FAIL ({len(self.violations)} violations)"
        lines = [f"chaos check: {verdict}  scenario {self.scenario}  seed {self.seed}"]
        for kind in OP_KINDS:
            counts = ", ".join(f"{outcome} {f.ops_by_kind[kind][outcome]}" for outcome in OUTCOMES)
            lines.append(f"  ops {kind}: {counts}")
        lines.append(
            f"  writes acknowledged {f.writes_acknowledged}; checked: heights {f.heights_compared}"
            f" (blocks {f.blocks_compared}), txs {f.txs_checked}, replayed {f.txs_replayed},"
            f" reads {f.reads_checked}, cas {f.cas_checked}, stale-read {f.stale_reads_checked}"
        )
        lines.append(
            f"  not judged: writes {f.writes_not_judged}, reads {f.reads_not_judged},"
            f" cas {f.cas_not_judged}, recoveries {f.recoveries_not_judged}"
        )
        heights = ", ".join(f"node {n} {h}" for n, h in sorted(f.final_height.items()))
        ref = "none" if f.reference_node is None else f"node {f.reference_node} to {f.reference_height}"
        lines.append(f"  final heights: {heights or 'none'}; reference chain {ref}")
        if f.ignored_dumps:
            lines.append(f"  ignored dumps of non-honest nodes: {', '.join(map(str, f.ignored_dumps))}")
        stall_start = "" if f.longest_stall_start_s is None else f" from t={f.longest_stall_start_s:.2f}s"
        lines.append(f"  longest stall {f.longest_stall_s:.2f}s{stall_start}")
        for r in f.recoveries:
            if r.recovered_after_s is not None:
                outcome = f"commits resumed after {r.recovered_after_s:.2f}s"
            else:
                outcome = "no commit seen" + ("" if r.judged else " (not judged: run ended)")
            lines.append(f"  recovery '{r.what}' at t={r.t_s:.2f}s: {outcome}")
        lines.append(f"  memory judged on {f.memory_nodes_judged} node(s)")
        printed: dict[ViolationKind, int] = {}
        for v in self.violations:
            printed[v.kind] = printed.get(v.kind, 0) + 1
            if printed[v.kind] <= _SUMMARY_PER_KIND:
                lines.append(f"  VIOLATION {v.format()}")
        for kind, count in printed.items():
            if count > _SUMMARY_PER_KIND:
                lines.append(f"  ... and {count - _SUMMARY_PER_KIND} more {kind}")
        if not self.ok:
            lines.append(f"  replay: {self.command}  (seed {self.seed})")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Seen:
    node: int
    id: str
    app_hash: str


class AgreementWatch:
    """Agreement of honest nodes' committed blocks, fed one block at a time.

    Contract: `on_block(node, block)` compares the block with the first block seen at its height
    (from any honest node, the same node included) and returns the new violations: a
    divergent_block if the ids differ, an app_hash_mismatch if the app hashes do. A block of a
    node outside `honest` is ignored; one difference is reported once per (node, height, block).
    Memory O(heights). The final check feeds every honest dump through one watch.
    """

    __slots__ = ("_compared", "_first", "_honest", "_reported", "blocks_compared")

    def __init__(self, honest: Iterable[int]) -> None:
        self._honest = frozenset(honest)
        self._first: dict[int, _Seen] = {}
        self._compared: set[int] = set()
        self._reported: set[tuple[int, int, str, str]] = set()
        self.blocks_compared = 0

    @property
    def heights_compared(self) -> int:
        """Heights at which two honest nodes' blocks were compared."""
        return len(self._compared)

    def on_block(self, node: int, block: BlockRecord, t_s: float | None = None) -> list[Violation]:
        if node not in self._honest:
            return []
        first = self._first.get(block.height)
        if first is None:
            self._first[block.height] = _Seen(node, block.id, block.app_hash)
            return []
        if first.node != node:
            self.blocks_compared += 1
            self._compared.add(block.height)
        violations: list[Violation] = []
        if block.id != first.id and self._once(node, block, "id"):
            violations.append(
                Violation(
                    ViolationKind.DIVERGENT_BLOCK,
                    f"node {node} holds block {_short(block.id)} at height {block.height}, "
                    f"node {first.node} holds block {_short(first.id)}",
                    t_s,
                    node,
                    block.height,
                )
            )
        if block.app_hash != first.app_hash and self._once(node, block, "app"):
            same = "the same block" if block.id == first.id else "different blocks"
            violations.append(
                Violation(
                    ViolationKind.APP_HASH_MISMATCH,
                    f"node {node} has app hash {_short(block.app_hash)} at height {block.height}, "
                    f"node {first.node} has {_short(first.app_hash)} ({same})",
                    t_s,
                    node,
                    block.height,
                )
            )
        return violations

    def _once(self, node: int, block: BlockRecord, what: str) -> bool:
        key = (node, block.height, block.id + "/" + block.app_hash, what)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True


def _short(hex_id: str) -> str:
    return hex_id[:16]


@dataclass(frozen=True, slots=True)
class _Chain:
    """One honest node's dump: its blocks by height (first occurrence), and the length of its
    valid prefix (heights 1..prefix present, each linked to its parent)."""

    node: int
    by_height: dict[int, BlockRecord]
    prefix: int
    top: int


def _chain(node: int, dump: Sequence[BlockRecord], violations: list[Violation]) -> _Chain:
    by_height: dict[int, BlockRecord] = {}
    repeated: list[int] = []
    bad: list[int] = []
    for block in dump:
        if block.height < 1:
            bad.append(block.height)
        elif block.height in by_height:
            repeated.append(block.height)
        else:
            by_height[block.height] = block
    top = max(by_height, default=0)
    missing = [h for h in range(1, top + 1) if h not in by_height]
    unlinked = [
        h
        for h in range(2, top + 1)
        if h in by_height and h - 1 in by_height and by_height[h].parent_id != by_height[h - 1].id
    ]
    prefix = 0
    while prefix + 1 in by_height and (
        prefix == 0 or by_height[prefix + 1].parent_id == by_height[prefix].id
    ):
        prefix += 1
    problems: list[tuple[int, str]] = []
    if unlinked:
        h = unlinked[0]
        problems.append(
            (
                h,
                f"block {h}'s parent_id {_short(by_height[h].parent_id)} is not block {h - 1}'s id "
                f"{_short(by_height[h - 1].id)}",
            )
        )
    if missing:
        problems.append((missing[0], f"height {missing[0]} is missing"))
    if repeated:
        problems.append((repeated[0], f"height {repeated[0]} is repeated"))
    if bad:
        problems.append((bad[0], f"height {bad[0]} is below 1"))
    if problems:
        height, first = min(problems)
        violations.append(
            Violation(
                ViolationKind.BROKEN_CHAIN,
                f"node {node}'s dump is not a chain: {first} ({len(unlinked)} unlinked, "
                f"{len(missing)} missing, {len(repeated)} repeated, {len(bad)} below 1; top {top})",
                node=node,
                height=height,
            )
        )
    return _Chain(node, by_height, prefix, top)


def _tx_index(chain: _Chain, violations: list[Violation]) -> dict[str, tuple[int, int]]:
    """Each tx hash of the chain and its first (height, index); a duplicate_tx for every repeat."""
    index: dict[str, tuple[int, int]] = {}
    for height in sorted(chain.by_height):
        for i, tx in enumerate(chain.by_height[height].txs):
            tx_hash = hashlib.sha256(tx).hexdigest()
            first = index.setdefault(tx_hash, (height, i))
            if first != (height, i):
                violations.append(
                    Violation(
                        ViolationKind.DUPLICATE_TX,
                        f"tx {_short(tx_hash)} is in node {chain.node}'s chain at height {height} index {i}"
                        f" and already at height {first[0]} index {first[1]}",
                        node=chain.node,
                        height=height,
                    )
                )
    return index


def _describe(op: ClientOp) -> str:
    what = f"client {op.client}'s {op.op} of key {op.key!r}"
    if op.op == "cas":
        what += f" expecting {op.expect!r}"
    if op.tx_hash is not None:
        what += f" (tx {_short(op.tx_hash)})"
    return what


def _at(height: int | None, index: int | None) -> str:
    return f"height {height}" + ("" if index is None else f" index {index}")


def _lost_acks(
    chain: _Chain, index: dict[str, tuple[int, int]], acked: Sequence[ClientOp], violations: list[Violation]
) -> None:
    highest = max((op.height for op in acked if op.height is not None), default=0)
    if chain.top < highest:
        above = sum(1 for op in acked if op.height is not None and op.height > chain.top)
        violations.append(
            Violation(
                ViolationKind.LOST_ACK,
                f"node {chain.node}'s chain ends at height {chain.top}, below the highest acknowledged "
                f"height {highest} ({above} acknowledged writes above its top)",
                node=chain.node,
                height=chain.top,
            )
        )
    for op in acked:
        assert op.tx_hash is not None
        if op.height is not None and op.height > chain.top:
            continue
        if op.tx_hash not in index:
            violations.append(
                Violation(
                    ViolationKind.LOST_ACK,
                    f"{_describe(op)}, acknowledged at {_at(op.height, op.index)} at t={op.complete_s:.2f}s, "
                    f"is not in node {chain.node}'s chain (top {chain.top})",
                    op.complete_s,
                    chain.node,
                    op.height,
                )
            )


def _ack_mismatches(
    ref: _Chain, index: dict[str, tuple[int, int]], acked: Sequence[ClientOp], violations: list[Violation]
) -> None:
    for op in acked:
        assert op.tx_hash is not None
        where = index.get(op.tx_hash)
        if where is None or op.height is None:
            continue
        if op.height != where[0] or (op.index is not None and op.index != where[1]):
            violations.append(
                Violation(
                    ViolationKind.ACK_MISMATCH,
                    f"{_describe(op)} was acknowledged at {_at(op.height, op.index)}, but node {ref.node}'s "
                    f"chain holds it at height {where[0]} index {where[1]}",
                    op.complete_s,
                    ref.node,
                    op.height,
                )
            )


def _replay(ref: _Chain | None) -> tuple[KvModel, dict[tuple[int, int], Replayed], int]:
    """Replay the reference's valid prefix; the cas replays by position, and the txs replayed."""
    model = KvModel()
    cas_at: dict[tuple[int, int], Replayed] = {}
    replayed = 0
    for height in range(1, 0 if ref is None else ref.prefix + 1):
        assert ref is not None
        results = model.apply_block(height, ref.by_height[height].txs)
        replayed += len(results)
        for i, result in enumerate(results):
            if result.op is not None and result.op.op == "cas":
                cas_at[(height, i)] = result
    return model, cas_at, replayed


def _cas_violations(
    ref_node: int | None,
    index: dict[str, tuple[int, int]],
    cas_at: dict[tuple[int, int], Replayed],
    acked: Sequence[ClientOp],
    violations: list[Violation],
) -> tuple[int, int]:
    checked = not_judged = 0
    for op in acked:
        if op.op != "cas":
            continue
        assert op.tx_hash is not None
        where = index.get(op.tx_hash)
        result = None if where is None else cas_at.get(where)
        if result is None or op.code is None or where is None:
            not_judged += 1
            continue
        checked += 1
        applied = result.effect is TxEffect.APPLIED
        if (op.code == 0) != applied:
            said = "applied" if op.code == 0 else "refused"
            model = "applies" if applied else "refuses"
            violations.append(
                Violation(
                    ViolationKind.CAS_WRONG,
                    f"{_describe(op)} was acknowledged with code {op.code} ({said}), but the model {model} "
                    f"it at height {where[0]} index {where[1]} of node {ref_node}'s chain, where the key's "
                    f"value was {result.before!r}",
                    op.complete_s,
                    ref_node,
                    where[0],
                )
            )
    return checked, not_judged


def _read_violations(
    model: KvModel, ref_node: int | None, gets: Sequence[ClientOp], violations: list[Violation]
) -> tuple[int, int]:
    checked = not_judged = 0
    for op in gets:
        if op.height is None or op.height > model.height:
            not_judged += 1
            continue
        checked += 1
        expected = model.value_at(op.key, op.height)
        if op.read_value != expected:
            violations.append(
                Violation(
                    ViolationKind.WRONG_READ,
                    f"client {op.client}'s get of key {op.key!r} on node {op.node} returned "
                    f"{op.read_value!r} at height {op.height}, but node {ref_node}'s chain has {expected!r} "
                    "there",
                    op.invoke_s,
                    op.node,
                    op.height,
                )
            )
    return checked, not_judged


def _stale_reads(writes: Sequence[ClientOp], gets: Sequence[ClientOp], violations: list[Violation]) -> int:
    """Per key, the acknowledged writes sorted by completion with a running maximum of height:
    each get is one bisection. Returns how many gets were compared."""
    by_key: dict[str, list[ClientOp]] = {}
    for op in writes:
        if op.height is not None and not (op.op == "cas" and op.code != 0):
            by_key.setdefault(op.key, []).append(op)
    done: dict[str, tuple[list[float], list[ClientOp]]] = {}
    for key, ops in by_key.items():
        ops.sort(key=lambda o: o.complete_s)
        highest: list[ClientOp] = []
        for op in ops:
            assert op.height is not None
            if not highest or op.height > (highest[-1].height or 0):
                highest.append(op)
            else:
                highest.append(highest[-1])
        done[key] = ([op.complete_s for op in ops], highest)
    checked = 0
    for get in gets:
        if get.height is None or get.key not in done:
            continue
        times, highest = done[get.key]
        before = bisect.bisect_left(times, get.invoke_s)
        if before == 0:
            continue
        checked += 1
        write = highest[before - 1]
        assert write.height is not None
        if get.height < write.height:
            violations.append(
                Violation(
                    ViolationKind.STALE_READ,
                    f"client {get.client}'s get of key {get.key!r}, invoked at t={get.invoke_s:.2f}s on node "
                    f"{get.node}, read at height {get.height}, below height {write.height} of "
                    f"{_describe(write)}, acknowledged at t={write.complete_s:.2f}s",
                    get.invoke_s,
                    get.node,
                    get.height,
                )
            )
    return checked


def _liveness(
    record: RunRecord, samples: Sequence[StatusSample], violations: list[Violation]
) -> tuple[float, float | None, tuple[RecoveryFigure, ...]]:
    """The rises of the highest honest height, the longest stall and each recovery's figure."""
    ordered = sorted(samples, key=lambda s: s.t_s)
    rise_t: list[float] = []
    rise_h: list[int] = []
    for s in ordered:
        if s.height is not None and (not rise_h or s.height > rise_h[-1]):
            rise_t.append(s.t_s)
            rise_h.append(s.height)
    end_s = ordered[-1].t_s if ordered else 0.0
    longest, longest_start = 0.0, None
    if rise_t:
        points = [*rise_t, end_s]
        for start, stop in itertools.pairwise(points):
            if stop - start > longest:
                longest, longest_start = stop - start, start
        if longest_start is None:
            longest_start = rise_t[0]
    per_node: dict[int, tuple[list[float], list[int | None]]] = {}
    for s in ordered:
        times, heights = per_node.setdefault(s.node, ([], []))
        times.append(s.t_s)
        heights.append(s.height)
    bound = record.liveness_bound_s
    fault_starts = sorted(f.t_s for f in record.faults if f.kind in FAULT_KINDS)
    figures: list[RecoveryFigure] = []
    for point in sorted(record.recoveries, key=lambda r: r.t_s):
        i = bisect.bisect_right(rise_t, point.t_s)
        base = rise_h[i - 1] if i > 0 else 0
        # Each node's first look at or after t belongs to "the value at t": a commit made before
        # t but first sampled after it is no resumption.
        for times, heights in per_node.values():
            j = bisect.bisect_left(times, point.t_s)
            first_look = heights[j] if j < len(heights) else None
            if first_look is not None:
                base = max(base, first_look)
        i = bisect.bisect_right(rise_h, base)
        after = rise_t[i] - point.t_s if i < len(rise_t) else None
        k = bisect.bisect_right(fault_starts, point.t_s)
        next_fault = fault_starts[k] - point.t_s if k < len(fault_starts) else math.inf
        interrupted = next_fault < bound and (after is None or after > next_fault)
        judged = not interrupted and (after is not None or end_s - point.t_s >= bound)
        figures.append(RecoveryFigure(point.t_s, point.what, judged, after))
        if judged and (after is None or after > bound):
            if after is None:
                how = f"no honest height above {base} in the {end_s - point.t_s:.2f}s observed after it"
            else:
                how = f"the highest honest height stayed at {base} for {after:.2f}s, until t={rise_t[i]:.2f}s"
            violations.append(
                Violation(
                    ViolationKind.LIVENESS_STALL,
                    f"after recovery point '{point.what}' at t={point.t_s:.2f}s: {how} (bound {bound:.2f}s)",
                    point.t_s,
                    None,
                    base,
                )
            )
    return longest, longest_start, tuple(figures)


def _memory_violations(
    record: RunRecord, samples: Sequence[StatusSample], violations: list[Violation]
) -> int:
    """The memory_growth rule (see the `MEMORY_*` constants); returns the nodes judged."""
    d = record.duration_s
    if d < MEMORY_MIN_RUN_S:
        return 0
    second: dict[int, list[StatusSample]] = {}
    last: dict[int, list[StatusSample]] = {}
    for s in samples:
        if s.rss_bytes is None:
            continue
        if d / 4 <= s.t_s < d / 2:
            second.setdefault(s.node, []).append(s)
        elif 3 * d / 4 <= s.t_s <= d:
            last.setdefault(s.node, []).append(s)
    judged = 0
    for node in sorted(second):
        early, late = second[node], last.get(node, [])
        if len(early) < MEMORY_MIN_SAMPLES or len(late) < MEMORY_MIN_SAMPLES:
            continue
        judged += 1
        base = max(s.rss_bytes or 0 for s in early)
        peak = max(late, key=lambda s: s.rss_bytes or 0)
        peak_bytes = peak.rss_bytes or 0
        if peak_bytes > MEMORY_GROWTH_FACTOR * base and peak_bytes > base + MEMORY_GROWTH_BYTES:
            mib = 1024 * 1024
            violations.append(
                Violation(
                    ViolationKind.MEMORY_GROWTH,
                    f"node {node}'s RSS peaked at {peak_bytes / mib:.1f} MiB in the last quarter of the run "
                    f"(t={peak.t_s:.2f}s), over {MEMORY_GROWTH_FACTOR}x and "
                    f"+{MEMORY_GROWTH_BYTES // mib} MiB of its second-quarter peak {base / mib:.1f} MiB",
                    peak.t_s,
                    node,
                )
            )
    return judged


def check(record: RunRecord) -> CheckReport:
    """Judge one run by the rules of the module's header. Pure: reads only `record`."""
    honest = tuple(sorted(set(record.honest)))
    violations: list[Violation] = []

    chains = [_chain(node, record.blocks.get(node, []), violations) for node in honest]
    watch = AgreementWatch(honest)
    for chain in chains:
        for height in sorted(chain.by_height):
            violations.extend(watch.on_block(chain.node, chain.by_height[height]))

    ops_by_kind = {kind: dict.fromkeys(OUTCOMES, 0) for kind in OP_KINDS}
    for op in record.ops:
        ops_by_kind[op.op][op.outcome] += 1
    writes = [op for op in record.ops if op.outcome == "ok" and op.op in _WRITES]
    acked = [op for op in writes if op.tx_hash is not None]
    gets = [op for op in record.ops if op.outcome == "ok" and op.op == "get"]

    ref = max(chains, key=lambda c: c.prefix, default=None)  # max keeps the first: lowest node
    ref_index: dict[str, tuple[int, int]] = {}
    for chain in chains:
        index = _tx_index(chain, violations)
        _lost_acks(chain, index, acked, violations)
        if chain is ref:
            ref_index = index
    ref_node = None if ref is None else ref.node
    if ref is not None:
        _ack_mismatches(ref, ref_index, acked, violations)
    model, cas_at, replayed = _replay(ref)
    cas_checked, cas_not_judged = _cas_violations(ref_node, ref_index, cas_at, acked, violations)
    reads_checked, reads_not_judged = _read_violations(model, ref_node, gets, violations)
    stale_checked = _stale_reads(writes, gets, violations)

    honest_set = frozenset(honest)
    samples = [s for s in record.samples if s.node in honest_set]
    longest, longest_start, recoveries = _liveness(record, samples, violations)
    memory_judged = _memory_violations(record, samples, violations)

    figures = CheckFigures(
        writes_acknowledged=len(writes),
        ops_by_kind=ops_by_kind,
        final_height={c.node: c.top for c in chains},
        reference_node=None if ref is None else ref.node,
        reference_height=model.height,
        longest_stall_s=longest,
        longest_stall_start_s=longest_start,
        recoveries=recoveries,
        recoveries_not_judged=sum(1 for r in recoveries if not r.judged),
        heights_compared=watch.heights_compared,
        blocks_compared=watch.blocks_compared,
        txs_checked=len(acked),
        txs_replayed=replayed,
        reads_checked=reads_checked,
        cas_checked=cas_checked,
        stale_reads_checked=stale_checked,
        writes_not_judged=len(writes) - len(acked),
        reads_not_judged=reads_not_judged,
        cas_not_judged=cas_not_judged,
        memory_nodes_judged=memory_judged,
        ignored_dumps=tuple(sorted(n for n in record.blocks if n not in honest_set)),
    )
    return CheckReport(record.scenario, record.seed, record.command, violations, figures)
