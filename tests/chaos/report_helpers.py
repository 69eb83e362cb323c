"""A realistic chaos run record for the report's tests, and a minimal one.

Owns: `realistic_run()`, two minutes of a 4-node cluster (node 3 Byzantine) sampled every 0.5 s
under about 25 client ops per second, through a 2|2 partition and its heal, a kill and restart of
node 2, a pause and resume of node 1 and a delay on every link; its blocks hold the real ledger
transactions, so that the checker passes it (a test then plants a violation), and its write
latencies rise during the partition as a real client's would. `minimal_run()`: one sample.
May not: import the report (the record is the report's input, not its output).
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import dataclass, field

from checker_helpers import GENESIS_ID, MIB, block_id, tx_hash

from bft.app.kv import CODE_CAS_MISMATCH, cas_tx, del_tx, put_tx
from bft.chaos.record import (
    BlockRecord,
    ClientOp,
    FaultEvent,
    OpKind,
    Outcome,
    RecoveryPoint,
    RunRecord,
    StatusSample,
)

DURATION_S = 120.0
SAMPLE_EVERY_S = 0.5
CLIENT_TIMEOUT_S = 10.0
PARTITION = (30.0, 45.0)
KILL = (60.0, 68.0)  # node 2
PAUSE = (85.0, 92.0)  # node 1
DELAY = (100.0, 108.0)  # every link
SEED = 1234
COMMAND = f"bft chaos run configs/scenarios/ci-short.toml --seed {SEED}"

FAULTS = (
    FaultEvent(PARTITION[0], "partition", "{0,1} | {2,3}", (0, 1, 2, 3), PARTITION[1]),
    FaultEvent(PARTITION[1], "heal", "every link healed"),
    FaultEvent(KILL[0], "kill", "kill -9 node 2", (2,), KILL[1]),
    FaultEvent(KILL[1], "restart", "node 2 restarted with its data", (2,)),
    FaultEvent(PAUSE[0], "pause", "SIGSTOP node 1", (1,), PAUSE[1]),
    FaultEvent(PAUSE[1], "resume", "SIGCONT node 1", (1,)),
    FaultEvent(DELAY[0], "delay", "delay 150 ms +- 50 ms (uniform) on all links", (), DELAY[1]),
    FaultEvent(DELAY[1], "clear", "every link cleared"),
)
RECOVERIES = (
    RecoveryPoint(PARTITION[1], "heal"),
    RecoveryPoint(KILL[1], "restart 2"),
    RecoveryPoint(PAUSE[1], "resume 1"),
    RecoveryPoint(DELAY[1], "clear all"),
)


def _within(t: float, span: tuple[float, float]) -> bool:
    return span[0] <= t < span[1]


def commit_times() -> list[float]:
    """When each height commits: every 0.2 s, none during the partition (no side has a quorum;
    the first block comes 0.8 s after the heal, a timeout later), every 0.3 s with a node down,
    every 0.5 s under the delay."""
    times: list[float] = []
    t = 0.3
    while t < DURATION_S:
        if _within(t, PARTITION):
            t = PARTITION[1] + 0.8
            continue
        times.append(round(t, 3))
        if _within(t, DELAY):
            t += 0.5
        elif _within(t, KILL) or _within(t, PAUSE):
            t += 0.3
        else:
            t += 0.2
    return times


@dataclass(slots=True)
class _Ledger:
    """The committed state per key, and its history for reads at a height."""

    state: dict[str, str] = field(default_factory=dict)
    history: dict[str, tuple[list[int], list[str | None]]] = field(default_factory=dict)

    def set(self, key: str, value: str | None, height: int) -> None:
        if value is None:
            self.state.pop(key, None)
        else:
            self.state[key] = value
        heights, values = self.history.setdefault(key, ([], []))
        heights.append(height)
        values.append(value)

    def value_at(self, key: str, height: int) -> str | None:
        heights, values = self.history.get(key, ([], []))
        i = bisect.bisect_right(heights, height)
        return values[i - 1] if i else None


def _node_height(node: int, t: float, committed: list[float]) -> int | None:
    """What node `node`'s /status says at `t` (None: no answer)."""
    global_height = bisect.bisect_right(committed, t)
    if node == 2 and t >= KILL[0]:
        if t < KILL[1] + 0.5:  # down, then starting up
            return None
        kept = bisect.bisect_right(committed, KILL[0])
        return min(global_height, kept + math.floor((t - KILL[1] - 0.5) * 40))
    if node == 1 and t >= PAUSE[0]:
        if t < PAUSE[1]:
            return None
        kept = bisect.bisect_right(committed, PAUSE[0])
        return min(global_height, kept + math.floor((t - PAUSE[1]) * 60))
    if node == 3:  # the Byzantine node answers, a little behind
        return max(0, global_height - 2)
    return global_height


def _samples(committed: list[float]) -> list[StatusSample]:
    samples = []
    timeouts = [0, 0, 0, 0]
    for step in range(int(DURATION_S / SAMPLE_EVERY_S) + 1):
        t = step * SAMPLE_EVERY_S
        for node in range(4):
            stalled = _within(t, PARTITION) or (_within(t, DELAY) and step % 4 == 0)
            timeouts[node] += 1 if stalled and step % 2 == 0 else 0
            height = _node_height(node, t, committed)
            samples.append(
                StatusSample(
                    t,
                    node,
                    height,
                    None if height is None else height + 1 + timeouts[node],
                    rss_bytes=(90 + node * 5) * MIB + int(t) * 4096,
                    timeouts=timeouts[node],
                    tcs=max(0, timeouts[node] - 1),
                    refusals={"equivocation": step // 20, "stale_view": timeouts[node] // 3}
                    if node != 3
                    else {},
                )
            )
    return samples


def _tx(kind: OpKind, key: str, value: str | None, expect: str | None, nonce: int) -> bytes:
    if kind == "put":
        return put_tx(key, value or "", nonce)
    if kind == "del":
        return del_tx(key, nonce)
    return cas_tx(key, expect, value or "", nonce)


def realistic_run(seed: int = SEED) -> RunRecord:
    """The two-minute run of the module's header; the checker finds nothing wrong with it."""
    rng = random.Random(seed)
    committed = commit_times()
    invokes = sorted(rng.uniform(0.2, DURATION_S - 2.0) for _ in range(int(25 * DURATION_S)))
    keys = [f"k{i}" for i in range(16)]
    ledger = _Ledger()
    # Writes waiting for their block, by height: (invoke order, client, node, op, key, value, expect, tx)
    by_height: dict[int, list[tuple[int, int, int, OpKind, str, str | None, str | None, bytes, float]]] = {}
    ops: list[ClientOp] = []
    gets: list[tuple[float, int, int, str]] = []
    for n, t in enumerate(invokes):
        client = n % 8
        node = client % 3  # clients talk to the honest nodes
        down = (node == 2 and _within(t, (KILL[0], KILL[1] + 0.5))) or (node == 1 and _within(t, PAUSE))
        kind: OpKind = rng.choices(("put", "cas", "del", "get"), (50, 15, 5, 30))[0]
        key = rng.choice(keys)
        if kind == "get":
            if down:
                ops.append(
                    ClientOp(client, node, "get", key, t, t + 0.002, "fail", error="connection refused")
                )
            else:
                gets.append((t, client, node, key))
            continue
        value = None if kind == "del" else f"v{n}"
        expect = rng.choice([None, *(f"v{m}" for m in range(max(0, n - 40), n))]) if kind == "cas" else None
        tx = _tx(kind, key, value, expect, n)
        if down:
            # Node 2 refuses connections; paused node 1 never answers within the client's timeout.
            outcome: Outcome = "fail" if node == 2 else "info"
            done = t + (0.002 if node == 2 else CLIENT_TIMEOUT_S)
            ops.append(
                ClientOp(client, node, kind, key, t, done, outcome, value=value, expect=expect, error="down")
            )
            continue
        height = bisect.bisect_left(committed, t + 0.05) + 1  # admitted 50 ms after the invocation
        if height > len(committed):
            ops.append(ClientOp(client, node, kind, key, t, t + CLIENT_TIMEOUT_S, "info", value, expect))
            continue
        by_height.setdefault(height, []).append((n, client, node, kind, key, value, expect, tx, t))
    blocks: list[BlockRecord] = []
    parent = GENESIS_ID
    for height, t_commit in enumerate(committed, start=1):
        txs: list[bytes] = []
        for i, (_, client, node, kind, key, value, expect, tx, t) in enumerate(
            sorted(by_height.get(height, []))
        ):
            txs.append(tx)
            code = 0
            if kind == "cas" and ledger.state.get(key) != expect:
                code = CODE_CAS_MISMATCH
            else:
                ledger.set(key, value, height)
            done = t_commit + 0.01 + rng.expovariate(1 / 0.02)
            if done - t > CLIENT_TIMEOUT_S:  # committed, but the client gave up first
                ops.append(ClientOp(client, node, kind, key, t, t + CLIENT_TIMEOUT_S, "info", value, expect))
                continue
            ops.append(
                ClientOp(
                    client,
                    node,
                    kind,
                    key,
                    t,
                    done,
                    "ok",
                    value=value,
                    expect=expect,
                    tx_hash=tx_hash(tx),
                    height=height,
                    index=i,
                    code=code,
                )
            )
        app_hash = hashlib.sha256(f"app/{height}/{parent}".encode()).hexdigest()
        blocks.append(
            BlockRecord(height, height + 1, block_id(height, parent, txs), parent, tuple(txs), app_hash)
        )
        parent = blocks[-1].id
    for t, client, node, key in gets:
        height = bisect.bisect_right(committed, t)
        ops.append(
            ClientOp(
                client,
                node,
                "get",
                key,
                t,
                t + 0.002 + rng.expovariate(1 / 0.003),
                "ok",
                height=height,
                read_value=ledger.value_at(key, height),
            )
        )
    ops.sort(key=lambda op: op.invoke_s)
    return RunRecord(
        scenario="configs/scenarios/ci-short.toml",
        seed=seed,
        command=COMMAND,
        nodes=4,
        honest=(0, 1, 2),
        duration_s=DURATION_S,
        liveness_bound_s=10.0,
        ops=ops,
        blocks={node: list(blocks) for node in range(4)},
        samples=_samples(committed),
        faults=list(FAULTS),
        recoveries=list(RECOVERIES),
    )


def minimal_run() -> RunRecord:
    """No ops, no faults, no blocks, one sample."""
    return RunRecord(
        scenario="configs/scenarios/empty.toml",
        seed=0,
        command="bft chaos run configs/scenarios/empty.toml --seed 0",
        nodes=4,
        honest=(0, 1, 2, 3),
        duration_s=0.5,
        liveness_bound_s=5.0,
        samples=[StatusSample(0.0, 0, 0, 1)],
    )
