"""The node's Prometheus metrics, served at `GET /metrics`.

Owns: one registry per node (so several nodes can live in one process, as in tests), the metric
names and their labels, and the mapping of free-text refusal reasons to a bounded set of labels.
May not: read the replica or the stores itself; the runtime passes callables for the gauges it
reads at scrape time and counts events as they happen.

Names (all prefixed `bft_`): committed_height, view, txs_committed_total, mempool_txs,
mempool_bytes, refusals_total{what,reason}, view_changes_total{via}, peers_connected,
app_hash_mismatches_total, mempool_full_total, messages_unsendable_total{message},
process_peak_rss_bytes; plus the standard
`process_*` metrics (CPU seconds, resident memory) of prometheus-client's process collector.
"""

from __future__ import annotations

import re
import resource
import sys
from collections.abc import Callable
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
# A peer picks the reason text of its refusals; labels must stay few whatever it sends.
MAX_REASON_LABELS: Final = 64
MAX_REASON_LABEL_CHARS: Final = 48
_NUMBERS: Final = re.compile(r"\b(?:[0-9a-f]{8,}|[0-9]+(?:\.[0-9]+)?)\b")


def reason_label(reason: str) -> str:
    """A refusal reason without its numbers and ids: "stale: view 12 is below..." -> "stale"."""
    head = reason.split(":", 1)[0]
    return _NUMBERS.sub("N", head).strip()[:MAX_REASON_LABEL_CHARS] or "unspecified"


def peak_rss_bytes() -> int:
    """The process's peak resident set size (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class NodeMetrics:
    def __init__(
        self,
        *,
        committed_height: Callable[[], float],
        view: Callable[[], float],
        mempool_txs: Callable[[], float],
        mempool_bytes: Callable[[], float],
        peers_connected: Callable[[], float],
    ) -> None:
        # `*_created` series double the output and nobody reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        gauges = {
            "bft_committed_height": ("Height of the last committed block", committed_height),
            "bft_view": ("The replica's current view", view),
            "bft_mempool_txs": ("Transactions waiting in the mempool", mempool_txs),
            "bft_mempool_bytes": ("Bytes of the transactions in the mempool", mempool_bytes),
            "bft_peers_connected": (
                "Validators this node has an authenticated connection to",
                peers_connected,
            ),
            "bft_process_peak_rss_bytes": ("Peak resident memory of the node process", peak_rss_bytes),
        }
        for name, (doc, read) in gauges.items():
            Gauge(name, doc, registry=self.registry).set_function(read)
        self.txs_committed = Counter(
            "bft_txs_committed", "Transactions in committed blocks", registry=self.registry
        )
        self.refusals = Counter(
            "bft_refusals",
            "Inputs refused, by what was refused and why",
            ["what", "reason"],
            registry=self.registry,
        )
        self.view_changes = Counter(
            "bft_view_changes", "View changes, by what caused them", ["via"], registry=self.registry
        )
        self.app_hash_mismatches = Counter(
            "bft_app_hash_mismatches",
            "Committed blocks whose app-hash claim differs from this node's execution",
            registry=self.registry,
        )
        self.mempool_full = Counter(
            "bft_mempool_full", "Transactions refused because the mempool was full", registry=self.registry
        )
        self.unsendable = Counter(
            "bft_messages_unsendable",
            "Messages dropped because they exceed the transport's frame limit, by message type",
            ["message"],
            registry=self.registry,
        )
        self._reason_labels: set[tuple[str, str]] = set()

    def count_refusal(self, what: str, reason: str) -> None:
        label = (what[:MAX_REASON_LABEL_CHARS], reason_label(reason))
        if label not in self._reason_labels:
            if len(self._reason_labels) >= MAX_REASON_LABELS:
                label = ("other", "other")
            self._reason_labels.add(label)
        self.refusals.labels(*label).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
