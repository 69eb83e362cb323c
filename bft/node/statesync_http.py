"""State sync over HTTP: another node's API as a `bft.node.statesync.SnapshotSource`, and the
node's own files around a sync.

Owns: `HttpSource` (`GET /snapshots`, `/blocks/<h>`, a chunk, a page of records from one node's
API, each read under a byte bound so that a server sending without end costs nothing), the
default sources (the other validators' API addresses in the genesis), and `sync_node`: a sync of
the node at a home into its data directory (the new block store built in `blocks.sqlite.sync`,
fsynced, and renamed over the node's own).
May not: trust anything it reads (`bft.node.statesync` verifies) or run the node.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx

from bft.app.interface import MAX_SNAPSHOT_CHUNK_BYTES, SnapshotApplication
from bft.core.blocktree import genesis as genesis_block
from bft.node.config import Genesis, NodeConfig
from bft.node.logs import kv
from bft.node.statesync import StateSyncError, SyncChain, SyncReport, sync_from
from bft.node.storage import BLOCKS_FILE, BlockStore
from bft.node.tx_set import MAX_RECORDS_PER_PAGE, TX_RECORD_BYTES

log = logging.getLogger("bft.node")

REQUEST_TIMEOUT_S: Final = 15.0
SYNC_SUFFIX: Final = ".sync"
MAX_LIST_BYTES: Final = 4 * 1024 * 1024
MAX_PAGE_BYTES: Final = MAX_RECORDS_PER_PAGE * TX_RECORD_BYTES
# A block answer: the largest block (4 MiB messages) with its commit proof's blocks, as JSON.
MAX_BLOCK_ANSWER_BYTES: Final = 64 * 1024 * 1024


class _TooLarge(Exception):
    pass


class HttpSource:
    """One node's API, e.g. "http://10.0.0.2:26601"."""

    def __init__(self, url: str, http: httpx.Client) -> None:
        self.url = url.rstrip("/")
        self._http = http

    @property
    def name(self) -> str:
        return self.url

    def _get(self, path: str, limit_bytes: int) -> bytes | None:
        """The body of GET `path`, at most `limit_bytes`; None (logged) if it fails, is not a
        200, or is longer."""
        body = bytearray()
        try:
            with self._http.stream("GET", f"{self.url}{path}") as response:
                if response.status_code in (404, 410):
                    return None
                response.raise_for_status()
                for piece in response.iter_bytes():
                    body += piece
                    if len(body) > limit_bytes:
                        raise _TooLarge(f"more than {limit_bytes} bytes")
        except (httpx.HTTPError, _TooLarge) as exc:
            log.info(kv(event="state_sync_fetch_failed", source=self.url, path=path, reason=exc))
            return None
        return bytes(body)

    def _get_json(self, path: str, limit_bytes: int) -> object | None:
        body = self._get(path, limit_bytes)
        if body is None:
            return None
        try:
            doc: object = json.loads(body)
        except ValueError as exc:
            log.info(kv(event="state_sync_fetch_failed", source=self.url, path=path, reason=exc))
            return None
        return doc

    def snapshot_list(self) -> object | None:
        return self._get_json("/snapshots", MAX_LIST_BYTES)

    def block(self, height: int) -> object | None:
        return self._get_json(f"/blocks/{height}", MAX_BLOCK_ANSWER_BYTES)

    def chunk(self, height: int, format: int, index: int) -> bytes | None:
        return self._get(f"/snapshots/{height}/{format}/{index}", MAX_SNAPSHOT_CHUNK_BYTES)

    def records(self, height: int, after: bytes) -> bytes | None:
        return self._get(f"/snapshots/{height}/txs?after={after.hex()}", MAX_PAGE_BYTES)

    def earliest_height(self) -> int | None:
        doc = self._get_json("/status", MAX_LIST_BYTES)
        value = doc.get("earliest_height") if isinstance(doc, dict) else None
        return value if type(value) is int else None


def api_servers(config: NodeConfig, genesis: Genesis) -> list[str]:
    """The other validators' API URLs, from the genesis."""
    return [f"http://{v.api}" for v in genesis.validators if v.index != config.index]


def sync_node(
    config: NodeConfig, genesis: Genesis, app: SnapshotApplication, servers: Sequence[str], held: int
) -> SyncReport | None:
    """State sync the node of `config` from the APIs at `servers` (`sync_from`): its application
    restored, its block store replaced by the one the sync built. None if no server offers a
    snapshot above `held`."""
    if not genesis.state_sync:
        raise StateSyncError(
            f'the genesis of {genesis.chain_id} does not say "state_sync": nothing to join from'
        )
    path = config.data_dir / (BLOCKS_FILE + SYNC_SUFFIX)

    def new_store() -> BlockStore:
        _remove_store(path)
        return BlockStore(
            path,
            genesis_id=genesis_block(genesis.chain_id)[0].id,
            commit_chain=genesis.commit_chain,
            tx_set=True,
        )

    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        sources = [HttpSource(url, http) for url in servers]
        done = sync_from(SyncChain.of(genesis), app, sources, new_store, held)
    if done is None:
        return None
    report, store = done
    store.close()
    _replace_store(path, config.data_dir / BLOCKS_FILE)
    return report


def _remove_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _replace_store(synced: Path, target: Path) -> None:
    """Put the synced (closed, so checkpointed) store in place of the node's, durably."""
    fd = os.open(synced, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _remove_store(target)
    os.replace(synced, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
