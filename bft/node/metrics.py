"""The node's Prometheus metrics, served at `GET /metrics`.

Owns: one registry per node (so several nodes can live in one process, as in tests), the metric
names and their labels, and the node's own refusal categories (`NodeSubject`, `NodeReason`).
Every label value comes from a closed set by construction: refusal reasons are
`RefusalReason` values (or a `DecodeError` class of `bft.core.errors`, or a `NodeReason`), never
text a peer chose; validators are indices of the validator set.
May not: read the replica or the stores itself; the runtime passes callables for the gauges it
reads at scrape time and counts events as they happen.

Names (all prefixed `bft_`): committed_height, base_height, view, txs_committed_total, mempool_txs,
mempool_bytes, refusals_total{what,reason}, view_changes_total{via}, peers_connected,
app_hash_mismatches_total, mempool_full_total, messages_unsendable_total{message},
equivocations_total{validator}, process_peak_rss_bytes, quorum_store{part}; plus the standard
`process_*` metrics (CPU seconds, resident memory) of prometheus-client's process collector.
"""

from __future__ import annotations

import enum
import resource
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from prometheus_client.parser import text_string_to_metric_families

from bft.core import errors as core_errors
from bft.core.actions import Refusal
from bft.core.errors import DecodeError
from bft.core.types import ValidatorIndex

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
# The labels of bft_quorum_store: the keys of `QuorumStore.statistics`.
QUORUM_STORE_PARTS: Final = ("batches_kept", "batches_unproved", "proofs_queued", "batches_wanted")


class NodeSubject(enum.StrEnum):
    """What the node itself refused, before anything reached the replica."""

    MESSAGE = "message"  # bytes from a peer that do not decode
    GOSSIPED_TXS = "gossiped transactions"
    # The same labels as the core's `Subject` values, so one series counts both layers' refusals.
    BLOCK_REQUEST = "block request"
    SYNC_REQUEST = "sync request"


class NodeReason(enum.StrEnum):
    """Why the node itself refused (decode errors are labelled by their DecodeError class)."""

    CHECK_TX = "check-tx"  # the application refused gossiped transactions
    PEER_SHARE_FULL = "peer-share-full"  # the gossiping peer's mempool share is full
    PEER_NOT_READING = "peer-not-reading"  # a full answer's worth already waits in its queue
    GOSSIP_RATE = "gossip-rate"  # the peer gossiped more transactions a second than its budget
    GOSSIP_OFF = "gossip-off"  # the chain runs the quorum store, where nobody gossips transactions


def decode_error_label(error: DecodeError) -> str:
    """The name of the `bft.core.errors` class `error` is an instance of (the nearest, for a
    subclass defined elsewhere): a closed set, whatever bytes a peer sent."""
    for cls in type(error).__mro__:
        if cls.__module__ == core_errors.__name__:
            return cls.__name__
    return DecodeError.__name__  # unreachable: DecodeError itself is in the MRO


def _part_reader(read: Callable[[], Mapping[str, int]], part: str) -> Callable[[], float]:
    return lambda: float(read().get(part, 0))


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
        recovering: Callable[[], float],
        quorum_store: Callable[[], Mapping[str, int]] = dict,
        base_height: Callable[[], float] = lambda: 0,
    ) -> None:
        # `*_created` series double the output and nobody reads them.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        gauges = {
            "bft_committed_height": ("Height of the last committed block", committed_height),
            "bft_base_height": (
                "Heights at or below this are pruned ([storage] retain_blocks); 0 keeps every block",
                base_height,
            ),
            "bft_view": ("The replica's current view", view),
            "bft_mempool_txs": ("Transactions waiting in the mempool", mempool_txs),
            "bft_mempool_bytes": ("Bytes of the transactions in the mempool", mempool_bytes),
            "bft_peers_connected": (
                "Validators this node has an authenticated connection to",
                peers_connected,
            ),
            "bft_process_peak_rss_bytes": ("Peak resident memory of the node process", peak_rss_bytes),
            "bft_recovering": (
                "1 while the node recovers a lost safety record and signs nothing (bft.core.recovery)",
                recovering,
            ),
        }
        for name, (doc, read) in gauges.items():
            Gauge(name, doc, registry=self.registry).set_function(read)
        parts = Gauge(
            "bft_quorum_store",
            "The quorum store's holdings (bft.core.quorum_store): batches kept, ours awaiting a "
            "proof, proofs queued for proposals, batches a commit waits for",
            ["part"],
            registry=self.registry,
        )
        for part in QUORUM_STORE_PARTS:
            parts.labels(part).set_function(_part_reader(quorum_store, part))
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
        self.timeouts_sent = Counter(
            "bft_timeouts_sent",
            "Timeout messages this node broadcast (re-sends included)",
            registry=self.registry,
        )
        self.timer_stalls = Counter(
            "bft_timer_stalls",
            "Timer steps after which the replica's next deadline was still not later (a core bug)",
            registry=self.registry,
        )
        self.equivocations = Counter(
            "bft_equivocations",
            "Equivocations kept as evidence (one per validator, view and kind), by validator",
            ["validator"],
            registry=self.registry,
        )

    def count_refusal(self, refusal: Refusal) -> None:
        self.refusals.labels(refusal.what.value, refusal.reason.value).inc()

    def count_undecodable(self, error: DecodeError) -> None:
        self.refusals.labels(NodeSubject.MESSAGE.value, decode_error_label(error)).inc()

    def count_node_refusal(self, what: NodeSubject, reason: NodeReason) -> None:
        self.refusals.labels(what.value, reason.value).inc()

    def count_equivocation(self, validator: ValidatorIndex) -> None:
        self.equivocations.labels(str(int(validator))).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """What a node's `/metrics` says of its consensus troubles, for live views: timeout
    broadcasts, views entered through a TC, and refusals summed by reason."""

    timeouts: int = 0
    tcs: int = 0
    refusals: dict[str, int] = field(default_factory=dict)

    def top_refusals(self, count: int = 3) -> list[tuple[str, int]]:
        return sorted(self.refusals.items(), key=lambda item: (-item[1], item[0]))[:count]


def read_counters(text: str) -> NodeCounters:
    """The counters in a `/metrics` page (Prometheus text format); ValueError if it is not one."""
    timeouts = tcs = 0
    refusals: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bft_timeouts_sent_total":
                timeouts = int(sample.value)
            elif sample.name == "bft_view_changes_total" and sample.labels.get("via") == "tc":
                tcs = int(sample.value)
            elif sample.name == "bft_refusals_total" and sample.value > 0:
                reason = sample.labels.get("reason", "?")
                refusals[reason] = refusals.get(reason, 0) + int(sample.value)
    return NodeCounters(timeouts, tcs, refusals)
