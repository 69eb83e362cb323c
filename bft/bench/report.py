"""The report of `bft bench`: the figures of the measured window, as JSON or as a table.

Owns: `BenchReport`, its JSON object (the shape `bft bench --json` prints, which DESIGN.md lists
among the interfaces other programs rely on), the rich table, and the formatting of optional
figures (`format_ms`).
May not: measure or print anything (the command prints); import rich at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bft.bench.options import BenchOptions
from bft.bench.stats import Tally, latency_summary_ms
from bft.bench.usage import max_peak_rss_bytes

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True, slots=True)
class BenchReport:
    opts: BenchOptions
    window: Tally
    per_node: list[dict[str, Any]]
    # The first failed request of the run (warm-up included), for the operator.
    first_error: str | None = None
    # The load generator's CPU over the window (this process: clients, probes and the live view),
    # in seconds and in percent of one core; None where it could not be read.
    load_cpu_s: float | None = None
    load_cpu_percent: float | None = None

    @property
    def tx_per_s(self) -> float:
        return self.window.committed / self.opts.duration_s

    def to_json(self) -> dict[str, Any]:
        """The object `bft bench --json` prints (DESIGN.md, "Interfaces other programs rely on")."""
        return {
            "tx_per_s": round(self.tx_per_s, 2),
            "latency_ms": latency_summary_ms(self.window.latencies_s),
            "nodes": self.opts.nodes,
            "tx_size": self.opts.tx_size_bytes,
            "duration_s": self.opts.duration_s,
            "warmup_s": self.opts.warmup_s,
            "clients": self.opts.clients,
            "rate": self.opts.rate_per_s,
            "batch": self.opts.batch,
            "submitted": self.window.submitted,
            "committed": self.window.committed,
            "rejected": self.window.rejected,
            "uncommitted": self.window.uncommitted,
            "errors": self.window.errors,
            "mempool_full_retries": self.window.mempool_full_retries,
            "per_node": self.per_node,
            "target": "local" if self.opts.local else list(self.opts.targets),
            # The local cluster's commit rule (2 or 3); null for --target, whose rule is not known.
            "commit_chain": self.opts.commit_chain,
            # Whether the local cluster runs the quorum store; null for --target, as above.
            "quorum_store": self.opts.quorum_store,
            # Whether the local cluster chooses leaders by reputation; null for --target.
            "leader_reputation": self.opts.leader_reputation,
            # "kv" (the key-value ledger) or "noop" (--consensus-only); null for --target.
            "app": self.opts.app,
            # The body of POST /txs the load submitted in: "binary" or "json" (--json-body).
            "body": self.opts.body,
            "load_cpu_s": self.load_cpu_s,
            "load_cpu_percent": self.load_cpu_percent,
            "max_node_rss_bytes": max_peak_rss_bytes(self.per_node),
        }


def report_table(report: BenchReport) -> Table:
    from rich.table import Table

    data = report.to_json()
    latency = data["latency_ms"]
    where = "local cluster" if report.opts.local else ", ".join(report.opts.targets)
    table = Table(title=f"bft bench — {data['nodes']} nodes ({where}), {data['duration_s']:g} s measured")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("committed tx/s", f"{data['tx_per_s']:.1f}"),
        ("latency p50 / p90 / p99 (ms)", " / ".join(format_ms(latency[p]) for p in ("p50", "p90", "p99"))),
        ("commit chain", "the cluster's" if data["commit_chain"] is None else str(data["commit_chain"])),
        ("quorum store", "the cluster's" if data["quorum_store"] is None else _ON_OFF[data["quorum_store"]]),
        (
            "leader reputation",
            "the cluster's" if data["leader_reputation"] is None else _ON_OFF[data["leader_reputation"]],
        ),
        ("application", _APP_NAMES.get(data["app"], "the cluster's")),
        ("submission body", _BODY_NAMES[data["body"]]),
        ("tx size (bytes)", str(data["tx_size"])),
        ("clients x batch", f"{data['clients']} x {data['batch']}"),
        ("target rate (tx/s)", "unlimited" if not data["rate"] else f"{data['rate']:g}"),
        ("submitted / committed", f"{data['submitted']} / {data['committed']}"),
        ("rejected / uncommitted / errors", f"{data['rejected']} / {data['uncommitted']} / {data['errors']}"),
        ("mempool-full retries", str(data["mempool_full_retries"])),
        (
            "load generator CPU",
            f"{_optional(data['load_cpu_s'], '{:.2f} s')} ({_optional(data['load_cpu_percent'], '{:.0f}%')})",
        ),
        ("max node peak RSS", _optional(_mib(data["max_node_rss_bytes"]), "{:.1f} MiB")),
    ]
    for entry in data["per_node"]:
        rows.append(
            (
                f"node {entry['node']} ({entry['api']}) CPU / peak RSS",
                f"{_optional(entry['cpu_s'], '{:.2f} s')} ({_optional(entry['cpu_percent'], '{:.0f}%')}) / "
                f"{_optional(_mib(entry['peak_rss_bytes']), '{:.1f} MiB')}",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


_APP_NAMES = {"kv": "key-value ledger", "noop": "no-op (--consensus-only)"}
_ON_OFF = {True: "on", False: "off"}
_BODY_NAMES = {"binary": "binary (length-prefixed)", "json": "JSON (base64, --json-body)"}


def format_ms(value: float | None) -> str:
    """Milliseconds to one decimal, or "n/a"."""
    return _optional(value, "{:.1f}")


def _mib(value: int | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def _optional(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)
