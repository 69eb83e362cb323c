"""A schedule as a human reads it: what `bft sim --seed K [--trace]` prints.

Owns: `format_trace` (a header with the seed, the validators, which are Byzantine and how, the
Twins, the settings and the fault plan the seed drew; one line per event, its time in ms since
the start, the instance and what happened; the outcome), `format_outcome` (event and message
counts, each honest instance's committed height, evidence) and `format_summary` (the first lines
of the header and the outcome: what `--seed K` without `--trace` prints).
May not: run anything; it reads a finished schedule's result and the entries its trace collected.

Why it exists: the trace used to be raw `(time, instance, event)` tuples with 17-digit times and
said nothing of who was Byzantine or what the plan was, so a failing seed's trace could not be
read without the code that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

from bft.core.types import max_faulty
from bft.sim.network import Instance
from bft.sim.spec import ScheduleResult
from bft.sim.world import TraceEntry

# An event of the world itself (GST, the last fault), not of one instance.
_WORLD = "-"
_WORLD_LABEL = "sim"


def _label(who: str) -> str:
    return _WORLD_LABEL if who == _WORLD else f"node {who}"


def _indented(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]


def format_header(result: ScheduleResult) -> list[str]:
    """Everything the seed decided before the first event."""
    spec = result.spec
    crashes = "on" if spec.crashes else "off"
    lines = [
        f"seed {result.seed}: {spec.nodes} validators (f = {max_faulty(spec.nodes)}), "
        f"chain {spec.chain_id}, crashes {crashes}" + (", short timeouts" if spec.short_timeouts else "")
    ]
    byzantine = ", ".join(f"node {i} {b}" for i, b in sorted(result.byzantine.items()))
    lines.append(f"Byzantine: {byzantine or 'none'}")
    if result.twins is None:
        lines.append("Twins: none")
    else:
        twins = result.twins.twin_indices
        pairs = ", ".join(f"node {i} runs as {i} and {Instance(i, 1)}" for i in twins)
        # describe()'s first line names the twins again; the rest is one line per view.
        _, *views = result.twins.describe().splitlines()
        lines += [f"Twins: {pairs}; leader and partition by view:", *_indented("\n".join(views))]
    lines += ["drawn from the seed:", *_indented(result.settings.describe())]
    lines += ["fault plan:", *_indented(result.plan.describe())]
    return lines


def format_events(entries: Sequence[TraceEntry]) -> list[str]:
    """One line per event: time since the start in ms (one decimal), the instance, what."""
    width = max((len(_label(who)) for _, who, _ in entries), default=len(_WORLD_LABEL))
    return [f"{time_s * 1000:10.1f} ms  {_label(who):<{width}}  {what}" for time_s, who, what in entries]


def format_outcome(result: ScheduleResult) -> list[str]:
    """How the schedule ended: counts, each honest instance's committed height, evidence."""
    lines = [
        f"outcome: {result.events} events, {result.sim_time_s * 1000:.1f} ms simulated, "
        f"{result.messages} messages, {result.refusals} refusals"
    ]
    heights = ", ".join(f"node {who} {height}" for who, height in result.heights.items())
    lines.append(f"  committed heights: {heights or 'none'} (lowest {result.commits})")
    if result.evidence:
        named = ", ".join(f"node {v} ({count} times)" for v, count in sorted(result.evidence.items()))
        lines.append(f"  evidence of equivocation reported against: {named}")
    return lines


def format_summary(result: ScheduleResult) -> list[str]:
    """The schedule in a few lines, without its events: seed, validators, Byzantine, outcome."""
    seed_line, byzantine_line, *_ = format_header(result)
    return [seed_line, byzantine_line, *format_outcome(result)]


def format_verdict(result: ScheduleResult) -> list[str]:
    if result.ok:
        return ["no violations"]
    return [f"{len(result.violations)} violation(s):", *(f"  {v}" for v in result.violations)]


def format_trace(result: ScheduleResult, entries: Sequence[TraceEntry]) -> str:
    """The whole timeline of one schedule, header to outcome; a failing one ends with the
    command that prints it again."""
    lines = [
        *format_header(result),
        "events (time since the start, instance, what happened):",
        *format_events(entries),
        *format_outcome(result),
        *format_verdict(result),
    ]
    if not result.ok:
        lines.append(f"replay: {result.replay_command} --trace")
    return "\n".join(lines)
