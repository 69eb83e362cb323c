"""The report of a chaos run: a terminal summary, one self-contained HTML page, a PNG timeline.

Owns: `format_terminal` (plain text for an 80-column terminal), `write_html` (one file with no
external assets, the timeline embedded as a base64 PNG), `write_png` (the timeline alone, e.g. for
a README), the series the timeline draws (`height_series`, `commit_rates`, `latency_bins`) and
the colours of the fault kinds.
May not: judge anything or measure again what the checker measured: the verdict, the longest
stall, the recovery times and the violations come from the `CheckReport` and its
`CheckFigures`; import matplotlib at module level (only the figure needs it, through the `report`
extra; the summary and the tables never do); do I/O beyond writing the one file it is given.

Why a bare `matplotlib.figure.Figure` and never pyplot: a Figure renders through the Agg canvas
when saved as PNG whatever the global backend is, so a report made inside a notebook or a
long-lived process neither needs a display, nor switches that process's backend
(`matplotlib.use`), nor leaves figures registered in pyplot.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import math
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bft.bench.stats import percentile
from bft.chaos.checker import CheckReport, Violation
from bft.chaos.record import OP_KINDS, OUTCOMES, ClientOp, FaultEvent, RunRecord, StatusSample
from bft.chaos.scenario import FAULT_KINDS, TIMELINE_ACTIONS

_LIFT_KINDS = frozenset(TIMELINE_ACTIONS) - frozenset(FAULT_KINDS)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

FIGURE_HINT: Final = "the timeline figure needs matplotlib: pip install 'bft[report]'"
# Commit rates are height differences over a window of this length centred on each sample.
RATE_WINDOW_S: Final = 3.0
# Latency bins: duration/60, within these bounds (2 s bins for a 2-minute run).
LATENCY_BIN_MIN_S: Final = 2.0
LATENCY_BIN_MAX_S: Final = 5.0
# At most this many violations are printed in the terminal, and listed in the HTML.
TERMINAL_VIOLATIONS: Final = 20
HTML_VIOLATIONS: Final = 500
# At most this many violations are drawn on the timeline, and the first this many labelled.
DRAWN_VIOLATIONS: Final = 200
LABELLED_VIOLATIONS: Final = 12

_WIDTH = 80
_LABEL = 15
_WRITES = frozenset({"put", "cas", "del"})

# Colours by scenario action: a lift shares its fault's colour (restart and kill), and red is
# kept for violations. Kinds outside the scenario vocabulary take `_OTHER_COLOURS` in turn.
FAULT_COLOURS: Final[dict[str, str]] = {
    "partition": "#e69f00",
    "kill": "#555555",
    "wipe": "#8c510a",
    "pause": "#6a51a3",
    "skew": "#01665e",
    "delay": "#35978f",
    "drop": "#e7298a",
    "duplicate": "#4575b4",
    "reorder": "#c2a5cf",
    "bandwidth": "#b8a136",
    "cut": "#66a61e",
    "heal": "#1b9e77",
    "restart": "#555555",
    "resume": "#6a51a3",
    "clear": "#35978f",
}
assert set(FAULT_COLOURS) == set(TIMELINE_ACTIONS)
_OTHER_COLOURS = ("#a6761d", "#7570b3", "#1f78b4", "#b2df8a")
_NODE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#17becf", "#9467bd", "#8c564b", "#e377c2")
_BYZANTINE_COLOUR = "#7f7f7f"
_RECOVERY_COLOUR = "#1a9850"
_VIOLATION_COLOUR = "#d62728"
_DPI = 110


# The series the timeline draws: pure functions of the record, testable without matplotlib.


def height_series(samples: Iterable[StatusSample]) -> dict[int, tuple[list[float], list[float]]]:
    """Per node, its sample times and committed heights in time order; NaN where its API did not
    answer, so that a plotted line breaks there."""
    series: dict[int, tuple[list[float], list[float]]] = {}
    for s in sorted(samples, key=lambda s: (s.node, s.t_s)):
        times, heights = series.setdefault(s.node, ([], []))
        times.append(s.t_s)
        heights.append(math.nan if s.height is None else float(s.height))
    return series


def commit_rates(
    times: Sequence[float], heights: Sequence[float], window_s: float = RATE_WINDOW_S
) -> list[float]:
    """At each sample, the commits per second of one node: the height difference between its
    first and last answered samples within `window_s` centred on it, over their time apart.
    NaN where that window holds fewer than two answered samples; a height that went down (a wiped
    node) counts as no commits, not as negative ones."""
    answered = [(t, h) for t, h in zip(times, heights, strict=True) if not math.isnan(h)]
    at = [t for t, _ in answered]
    rates: list[float] = []
    for t, h in zip(times, heights, strict=True):
        lo = bisect.bisect_left(at, t - window_s / 2)
        hi = bisect.bisect_right(at, t + window_s / 2) - 1
        if math.isnan(h) or hi <= lo:
            rates.append(math.nan)
        else:
            (t0, h0), (t1, h1) = answered[lo], answered[hi]
            rates.append(max(0.0, (h1 - h0) / (t1 - t0)))
    return rates


@dataclass(frozen=True, slots=True)
class LatencyBin:
    """The nearest-rank percentiles of the latencies (complete_s - invoke_s) of the ops that
    completed in [start_s, start_s + width_s)."""

    start_s: float
    width_s: float
    count: int
    p50_s: float
    p90_s: float
    p99_s: float


def latency_bin_s(duration_s: float) -> float:
    return min(LATENCY_BIN_MAX_S, max(LATENCY_BIN_MIN_S, duration_s / 60))


def latency_bins(ops: Iterable[ClientOp], bin_s: float) -> list[LatencyBin]:
    """`ops` (the caller picks which: acknowledged writes, say) binned by completion time; only
    bins holding at least one op, in time order."""
    by_bin: dict[int, list[float]] = {}
    for op in ops:
        by_bin.setdefault(math.floor(op.complete_s / bin_s), []).append(op.complete_s - op.invoke_s)
    bins = []
    for i in sorted(by_bin):
        ordered = sorted(by_bin[i])
        p50, p90, p99 = (percentile(ordered, p) for p in (50, 90, 99))
        assert p50 is not None and p90 is not None and p99 is not None
        bins.append(LatencyBin(i * bin_s, bin_s, len(ordered), p50, p90, p99))
    return bins


def _acked_writes(record: RunRecord) -> list[ClientOp]:
    return [op for op in record.ops if op.outcome == "ok" and op.op in _WRITES]


def _acked_reads(record: RunRecord) -> list[ClientOp]:
    return [op for op in record.ops if op.outcome == "ok" and op.op == "get"]


def _last_samples(record: RunRecord) -> dict[int, StatusSample]:
    """Each node's last sample that carries counters (timeouts, TCs or refusals)."""
    last: dict[int, StatusSample] = {}
    for s in sorted(record.samples, key=lambda s: s.t_s):
        if s.timeouts is not None or s.tcs is not None or s.refusals:
            last[s.node] = s
    return last


def fault_colour(kind: str, others: dict[str, str] | None = None) -> str:
    """The colour of a scenario action; an unknown kind takes the next spare colour, remembered in
    `others` so that one figure gives one kind one colour."""
    if kind in FAULT_COLOURS:
        return FAULT_COLOURS[kind]
    if others is None:
        return _OTHER_COLOURS[0]
    return others.setdefault(kind, _OTHER_COLOURS[len(others) % len(_OTHER_COLOURS)])


# The words, shared by the terminal summary and the HTML header.


def _secs(value_s: float) -> str:
    return f"{value_s * 1000:.0f} ms" if value_s < 1 else f"{value_s:.2f} s"


def _latency(ops: Sequence[ClientOp]) -> str:
    ordered = sorted(op.complete_s - op.invoke_s for op in ops)
    if not ordered:
        return "none"
    parts = []
    for p in (50, 90, 99):
        value = percentile(ordered, p)
        assert value is not None
        parts.append(f"p{p} {_secs(value)}")
    return ", ".join(parts) + f" ({len(ordered)} ops)"


def _verdict(report: CheckReport) -> str:
    if report.ok:
        return "PASS"
    n = len(report.violations)
    return f"FAIL ({n} violation{'' if n == 1 else 's'})"


def _nodes_text(nodes: Sequence[int]) -> str:
    return "all" if not nodes else ",".join(map(str, nodes))


@dataclass(frozen=True, slots=True)
class _Entry:
    label: str
    lines: tuple[str, ...]
    wrap: bool = True  # the replay command stays one line, so that it can be copied
    mono: bool = False  # columns that line up in a terminal are monospaced in the HTML too


def _recovery_outcome(judged: bool, after_s: float | None) -> str:
    """How commits resumed after a recovery point; "not judged" when the checker did not judge
    it (a new fault came within the bound, or the run ended first)."""
    if after_s is not None:
        outcome = f"commits resumed after {_secs(after_s)}"
        return outcome if judged else f"{outcome} (not judged: a new fault came first)"
    return "no commit seen" if judged else "not judged (a new fault, or the end of the run, came first)"


def _recovery_text(what: str, t_s: float, judged: bool, after_s: float | None) -> str:
    return f"t={t_s:.2f}s {what}: {_recovery_outcome(judged, after_s)}"


def _counters_text(s: StatusSample) -> str:
    parts = [f"timeouts {_maybe(s.timeouts)}", f"tcs {_maybe(s.tcs)}"]
    refusals = sum(s.refusals.values())
    top = ", ".join(f"{reason} {n}" for reason, n in Counter(s.refusals).most_common(3))
    parts.append(f"refusals {refusals}" + (f" ({top})" if top else ""))
    return ", ".join(parts)


def _maybe(value: int | None) -> str:
    return "-" if value is None else str(value)


def _entries(record: RunRecord, report: CheckReport) -> list[_Entry]:
    """The key figures, in order: what the terminal prints and the HTML header shows."""
    f = report.figures
    honest = set(record.honest)
    nodes = sorted(set(range(record.nodes)) | set(f.final_height))
    heights = ", ".join(
        f"node {n} {f.final_height.get(n, 0)}" if n in honest else f"node {n} byzantine" for n in nodes
    )
    # Faults injected, by kind; the steps that lift them (heal, restart, resume, clear) apart.
    faults = Counter(fault.kind for fault in record.faults if fault.kind not in _LIFT_KINDS)
    lifts = Counter(fault.kind for fault in record.faults if fault.kind in _LIFT_KINDS)
    stall = f"{_secs(f.longest_stall_s)}" + (
        "" if f.longest_stall_start_s is None else f" from t={f.longest_stall_start_s:.2f}s"
    )
    return [
        _Entry("scenario", (report.scenario,)),
        _Entry("seed", (str(report.seed),)),
        _Entry("replay", (report.command,), wrap=False, mono=True),
        _Entry(
            "duration",
            (f"{_secs(record.duration_s)}, liveness bound {_secs(record.liveness_bound_s)}",),
        ),
        _Entry("writes acked", (str(f.writes_acknowledged),)),
        _Entry(
            "ops",
            tuple(
                f"{kind:<4}"
                + "".join(f" {outcome} {f.ops_by_kind[kind][outcome]:<6}" for outcome in OUTCOMES)
                for kind in OP_KINDS
            ),
            mono=True,
        ),
        _Entry("final height", (heights or "none",)),
        _Entry("faults", (", ".join(f"{kind} {n}" for kind, n in faults.items()) or "none",)),
        _Entry("lifted by", (", ".join(f"{kind} {n}" for kind, n in lifts.items()) or "none",)),
        _Entry("longest stall", (stall,)),
        _Entry(
            "latency",
            (f"writes {_latency(_acked_writes(record))}", f"reads  {_latency(_acked_reads(record))}"),
        ),
    ]


def _wrap(text: str, head: str, indent: str) -> list[str]:
    """`text` wrapped at 80 columns after `head`, breaking only between its comma-separated
    items, so that "delay 1" or "p99 9.07 s" never splits (an item longer than a line stays whole)."""
    items = [item.replace(" ", "\xa0") for item in text.split(", ")]
    lines = textwrap.wrap(
        ", ".join(items),
        _WIDTH,
        initial_indent=head,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace("\xa0", " ") for line in lines] or [head.rstrip()]


def _terminal_lines(entry: _Entry) -> list[str]:
    lines: list[str] = []
    for i, value in enumerate(entry.lines):
        head = f"  {entry.label if i == 0 else '':<{_LABEL}}"
        if entry.wrap:
            lines.extend(_wrap(value, head, " " * (len(head) + 2)))
        else:
            lines.append(head + value)
    return [line.rstrip() for line in lines]


def format_terminal(record: RunRecord, report: CheckReport) -> str:
    """The summary of a run for an 80-column terminal, in plain text: the verdict, the key figures
    (`_entries`), each recovery, each node's last counters, and the violations (at most
    `TERMINAL_VIOLATIONS`, then how many more). Lines are wrapped at 80 columns, except the replay
    command, which stays whole so that it can be copied. Needs no matplotlib."""
    f = report.figures
    entries = _entries(record, report)
    if f.recoveries:
        entries.append(
            _Entry(
                "recoveries",
                tuple(_recovery_text(r.what, r.t_s, r.judged, r.recovered_after_s) for r in f.recoveries),
            )
        )
    last = _last_samples(record)
    if last:
        entries.append(
            _Entry(
                "counters",
                tuple(
                    f"node {n}{'' if n in record.honest else ' (byzantine)'}: {_counters_text(s)}"
                    for n, s in sorted(last.items())
                ),
            )
        )
    lines = [f"chaos run: {_verdict(report)}"]
    for entry in entries:
        lines.extend(_terminal_lines(entry))
    if report.violations:
        lines.append(f"  {'violations':<{_LABEL}}{len(report.violations)}")
        for v in report.violations[:TERMINAL_VIOLATIONS]:
            lines.extend(
                textwrap.wrap(
                    v.format(),
                    _WIDTH,
                    initial_indent="    ",
                    subsequent_indent="      ",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        if len(report.violations) > TERMINAL_VIOLATIONS:
            lines.append(f"    ... and {len(report.violations) - TERMINAL_VIOLATIONS} more")
    return "\n".join(lines)


# The timeline figure.


def _timeline(record: RunRecord, report: CheckReport) -> Figure:
    """The stacked panels on one time axis. Raises ImportError without matplotlib."""
    import matplotlib  # the package first: with it missing (or blocked), this is the ImportError
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    honest = set(record.honest)
    series = height_series(record.samples)
    nodes = sorted(set(range(record.nodes)) | set(series))
    end_s = max(
        [record.duration_s, 1.0]
        + [s.t_s for s in record.samples]
        + [op.complete_s for op in record.ops]
        + [f.end_s or f.t_s for f in record.faults]
    )
    lane_ratio = max(1.2, 0.32 * (len(nodes) + 1))
    with matplotlib.rc_context({"font.size": 10, "axes.titlesize": 11, "axes.titlelocation": "left"}):
        fig = Figure(figsize=(13, 10.5), layout="constrained")
        heights_ax, rates_ax, latency_ax, lane_ax = fig.subplots(
            4, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 2.4, lane_ratio]}
        )
        fig.suptitle(
            f"{_verdict(report)}   {report.scenario}   seed {report.seed}", fontsize=13, fontweight="bold"
        )
        honest_top = _draw_nodes(heights_ax, rates_ax, series, honest)
        _draw_stall(heights_ax, report)
        _draw_latency(latency_ax, record)
        handles = _draw_faults(lane_ax, (heights_ax, rates_ax, latency_ax), record, report, nodes, end_s)
        _draw_violations((heights_ax, rates_ax, latency_ax, lane_ax), report.violations)
        if any(v.t_s is not None for v in report.violations):
            handles.append(Line2D([], [], color=_VIOLATION_COLOUR, marker="v", label="violation"))
        heights_ax.set_title("(a) committed height per node")
        heights_ax.set_ylabel("height")
        if honest_top is not None:
            # A Byzantine node may report anything: the scale is the honest nodes'.
            heights_ax.set_ylim(0, honest_top * 1.08 + 1)
        rates_ax.set_title(f"(b) commits per second per node ({RATE_WINDOW_S:g} s window)")
        rates_ax.set_ylabel("blocks/s")
        lane_ax.set_xlim(0, end_s)
        lane_ax.set_xlabel("seconds since start")
        if handles:
            fig.legend(
                handles=handles, loc="outside lower center", ncols=min(len(handles), 10), frameon=False
            )
    return fig


def _draw_nodes(
    heights_ax: Axes, rates_ax: Axes, series: dict[int, tuple[list[float], list[float]]], honest: set[int]
) -> float | None:
    """Panels (a) and (b); returns the highest honest height sampled (None: none)."""
    if not series:
        for ax in (heights_ax, rates_ax):
            _no_data(ax, "no status samples")
        return None
    honest_top: float | None = None
    honest_rate = 0.0
    for i, (node, (times, heights)) in enumerate(sorted(series.items())):
        byzantine = node not in honest
        colour = _BYZANTINE_COLOUR if byzantine else _NODE_COLOURS[i % len(_NODE_COLOURS)]
        dashes = "--" if byzantine else "-"
        width = 1.3 if byzantine else 1.8
        label = f"node {node}" + (" (byzantine)" if byzantine else "")
        rates = commit_rates(times, heights)
        heights_ax.plot(times, heights, color=colour, linestyle=dashes, linewidth=width, label=label)
        rates_ax.plot(times, rates, color=colour, linestyle=dashes, linewidth=width, label=label)
        if not byzantine:
            answered = [h for h in heights if not math.isnan(h)]
            if answered:
                honest_top = max(honest_top or 0.0, *answered)
            honest_rate = max([honest_rate, *(r for r in rates if not math.isnan(r))])
    if honest_rate > 0:
        rates_ax.set_ylim(0, honest_rate * 1.15)
    heights_ax.legend(loc="lower right", fontsize=9)
    return honest_top


def _draw_stall(ax: Axes, report: CheckReport) -> None:
    f = report.figures
    if f.longest_stall_start_s is None or f.longest_stall_s <= 0:
        return
    start, stop = f.longest_stall_start_s, f.longest_stall_start_s + f.longest_stall_s
    y = 0.9  # in axes fraction: above the lines of a run that climbs
    ax.annotate(
        "",
        xy=(start, y),
        xytext=(stop, y),
        xycoords=ax.get_xaxis_transform(),
        arrowprops={"arrowstyle": "|-|", "color": "black", "linewidth": 1.2, "shrinkA": 0, "shrinkB": 0},
    )
    ax.text(
        (start + stop) / 2,
        y + 0.02,
        f"longest stall {_secs(f.longest_stall_s)}",
        transform=ax.get_xaxis_transform(),
        ha="center",
        va="bottom",
        fontsize=9,
    )


def _ms(value_s: float) -> float:
    return max(value_s * 1000, 0.1)  # a log axis has no 0: 0.1 ms is the floor


def _binned(bins: Sequence[LatencyBin], name: str) -> tuple[list[float], list[float]]:
    """Bin centres and one percentile in ms, with a NaN between bins that are not adjacent, so
    that a span in which nothing completed (a partition) shows as a gap, not as a slope."""
    xs: list[float] = []
    ys: list[float] = []
    for i, b in enumerate(bins):
        if i and b.start_s - bins[i - 1].start_s > b.width_s * 1.5:
            xs.append(b.start_s)
            ys.append(math.nan)
        xs.append(b.start_s + b.width_s / 2)
        ys.append(_ms(getattr(b, f"{name}_s")))
    return xs, ys


def _draw_latency(ax: Axes, record: RunRecord) -> None:
    """Panel (c): percentiles of acknowledged writes per bin and the p99 of reads, in ms; each op
    that was not acknowledged as a point at its completion (a client timeout sits at the timeout)."""
    bin_s = latency_bin_s(record.duration_s)
    writes = latency_bins(_acked_writes(record), bin_s)
    reads = latency_bins(_acked_reads(record), bin_s)
    ax.set_title(f"(c) client latency by completion time ({bin_s:.3g} s bins; points: ops not acknowledged)")
    if not record.ops:
        _no_data(ax, "no client ops")
        return
    for name, colour, width in (("p50", "#2166ac", 1.8), ("p90", "#f4a582", 1.5), ("p99", "#b2182b", 1.5)):
        if writes:
            xs, ys = _binned(writes, name)
            ax.plot(xs, ys, color=colour, linewidth=width, marker=".", markersize=4, label=f"writes {name}")
    if reads:
        xs, ys = _binned(reads, "p99")
        ax.plot(xs, ys, color="#4d4d4d", linestyle=":", linewidth=1.4, label="reads p99")
    for outcome, marker, colour, label in (
        ("info", "x", "#525252", "unknown outcome"),
        ("fail", "+", "#8073ac", "failed"),
    ):
        missed = [op for op in record.ops if op.outcome == outcome]
        if missed:
            ax.scatter(
                [op.complete_s for op in missed],
                [_ms(op.complete_s - op.invoke_s) for op in missed],
                marker=marker,
                s=14,
                linewidths=0.8,
                color=colour,
                alpha=0.6,
                label=label,
            )
    ax.set_yscale("log")
    ax.set_ylabel("ms (log)")
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top * 20)  # headroom: the legend sits above the slowest ops, not on them
    ax.legend(loc="upper left", fontsize=9, ncols=6)


def _draw_faults(
    lane: Axes,
    panels: Sequence[Axes],
    record: RunRecord,
    report: CheckReport,
    nodes: Sequence[int],
    span_s: float,
) -> list[Patch | Line2D]:
    """Panel (d), one row per node and one for recoveries, and the bands and lines of the faults
    across every panel. Returns the legend's handles (one per kind drawn, then recovery)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    honest = set(record.honest)
    rows = {node: i + 1 for i, node in enumerate(nodes)}  # row 0: recoveries
    others: dict[str, str] = {}
    bands: dict[str, str] = {}
    instants: dict[str, str] = {}
    for fault in sorted(record.faults, key=lambda f: f.t_s):
        colour = fault_colour(fault.kind, others)
        touched = [rows[n] for n in fault.nodes if n in rows] or list(rows.values())
        if fault.end_s is not None:
            bands.setdefault(fault.kind, colour)
            for ax in (*panels, lane):
                ax.axvspan(fault.t_s, fault.end_s, color=colour, alpha=0.13, linewidth=0)
            for row in touched:
                lane.broken_barh(
                    [(fault.t_s, fault.end_s - fault.t_s)], (row - 0.38, 0.76), color=colour, alpha=0.85
                )
            _bar_label(lane, fault, touched, span_s)
        else:
            instants.setdefault(fault.kind, colour)
            for ax in (*panels, lane):
                ax.axvline(fault.t_s, color=colour, linewidth=0.9, alpha=0.8)
            lane.scatter([fault.t_s] * len(touched), touched, marker="|", s=160, color=colour, zorder=3)
    _draw_recoveries(lane, report)
    lane.set_title("(d) faults by node (bars), lifts (lines) and recoveries (resumption in green)")
    lane.set_yticks([0, *rows.values()])
    lane.set_yticklabels(
        ["recovery", *(f"node {n}" + ("" if n in honest else " (byz)") for n in rows)], fontsize=9
    )
    lane.set_ylim(len(rows) + 0.6, -0.6)
    lane.grid(axis="x", alpha=0.3)
    if not record.faults:
        lane.text(0.5, 0.5, "no faults", transform=lane.transAxes, ha="center", va="center", color="0.4")
    handles: list[Patch | Line2D] = [
        Patch(facecolor=colour, alpha=0.85, label=kind) for kind, colour in bands.items()
    ]
    handles += [Line2D([], [], color=colour, linewidth=1.5, label=kind) for kind, colour in instants.items()]
    if report.figures.recoveries:
        handles.append(
            Line2D([], [], color=_RECOVERY_COLOUR, marker="^", linestyle="-", label="recovery point")
        )
    return handles


def _bar_label(lane: Axes, fault: FaultEvent, rows: Sequence[int], span_s: float) -> None:
    """The kind written on a bar, on its first row, where the bar is wide enough to hold it."""
    assert fault.end_s is not None
    if fault.end_s - fault.t_s < 0.04 * span_s:
        return
    lane.text(
        (fault.t_s + fault.end_s) / 2,
        min(rows),
        fault.kind,
        ha="center",
        va="center",
        fontsize=8,
        color="white",
        fontweight="bold",
        clip_on=True,
    )


def _draw_recoveries(lane: Axes, report: CheckReport) -> None:
    """The checker's recovery figures: a marker at the point, a green bar as long as commits took
    to resume; a hollow marker where the run ended before it could be judged."""
    for r in report.figures.recoveries:
        if r.recovered_after_s is not None:
            lane.hlines(0, r.t_s, r.t_s + r.recovered_after_s, color=_RECOVERY_COLOUR, linewidth=4)
        lane.scatter(
            [r.t_s],
            [0],
            marker="^",
            s=45,
            zorder=4,
            facecolors=_RECOVERY_COLOUR if r.judged else "none",
            edgecolors=_RECOVERY_COLOUR,
        )


def _draw_violations(panels: Sequence[Axes], violations: Sequence[Violation]) -> None:
    """Red lines through every panel at each violation's time, a marker and (for the first ones)
    its kind on top of the first panel."""
    timed = [v for v in violations if v.t_s is not None][:DRAWN_VIOLATIONS]
    top = panels[0]
    for i, v in enumerate(timed):
        assert v.t_s is not None
        for ax in panels:
            ax.axvline(v.t_s, color=_VIOLATION_COLOUR, linewidth=1.3, alpha=0.9, zorder=5)
        top.plot([v.t_s], [1.0], marker="v", color=_VIOLATION_COLOUR, transform=top.get_xaxis_transform())
        if i < LABELLED_VIOLATIONS:
            label = str(v.kind) + ("" if v.node is None else f" (node {v.node})")
            top.text(
                v.t_s,
                0.97,
                " " + label,
                transform=top.get_xaxis_transform(),
                rotation=90,
                ha="right",
                va="top",
                fontsize=8,
                color=_VIOLATION_COLOUR,
            )


def _no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="0.4")


def render_png(record: RunRecord, report: CheckReport) -> bytes:
    """The timeline as PNG bytes. Raises ImportError (naming the extra) without matplotlib."""
    try:
        fig = _timeline(record, report)
    except ImportError as exc:
        raise ImportError(FIGURE_HINT) from exc
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def write_png(record: RunRecord, report: CheckReport, path: Path) -> Path:
    """Write the timeline to `path` as a PNG and return `path`. Raises ImportError without
    matplotlib (nothing is written then)."""
    data = render_png(record, report)
    path.write_bytes(data)
    return path


# The HTML page.

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em auto;
       max-width: 1480px; padding: 0 1em; color: #222; font-size: 15px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.verdict { display: inline-block; padding: 0.1em 0.6em; border-radius: 4px; color: white; }
.pass { background: #1a9850; } .fail { background: #d62728; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { text-align: left; padding: 0.2em 0.8em 0.2em 0; vertical-align: top; }
table.grid td, table.grid th { border-bottom: 1px solid #eee; padding-right: 1.2em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0.1em 0.3em; border-radius: 3px; white-space: pre; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
          vertical-align: middle; border-radius: 2px; }
.note { color: #666; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Iterable[int] = ()) -> str:
    """A grid table; cells are HTML already (escape them), columns in `numeric` align right."""
    right = set(numeric)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in right else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _faults_html(record: RunRecord) -> str:
    if not record.faults:
        return '<p class="note">No faults were injected.</p>'
    others: dict[str, str] = {}
    rows = []
    for f in sorted(record.faults, key=lambda f: f.t_s):
        swatch = f'<span class="swatch" style="background:{fault_colour(f.kind, others)}"></span>'
        rows.append(
            (
                f"{f.t_s:.2f}",
                swatch + _e(f.kind),
                _e(_nodes_text(f.nodes)),
                "instant" if f.end_s is None else f"{f.end_s:.2f}",
                "" if f.end_s is None else _e(_secs(f.end_s - f.t_s)),
                _e(f.detail),
            )
        )
    return _table(["t (s)", "kind", "nodes", "until (s)", "length", "detail"], rows, numeric=(0, 3, 4))


def _recoveries_html(report: CheckReport) -> str:
    figures = report.figures.recoveries
    if not figures:
        return '<p class="note">No recovery points.</p>'
    rows = []
    for r in figures:
        after = _e(_recovery_outcome(r.judged, r.recovered_after_s))
        rows.append((f"{r.t_s:.2f}", _e(r.what), after if r.judged else f'<span class="note">{after}</span>'))
    return _table(["t (s)", "recovery point", "commits resumed after"], rows, numeric=(0,))


def _counters_html(record: RunRecord) -> str:
    last = _last_samples(record)
    if not last:
        return '<p class="note">The samples carry no timeout, TC or refusal counters.</p>'
    honest = set(record.honest)
    rows = []
    for node, s in sorted(last.items()):
        reasons = ", ".join(
            f"{_e(reason)} {n}" for reason, n in sorted(s.refusals.items(), key=lambda x: -x[1])
        )
        rows.append(
            (
                f"node {node}" + ("" if node in honest else " (byzantine)"),
                f"{s.t_s:.2f}",
                _maybe(s.timeouts),
                _maybe(s.tcs),
                str(sum(s.refusals.values())),
                reasons,
            )
        )
    return _table(
        ["node", "last sample (s)", "timeouts", "TCs", "refusals", "refusals by reason"],
        rows,
        numeric=(1, 2, 3, 4),
    )


def _violations_html(report: CheckReport) -> str:
    if not report.violations:
        return '<p class="note">None.</p>'
    rows = (
        (
            _e(v.kind),
            "" if v.t_s is None else f"{v.t_s:.2f}",
            "" if v.node is None else str(v.node),
            "" if v.height is None else str(v.height),
            _e(v.detail),
        )
        for v in report.violations[:HTML_VIOLATIONS]
    )
    more = len(report.violations) - HTML_VIOLATIONS
    tail = f'<p class="note">... and {more} more.</p>' if more > 0 else ""
    return _table(["kind", "t (s)", "node", "height", "detail"], rows, numeric=(1, 2, 3)) + tail


def write_html(record: RunRecord, report: CheckReport, path: Path) -> Path:
    """Write one self-contained HTML page (no external assets) to `path` and return `path`: the
    verdict and the key figures of `format_terminal`, the timeline embedded as a base64 PNG, and
    tables of the recoveries, the faults, each node's last counters and the violations. Without
    matplotlib the page has everything but the figure, and says how to get it."""
    try:
        png = render_png(record, report)
        figure = (
            '<img alt="timeline of the run: heights, commit rates, latency and faults" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        )
    except ImportError:
        figure = f'<p class="note">No figure: {_e(FIGURE_HINT)}.</p>'
    key = "".join(
        f"<tr><th>{_e(entry.label)}</th><td>"
        + "<br>".join(f"<code>{_e(line.rstrip())}</code>" if entry.mono else _e(line) for line in entry.lines)
        + "</td></tr>"
        for entry in _entries(record, report)
    )
    verdict_class = "pass" if report.ok else "fail"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chaos run {_e(_verdict(report))}: {_e(report.scenario)} seed {report.seed}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Chaos run <span class="verdict {verdict_class}">{_e(_verdict(report))}</span></h1>
<p>{_e(report.scenario)}, seed {report.seed}. Replay: <code>{_e(report.command)}</code></p>
<table>{key}</table>
<h2>Timeline</h2>
{figure}
<h2>Recovery times</h2>
{_recoveries_html(report)}
<h2>Faults</h2>
{_faults_html(record)}
<h2>Per-node counters (last sample)</h2>
{_counters_html(record)}
<h2>Violations</h2>
{_violations_html(report)}
</body>
</html>
"""
    path.write_text(page, encoding="utf-8")
    return path
