"""How a starting node process composes its replica's ports from its durable state: the one
composition that the node's runtime and the simulator (through `bft.campaign`) share.

Owns: `open_ports`: the executor's `info` handshake (replaying every stored block the
application has not applied), then the ports over the stores: the block store as the journal and
the committed chain, the executor as the executed state, the batch store as the quorum store's.
May not: open files or choose implementations (callers hand it the stores they opened), or build
the replica (`bft.core.builder.build_replica` does, for every driver).
"""

from __future__ import annotations

from bft.core.ports import BatchStore, PayloadSource, Ports
from bft.core.safety_store import SafetyStore
from bft.node.executor import Executor
from bft.node.storage import BlockStore


def open_ports(
    safety_store: SafetyStore,
    blocks: BlockStore,
    executor: Executor,
    payload: PayloadSource,
    batches: BatchStore,
) -> Ports:
    """The ports a (re)starting node runs its replica on. `executor` (new in this process, over
    `blocks` and the application) is started first: a replica must not read an app hash, or
    commit, before the application has caught up with the block store. StorageError if the two
    disagree (`Executor.start`)."""
    executor.start()
    return Ports(safety_store, blocks, executor, blocks, payload, batches)
