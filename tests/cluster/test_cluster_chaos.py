"""`bft chaos run` on real node processes on 127.0.0.1: partitions stop and heal, a minority cut
off leaves the majority committing, a paused leader wakes up without forking the chain, a wiped
node rejoins without double-signing, and the scenario CI keeps (a Byzantine node, a partition,
a kill, a pause, under load) passes the checker.

Each test runs the command as a user would (`python -m bft chaos run FILE --out DIR`), reads
the `record.json` it wrote and judges it again with the checker; what the test asserts beyond the
verdict is read from that record (heights over time, recovery times, /metrics counters).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from bft.chaos.checker import CheckReport, check
from bft.chaos.record import RunRecord

REPO = Path(__file__).resolve().parents[2]
# A run's own length plus start-up, settle and stop, on a loaded 2-core machine.
RUN_TIMEOUT_S = 300

_COMMON = """
[consensus]
base_timeout_s = 0.25
max_timeout_s = 1.0

[load]
clients = 4
rate = 30
mix = { put = 5, cas = 3, del = 1, get = 3 }
keys = 16
"""


def _run(tmp_path: Path, name: str, duration: str, timeline: str) -> tuple[RunRecord, CheckReport]:
    """Run a 4-node scenario with short timeouts and light load; the record and its verdict."""
    scenario = tmp_path / f"{name}.toml"
    head = (
        f'name = "{name}"\nduration = "{duration}"\nseed = 3\n\n[cluster]\nnodes = 4\nliveness_bound = "6s"\n'
    )
    scenario.write_text(head + _COMMON + timeline)
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "bft", "chaos", "run", str(scenario), "--out", str(out), "--settle", "40"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert (out / "record.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    record = RunRecord.from_json((out / "record.json").read_text())
    report = check(record)
    assert done.returncode == (0 if report.ok else 1), done.stdout[-3000:] + done.stderr[-3000:]
    assert report.ok, report.format_summary()
    assert (out / "report.html").exists()
    return record, report


def _max_height(record: RunRecord, start_s: float, end_s: float, nodes: tuple[int, ...]) -> int:
    heights = [
        s.height
        for s in record.samples
        if start_s <= s.t_s <= end_s and s.node in nodes and s.height is not None
    ]
    return max(heights, default=0)


def _last_counters(record: RunRecord, node: int) -> dict[str, int]:
    samples = [s for s in record.samples if s.node == node and s.refusals]
    return samples[-1].refusals if samples else {}


def test_a_two_two_partition_stops_commits_and_the_heal_resumes_them_within_the_bound(tmp_path: Path) -> None:
    timeline = (
        '[[timeline]]\nat = "4s"\npartition = [[0, 1], [2, 3]]\n[[timeline]]\nat = "10s"\nheal = true\n'
    )
    record, report = _run(tmp_path, "split", "20s", timeline)
    everyone = (0, 1, 2, 3)
    # No side holds a quorum: after the views in flight, nothing commits until the heal.
    assert _max_height(record, 6.0, 9.9, everyone) - _max_height(record, 0, 5.0, everyone) <= 3
    assert _max_height(record, 10.0, 20.0, everyone) > _max_height(record, 0, 9.9, everyone) + 20
    heals = [r for r in report.figures.recoveries if r.what.startswith("heal")]
    assert heals and all(r.judged and r.recovered_after_s is not None for r in heals)
    assert all(
        r.recovered_after_s is not None and r.recovered_after_s <= record.liveness_bound_s for r in heals
    )


def test_a_minority_cut_off_leaves_the_majority_committing(tmp_path: Path) -> None:
    timeline = '[[timeline]]\nat = "4s"\npartition = [[3]]\n[[timeline]]\nat = "12s"\nheal = true\n'
    record, report = _run(tmp_path, "minority", "20s", timeline)
    majority = (0, 1, 2)
    # Slower than with all four, and in bursts: every view node 3 leads times out, and a commit
    # needs three consecutive views led by the others, which the leader shuffle may not give for
    # a few seconds (leader reputation is issue 13). Over the partition, they commit.
    assert _max_height(record, 11.0, 12.0, majority) > _max_height(record, 0, 5.0, majority) + 1
    # The cut-off node catches up after the heal: every honest chain ends at the same height.
    assert len(set(report.figures.final_height.values())) == 1


def test_a_paused_node_wakes_up_without_forking_the_chain(tmp_path: Path) -> None:
    # Paused for 5 s (20 base timeouts: it misses views it leads and wakes up in an old one).
    timeline = '[[timeline]]\nat = "4s"\npause = { node = 0, for = "5s" }\n'
    record, report = _run(tmp_path, "paused", "18s", timeline)
    # Agreement and app hashes over every height were checked by the checker (report.ok); and
    # node 0's own chain is the same length as the others' at the end.
    assert report.figures.final_height[0] == max(report.figures.final_height.values())
    assert _max_height(record, 5.0, 9.0, (1, 2, 3)) > _max_height(record, 0, 4.0, (1, 2, 3))


def test_a_wiped_node_rejoins_by_syncing_and_never_double_signs(tmp_path: Path) -> None:
    timeline = '[[timeline]]\nat = "5s"\nwipe = { node = 2, for = "3s" }\n'
    record, report = _run(tmp_path, "wiped", "22s", timeline)
    assert report.figures.final_height[2] == max(report.figures.final_height.values()) > 50
    # The honest nodes kept no evidence of node 2 signing twice: a vote or timeout in a view it
    # had signed in before the wipe would be a vote-conflict refusal and kept evidence.
    for node in (0, 1, 3):
        counters = _last_counters(record, node)
        assert counters.get("vote-conflict", 0) == 0, counters
    # Node 2 found no safety record, recovered (`bft.core.recovery`) and caught up.
    log = (tmp_path / "run" / "net" / "node2" / "node.log").read_text()
    assert "event=recovering" in log and "event=recovered" in log


def test_the_ci_scenario_passes(tmp_path: Path) -> None:
    """configs/scenarios/ci-short.toml: a Byzantine node (double-vote), a partition and heal, a
    kill and restart, a pause, under load. The CI runs it on every submission."""
    out = tmp_path / "ci"
    done = subprocess.run(
        [sys.executable, "-m", "bft", "chaos", "run", "configs/scenarios/ci-short.toml", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert "PASS" in done.stdout
    record = RunRecord.from_json((out / "record.json").read_text())
    assert {f.kind for f in record.faults} >= {"partition", "heal", "kill", "restart", "pause", "resume"}
    report = check(record)
    assert report.ok and report.figures.writes_acknowledged > 500
    # The Byzantine node is visible by what the honest nodes refused from it.
    refused = [_last_counters(record, node) for node in record.honest]
    assert any(counters for counters in refused), json.dumps(refused)


def test_a_live_chaos_cluster_takes_ctl_commands_and_is_judged_on_ctrl_c(tmp_path: Path) -> None:
    """`bft cluster --chaos` with a Byzantine node at index 2; `bft ctl` partitions, heals,
    pauses and resumes it, a bad command is refused; Ctrl-C heals, settles and judges."""
    home = tmp_path / "live"
    cluster = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bft",
            "cluster",
            "--chaos",
            "--home",
            str(home),
            "--byzantine",
            "2=double-vote",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ctl(*words: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "bft", "ctl", "--home", str(home), *words],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        deadline = time.monotonic() + 60
        while not (home / "ctl.sock").exists():
            assert time.monotonic() < deadline and cluster.poll() is None, "no control socket"
            time.sleep(0.2)
        time.sleep(3)  # commits first
        for words in (["partition", "0,1", "2,3"], ["heal"], ["pause", "1"], ["resume", "1"]):
            done = ctl(*words)
            assert done.returncode == 0, done.stderr
        refused = ctl("kill", "9")
        assert refused.returncode == 2 and "'9' is not a node" in refused.stderr
        time.sleep(4)
        cluster.send_signal(signal.SIGINT)
        out, _ = cluster.communicate(timeout=120)
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
    assert cluster.returncode == 0, out[-4000:]
    assert "chaos run: PASS" in out
    record = RunRecord.from_json((home / "record.json").read_text())
    assert [f.kind for f in record.faults if f.kind != "heal"][:3] == ["partition", "pause", "resume"]
    report = check(record)
    assert report.ok and report.figures.writes_acknowledged > 0, report.format_summary()
