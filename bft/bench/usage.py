"""Each node's resource use in `bft bench`, and the load generator's: CPU seconds and peak memory.

Owns: `NodeSample` (one reading), parsing it from a node's Prometheus text (`parse_metrics`),
reading it from /proc for a local process (`proc_sample`) or for this one (`self_sample`: the load
generator), completing one reading from another (`merge_samples`), the CPU used between two
readings (`cpu_between`), the per-node entry of the report (`node_usage`: that CPU and the peak
RSS) and the largest peak of them (`max_peak_rss_bytes`).
May not: reach a node (the readings are fetched by `bft.bench.probe`); import anything heavy but
prometheus_client, and that only where the text is parsed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

METRIC_CPU: Final = "process_cpu_seconds_total"
METRIC_PEAK_RSS: Final = "bft_process_peak_rss_bytes"


@dataclass(frozen=True, slots=True)
class NodeSample:
    """One reading of a node's resource use; None where the node did not report it."""

    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    at: float = 0.0


def parse_metrics(text: str, at: float = 0.0) -> NodeSample:
    """`process_cpu_seconds_total` and `bft_process_peak_rss_bytes` from Prometheus text;
    None for a metric that is absent, or for both if the text does not parse."""
    from prometheus_client.parser import text_string_to_metric_families

    cpu_s: float | None = None
    peak: int | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == METRIC_CPU:
                    cpu_s = float(sample.value)
                elif sample.name == METRIC_PEAK_RSS:
                    peak = int(sample.value)
    except (ValueError, TypeError, IndexError, KeyError):
        return NodeSample(at=at)
    return NodeSample(cpu_s, peak, at)


def proc_sample(pid: int, at: float = 0.0) -> NodeSample:
    """The same figures from /proc for a local process (Linux); None where it cannot be read."""
    cpu_s: float | None = None
    peak: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); the text after ")" starts at field 3.
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return NodeSample(cpu_s, peak, at)


def self_sample(at: float = 0.0) -> NodeSample:
    """This process's CPU seconds so far, all its threads (`time.process_time`); no peak RSS."""
    return NodeSample(cpu_s=time.process_time(), at=at)


def merge_samples(preferred: NodeSample, fallback: NodeSample) -> NodeSample:
    """`preferred`, with each missing figure taken from `fallback`."""
    return NodeSample(
        preferred.cpu_s if preferred.cpu_s is not None else fallback.cpu_s,
        preferred.peak_rss_bytes if preferred.peak_rss_bytes is not None else fallback.peak_rss_bytes,
        preferred.at,
    )


def cpu_between(start: NodeSample, end: NodeSample) -> tuple[float | None, float | None]:
    """The CPU seconds used between two readings of one process, and that as a percent of one
    core over the time between them; None where either reading lacks the CPU figure."""
    if start.cpu_s is None or end.cpu_s is None:
        return None, None
    cpu_s = round(max(0.0, end.cpu_s - start.cpu_s), 3)
    interval_s = end.at - start.at
    return cpu_s, round(cpu_s / interval_s * 100, 1) if interval_s > 0 else None


def node_usage(node: int, api: str, start: NodeSample, end: NodeSample) -> dict[str, Any]:
    """The per-node entry of the report: CPU seconds and percent between two samples, peak RSS."""
    cpu_s, cpu_percent = cpu_between(start, end)
    peaks = [s.peak_rss_bytes for s in (start, end) if s.peak_rss_bytes is not None]
    return {
        "node": node,
        "api": api,
        "cpu_s": cpu_s,
        "cpu_percent": cpu_percent,
        "peak_rss_bytes": max(peaks) if peaks else None,
    }


def max_peak_rss_bytes(per_node: Sequence[dict[str, Any]]) -> int | None:
    """The largest `peak_rss_bytes` of the per-node entries; None if no node reported one."""
    peaks = [int(e["peak_rss_bytes"]) for e in per_node if e.get("peak_rss_bytes") is not None]
    return max(peaks) if peaks else None
