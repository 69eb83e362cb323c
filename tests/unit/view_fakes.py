"""What the API's fake nodes (`bft.node.api.NodeView` stand-ins in the API, server and fuzz
tests) share: a node that serves no snapshot and has pruned nothing."""

from __future__ import annotations

from typing import Any


class NoSnapshots:
    def snapshots(self) -> list[dict[str, Any]]:
        return []

    def snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        return None

    def snapshot_txs(self, height: int, after: bytes) -> bytes | None:
        return None

    def pruned_below(self) -> int:
        return 1
