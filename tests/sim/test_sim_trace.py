"""`bft sim --seed K --trace`: a timeline a human can read. A header names the seed, the
validators, which are Byzantine and how, the drawn settings and the fault plan; then one event
per line with its time in ms and the instance; then the outcome."""

from __future__ import annotations

import re

import pytest

from bft.campaign import FACTORIES
from bft.cli import main
from bft.sim import SimSpec, run_schedule
from bft.sim.trace import format_trace
from bft.sim.world import TraceEntry

# Seed 4 of `--byzantine equivocate` at n = 4 moves the behaviour to a seeded index and draws
# crashes and partitions: every part of the header has something to say.
SPEC = SimSpec(nodes=4, byzantine={0: "equivocate"})
SEED = 4
EVENT = re.compile(r"^ {0,9}\d+\.\d ms  (node \S+ *|sim +)  \S")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(["sim", *argv])
    return code, capsys.readouterr().out.splitlines()


def test_the_trace_is_a_readable_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    entries: list[TraceEntry] = []
    result = run_schedule(SPEC, SEED, FACTORIES, trace=entries)
    assert result.ok and result.plan.crashes and result.plan.partitions, "pick a seed with faults"
    (byzantine, behaviour), *_ = result.byzantine.items()

    code, lines = _cli(capsys, "--nodes", "4", "--byzantine", "equivocate", "--seed", str(SEED), "--trace")
    assert code == 0
    text = "\n".join(lines)
    assert lines[0] == f"seed {SEED}: 4 validators (f = 1), chain sim, crashes on"
    assert f"Byzantine: node {byzantine} {behaviour}" in lines
    assert "Twins: none" in lines
    assert f"  {result.settings.describe()}" in lines
    for line in result.plan.describe().splitlines():
        assert f"  {line}" in lines
    assert not any(line.startswith("(") for line in lines), "no raw tuples"

    events = [line for line in lines if EVENT.match(line)]
    assert len(events) == len(entries)
    # Every event, in order, at its time in ms with one decimal (never 17 digits).
    for line, (time_s, who, what) in zip(events, entries, strict=True):
        ms, rest = line.split(" ms  ", 1)
        assert float(ms) == pytest.approx(time_s * 1000, abs=0.05)
        label = "sim" if who == "-" else f"node {who}"
        assert rest.startswith(label) and rest[len(label) :].strip() == what
    assert any(re.search(r"  node \d  recv Vote\(view=\d+\) from \d$", line) for line in events)
    assert any(re.search(r"  node \d  recv Proposal\(view=\d+\) from \d$", line) for line in events)
    assert any(re.search(r"  sim +GST$", line) for line in events)
    assert any("crash" in line for line in events)

    tail = lines[lines.index(events[-1]) + 1 :]
    assert tail[0] == (
        f"outcome: {result.events} events, {result.sim_time_s * 1000:.1f} ms simulated, "
        f"{result.messages} messages, {result.refusals} refusals"
    )
    heights = ", ".join(f"node {who} {h}" for who, h in result.heights.items())
    assert f"  committed heights: {heights} (lowest {result.commits})" in tail
    assert tail[-1] == "no violations"
    assert text.count("\n") == len(lines) - 1


def test_a_failing_schedule_ends_with_its_violations_and_replay_command() -> None:
    # Liveness no schedule can meet.
    spec = SimSpec(nodes=4, crashes=False, max_gst_s=2.0, window_s=3.0, min_new_commits=1000)
    entries: list[TraceEntry] = []
    result = run_schedule(spec, 10, FACTORIES, trace=entries)
    assert not result.ok
    lines = format_trace(result, entries).splitlines()
    assert lines[0] == "seed 10: 4 validators (f = 1), chain sim, crashes off"
    assert "Byzantine: none" in lines
    assert f"{len(result.violations)} violation(s):" in lines
    assert f"  {result.violations[0]}" in lines
    assert lines[-1] == f"replay: {result.replay_command} --trace"


def test_without_trace_the_outcome_is_readable_too(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_schedule(SPEC, SEED, FACTORIES)
    code, lines = _cli(capsys, "--nodes", "4", "--byzantine", "equivocate", "--seed", str(SEED))
    assert code == 0
    heights = ", ".join(f"node {who} {h}" for who, h in result.heights.items())
    assert f"  committed heights: {heights} (lowest {result.commits})" in lines
    assert not any("{" in line for line in lines), "no Python dict reprs"
    assert lines[-1] == "no violations"
