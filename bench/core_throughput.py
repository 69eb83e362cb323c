"""How many blocks the core commits per CPU second: n honest replicas of the real core, every
message encoded and decoded, every signature made and checked, over an instant in-process
network. This is the core's own overhead, before any network or disk.

Run: python bench/core_throughput.py [--nodes 4] [--views 2000]
"""

from __future__ import annotations

import argparse
import collections
import time

from bft.core import wire
from bft.core.actions import Broadcast, Commit, Send
from bft.core.blocktree import genesis
from bft.core.builder import build_replica
from bft.core.chain import MemoryChain
from bft.core.config import ReplicaConfig
from bft.core.journal import MemoryJournal
from bft.core.messages import SafetyState
from bft.core.ports import Ports
from bft.core.types import ValidatorIndex, ValidatorSet, View
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache


class MemoryStore:
    def __init__(self) -> None:
        self.state: SafetyState | None = None

    def load(self) -> SafetyState | None:
        return self.state

    def save(self, state: SafetyState) -> None:
        self.state = state


class OneTx:
    def __init__(self, index: int) -> None:
        self.index = index

    def payload_for(self, view: View, exclude: object) -> tuple[bytes, ...]:
        return (b"tx/%d/%d" % (self.index, view),)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--views", type=int, default=2000)
    args = parser.parse_args()
    n = args.nodes
    keys = [PrivateKey.from_seed(sha256(b"bench-%d" % i)) for i in range(n)]
    validators = ValidatorSet(tuple(k.public_key for k in keys))
    replicas = []
    for i in range(n):
        chain = MemoryChain(*genesis("bench"))
        ports = Ports(MemoryStore(), MemoryJournal(), chain, chain, OneTx(i))
        config = ReplicaConfig("bench", validators, ValidatorIndex(i), max_batch_delay_s=0.0)
        replicas.append(build_replica(config, keys[i], ports, 0.0, SignatureCache()))
    queue: collections.deque[tuple[int, int, bytes]] = collections.deque()
    committed = [0] * n
    messages = 0

    def perform(i: int, actions: list[object]) -> None:
        for a in actions:
            if isinstance(a, Send):
                queue.append((i, a.to, wire.encode(a.msg)))
            elif isinstance(a, Broadcast):
                data = wire.encode(a.msg)
                queue.extend((i, j, data) for j in range(n) if j != i)
            elif isinstance(a, Commit):
                committed[i] += len(a.blocks)

    start = time.process_time()
    now = 0.0
    for i, r in enumerate(replicas):  # view 1 has no proposal: everyone times out once
        perform(i, r.on_timer(r.next_deadline() or 0.0))
    while queue and min(r.view for r in replicas) < args.views:
        src, dst, data = queue.popleft()
        messages += 1
        now += 0.0001
        perform(dst, replicas[dst].on_message(ValidatorIndex(src), wire.decode(data), now))
    cpu_s = time.process_time() - start
    blocks = min(committed)
    print(
        f"n={n}: {blocks} blocks committed by every replica, {messages} messages, "
        f"{cpu_s:.2f} CPU s for all {n} replicas: {blocks / cpu_s:.0f} blocks per CPU second "
        f"({blocks * n / cpu_s:.0f} replica-commits per CPU second)"
    )


if __name__ == "__main__":
    main()
