"""The chaos report: the terminal summary names the verdict, the replay line, every fault kind,
the recovery times and the violations within 80 columns; the HTML page is one self-contained file
with the figure embedded (or, without matplotlib, the tables and a hint); the PNG is a real image;
the series the timeline draws are right; a run with nothing in it still gets a report."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import COMMAND, FAULTS, KILL, SEED, minimal_run, realistic_run

from bft.chaos.checker import CheckReport, ViolationKind, check
from bft.chaos.record import ClientOp, FaultEvent, RunRecord, StatusSample
from bft.chaos.report import (
    FIGURE_HINT,
    TERMINAL_VIOLATIONS,
    commit_rates,
    format_terminal,
    height_series,
    latency_bins,
    write_html,
    write_png,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run() -> tuple[RunRecord, CheckReport]:
    """The realistic run with one planted wrong read (node 2, just after its restart): the
    checker passes the run as built and reports exactly that read once it is planted."""
    record = realistic_run()
    assert check(record).ok, check(record).format_summary()
    at = next(
        i
        for i, op in enumerate(record.ops)
        if op.op == "get" and op.outcome == "ok" and op.node == 2 and op.invoke_s > KILL[1] + 2
    )
    ops = list(record.ops)
    ops[at] = dataclasses.replace(ops[at], read_value="bogus")
    record = dataclasses.replace(record, ops=ops)
    report = check(record)
    assert [v.kind for v in report.violations] == [ViolationKind.WRONG_READ]
    return record, report


def test_the_terminal_summary_names_verdict_replay_faults_recoveries_and_the_violation(
    run: tuple[RunRecord, CheckReport],
) -> None:
    record, report = run
    text = format_terminal(record, report)
    lines = text.splitlines()
    assert lines[0] == "chaos run: FAIL (1 violation)"
    assert f"seed           {SEED}" in text
    assert any(line.endswith(COMMAND) for line in lines)  # whole, on one line, to be copied
    for kind in {f.kind for f in FAULTS}:
        assert f"{kind} 1" in text
    for r in report.figures.recoveries:
        assert r.recovered_after_s is not None
        assert f"t={r.t_s:.2f}s {r.what}: commits resumed after" in text
    assert "commits resumed after 1.00 s" in text  # the heal: the first block 0.8 s later, sampled at 46 s
    assert f"longest stall  {report.figures.longest_stall_s:.2f} s" in text
    assert "writes p50 " in text and "reads  p50 " in text and "p99 " in text
    assert "node 3 byzantine" in text and "node 0 471" in text
    violation = report.violations[0]
    assert f"wrong_read (t={violation.t_s:.2f}s, node 2, height {violation.height})" in text
    assert "'bogus'" in text
    assert all(len(line) <= 80 for line in lines if COMMAND not in line), text


def test_a_passing_run_says_pass_and_many_violations_are_capped(run: tuple[RunRecord, CheckReport]) -> None:
    record, report = run
    passing = dataclasses.replace(report, violations=[])
    assert format_terminal(record, passing).splitlines()[0] == "chaos run: PASS"
    many = dataclasses.replace(report, violations=report.violations * (TERMINAL_VIOLATIONS + 5))
    text = format_terminal(record, many)
    assert text.count("    wrong_read (") == TERMINAL_VIOLATIONS
    assert "... and 5 more" in text
    assert f"FAIL ({TERMINAL_VIOLATIONS + 5} violations)" in text


def test_the_html_page_is_self_contained_with_the_figure_tables_and_violation(
    run: tuple[RunRecord, CheckReport], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    record, report = run
    path = write_html(record, report, tmp_path / "run.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert '<img alt="timeline' in page and 'src="data:image/png;base64,iVBORw0KGgo' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert FIGURE_HINT not in page
    for kind in {f.kind for f in FAULTS}:
        assert f"</span>{kind}</td>" in page  # a row of the faults table, with its colour
    assert "wrong_read" in page and "&#x27;bogus&#x27;" in page  # escaped
    assert "Recovery times" in page and "restart 2" in page
    assert COMMAND in page and str(SEED) in page
    assert "refusals by reason" in page and "equivocation" in page


def test_a_minimal_record_gets_a_report_too(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for record in (minimal_run(), dataclasses.replace(minimal_run(), samples=[], duration_s=0.0)):
        report = check(record)
        text = format_terminal(record, report)
        assert text.startswith("chaos run: PASS") and "faults         none" in text
        page = write_html(record, report, tmp_path / "minimal.html").read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
        assert "No faults were injected." in page
        assert write_png(record, report, tmp_path / "minimal.png").read_bytes().startswith(PNG_MAGIC)


def test_write_png_writes_a_png_of_laptop_size(run: tuple[RunRecord, CheckReport], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    record, report = run
    data = write_png(record, report, tmp_path / "run.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 1200 <= width <= 2000 and 900 <= height <= 1600, (width, height)
    assert 50_000 < len(data) < 2_000_000


def test_without_matplotlib_the_page_has_the_tables_and_the_hint(
    run: tuple[RunRecord, CheckReport], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    record, report = run
    page = write_html(record, report, tmp_path / "run.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert FIGURE_HINT in page.replace("&#x27;", "'") and "pip install" in page
    assert "data:image/png" not in page
    assert "partition" in page and "wrong_read" in page
    with pytest.raises(ImportError, match=r"bft\[report\]"):
        write_png(record, report, tmp_path / "run.png")
    assert not (tmp_path / "run.png").exists()
    assert format_terminal(record, report).startswith("chaos run: FAIL")


def test_importing_the_report_and_the_summary_never_load_matplotlib() -> None:
    code = (
        "import sys\n"
        "from bft.chaos.checker import check\n"
        "from bft.chaos.record import RunRecord\n"
        "from bft.chaos.report import format_terminal\n"
        "r = RunRecord('s', 0, 'bft chaos run s', 4, (0, 1, 2), 1.0, 5.0)\n"
        "format_terminal(r, check(r))\n"
        "assert not any(m.startswith('matplotlib') for m in sys.modules), 'matplotlib imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_commit_rates_are_centred_height_differences_and_break_where_a_node_is_silent() -> None:
    times = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    heights = [0.0, 5.0, 10.0, math.nan, math.nan, 12.0, 2.0]  # down, then wiped
    rates = commit_rates(times, heights, window_s=2.0)
    assert rates[:3] == [5.0, 5.0, 5.0]
    assert math.isnan(rates[3]) and math.isnan(rates[4])
    assert rates[5] == 0.0 and rates[6] == 0.0  # a height that went down is no commit, not a negative one
    assert math.isnan(commit_rates([0.0], [1.0])[0])


def test_height_series_orders_samples_and_marks_silence_as_nan() -> None:
    samples = [StatusSample(1.0, 0, 3, 4), StatusSample(0.0, 0, 1, 2), StatusSample(0.5, 1, None, None)]
    series = height_series(samples)
    assert series[0] == ([0.0, 1.0], [1.0, 3.0])
    assert series[1][0] == [0.5] and math.isnan(series[1][1][0])


def test_latency_bins_use_nearest_rank_percentiles_by_completion_time() -> None:
    ops = [ClientOp(0, 0, "put", "k", 0.0, 0.01 * (i + 1), "ok") for i in range(100)]
    ops.append(ClientOp(0, 0, "put", "k", 4.0, 9.0, "ok"))  # completes in the third 2 s bin
    bins = latency_bins(ops, 2.0)
    assert [(b.start_s, b.count) for b in bins] == [(0.0, 100), (8.0, 1)]
    first = bins[0]
    assert (first.p50_s, first.p90_s, first.p99_s) == pytest.approx((0.50, 0.90, 0.99))
    assert bins[1].p99_s == pytest.approx(5.0)
    assert latency_bins([], 2.0) == []


def test_an_unknown_fault_kind_and_a_node_outside_the_cluster_are_drawn_not_fatal(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    record = dataclasses.replace(
        minimal_run(),
        faults=[FaultEvent(0.1, "bitflip", "flip bits on 0", (0,), 0.4), FaultEvent(0.2, "kill", "", (9,))],
    )
    report = check(record)
    assert "bitflip 1, kill 1" in format_terminal(record, report)
    page = write_html(record, report, tmp_path / "odd.html").read_text(encoding="utf-8")
    assert "</span>bitflip</td>" in page and "data:image/png;base64," in page
