"""Builders of consistent chaos run records for the checker's tests, and the mutations that plant
one fault in them.

Owns: `RecordBuilder` (a client history replayed into blocks with real JSON transactions, sha256
hashes and linked ids, the same dump for every honest node, status samples) and the record
mutations. Its own model of the ledger is a plain dict plus a per-key history, written here on
purpose: the checker's model (`bft.chaos.model`) must not grade its own homework. Transactions are
spelled by the ledger's own encoders, so the checker reads what the real tools write.
May not: import the checker.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bft.app.kv import CODE_CAS_MISMATCH, cas_tx, del_tx, put_tx
from bft.chaos.record import (
    BlockRecord,
    ClientOp,
    OpKind,
    Outcome,
    RecoveryPoint,
    RunRecord,
    StatusSample,
)

GENESIS_ID = "00" * 32
MIB = 1024 * 1024


def tx_hash(tx: bytes) -> str:
    return hashlib.sha256(tx).hexdigest()


def block_id(height: int, parent_id: str, txs: Iterable[bytes]) -> str:
    digest = hashlib.sha256(f"block/{height}/{parent_id}".encode())
    for tx in txs:
        digest.update(hashlib.sha256(tx).digest())
    return digest.hexdigest()


@dataclass(slots=True)
class _Pending:
    """A client write waiting in the open block; it completes when the block is sealed."""

    op: ClientOp
    committed: bool


class RecordBuilder:
    """A run, op by op: writes go into the open block, `seal` commits it (and completes the writes
    in it), `get` reads the committed state. Time moves `op_gap_s` per op and `block_gap_s` per
    block; `idle` moves it without commits. `build` makes the record: every honest node dumps the
    same chain, the Byzantine nodes dump and sample junk (which the checker must ignore), and
    every node is sampled every `sample_every_s`."""

    def __init__(
        self,
        *,
        honest: tuple[int, ...] = (0, 1, 2),
        byzantine: tuple[int, ...] = (3,),
        seed: int = 7,
        liveness_bound_s: float = 5.0,
        op_gap_s: float = 0.01,
        block_gap_s: float = 0.1,
        sample_every_s: float = 0.5,
    ) -> None:
        self.honest = honest
        self.byzantine = byzantine
        self.seed = seed
        self.liveness_bound_s = liveness_bound_s
        self.op_gap_s = op_gap_s
        self.block_gap_s = block_gap_s
        self.sample_every_s = sample_every_s
        self.t_s = 0.0
        self.blocks: list[BlockRecord] = []
        self.seal_times: list[float] = []
        self.ops: list[ClientOp] = []
        self.recoveries: list[RecoveryPoint] = []
        self._open_txs: list[bytes] = []
        self._open_writes: list[tuple[str, str | None]] = []
        self._pending: list[_Pending] = []
        self._state: dict[str, str] = {}  # including the open block
        self._history: dict[str, list[tuple[int, str | None]]] = {}  # committed, per key
        self._nonce = 0

    @property
    def height(self) -> int:
        return len(self.blocks)

    def value_at(self, key: str, height: int) -> str | None:
        """The committed value of `key` after `height`, by this helper's own bookkeeping."""
        for h, value in reversed(self._history.get(key, [])):
            if h <= height:
                return value
        return None

    def _tick(self) -> float:
        self.t_s += self.op_gap_s
        return self.t_s

    def _write(
        self,
        op: OpKind,
        key: str,
        tx: bytes,
        *,
        value: str | None,
        expect: str | None,
        client: int,
        node: int,
        outcome: Outcome,
        committed: bool,
    ) -> None:
        code = 0
        if committed:
            applies = op != "cas" or self._state.get(key) == expect
            code = 0 if applies else CODE_CAS_MISMATCH
            if applies:
                if value is None:
                    self._state.pop(key, None)
                else:
                    self._state[key] = value
                self._open_writes.append((key, value))
            self._open_txs.append(tx)
        record = ClientOp(
            client,
            node,
            op,
            key,
            invoke_s=self._tick(),
            complete_s=self.t_s,
            outcome=outcome,
            value=value,
            expect=expect,
            tx_hash=tx_hash(tx) if outcome == "ok" else None,
            index=len(self._open_txs) - 1 if committed else None,
            code=code if outcome == "ok" else None,
            error=None if outcome == "ok" else "timeout" if outcome == "info" else "rejected",
        )
        self._pending.append(_Pending(record, committed))

    def _next_nonce(self) -> int:
        self._nonce += 1
        return self._nonce

    def put(self, key: str, value: str, *, client: int = 0, node: int = 0, outcome: Outcome = "ok") -> None:
        """A put; outcome "info" still commits it (the client lost the answer), "fail" does not."""
        tx = put_tx(key, value, self._next_nonce())
        self._write(
            "put",
            key,
            tx,
            value=value,
            expect=None,
            client=client,
            node=node,
            outcome=outcome,
            committed=outcome != "fail",
        )

    def delete(self, key: str, *, client: int = 0, node: int = 0, outcome: Outcome = "ok") -> None:
        tx = del_tx(key, self._next_nonce())
        self._write(
            "del",
            key,
            tx,
            value=None,
            expect=None,
            client=client,
            node=node,
            outcome=outcome,
            committed=outcome != "fail",
        )

    def cas(
        self,
        key: str,
        expect: str | None,
        value: str,
        *,
        client: int = 0,
        node: int = 0,
        outcome: Outcome = "ok",
    ) -> None:
        tx = cas_tx(key, expect, value, self._next_nonce())
        self._write(
            "cas",
            key,
            tx,
            value=value,
            expect=expect,
            client=client,
            node=node,
            outcome=outcome,
            committed=outcome != "fail",
        )

    def junk(self, tx: bytes) -> None:
        """A transaction no client sent (a Byzantine leader's): it must change nothing."""
        self._open_txs.append(tx)

    def seal(self) -> None:
        """Commit the open block (possibly empty) and complete the writes in it."""
        self.t_s += self.block_gap_s
        height = self.height + 1
        parent = self.blocks[-1].id if self.blocks else GENESIS_ID
        txs = tuple(self._open_txs)
        app_hash = hashlib.sha256(f"app/{height}/{parent}".encode()).hexdigest()
        self.blocks.append(
            BlockRecord(height, height + 1, block_id(height, parent, txs), parent, txs, app_hash)
        )
        self.seal_times.append(self.t_s)
        for key, value in self._open_writes:
            self._history.setdefault(key, []).append((height, value))
        for pending in self._pending:
            op = pending.op
            committed_ok = pending.committed and op.outcome == "ok"
            self.ops.append(
                dataclasses.replace(
                    op,
                    complete_s=self.t_s,
                    height=height if committed_ok else None,
                    index=op.index if committed_ok else None,
                )
            )
        self._open_txs, self._open_writes, self._pending = [], [], []

    def get(
        self,
        key: str,
        *,
        client: int = 1,
        node: int = 0,
        at_height: int | None = None,
        outcome: Outcome = "ok",
    ) -> None:
        """A read of the committed state at `at_height` (default: the committed height)."""
        height = self.height if at_height is None else at_height
        t_s = self._tick()
        self.ops.append(
            ClientOp(
                client,
                node,
                "get",
                key,
                invoke_s=t_s,
                complete_s=t_s + self.op_gap_s / 2,
                outcome=outcome,
                height=height if outcome == "ok" else None,
                read_value=self.value_at(key, height) if outcome == "ok" else None,
            )
        )

    def idle(self, seconds: float) -> None:
        """Time passes with no commit (a stall)."""
        self.t_s += seconds

    def recover(self, what: str) -> None:
        self.recoveries.append(RecoveryPoint(self.t_s, what))

    def build(
        self,
        *,
        duration_s: float | None = None,
        rss: Callable[[int, float], int | None] | None = None,
    ) -> RunRecord:
        """The record. `rss(node, t_s)` gives each sample's RSS (default: a flat 100 MiB)."""
        if self._open_txs or self._pending:
            self.seal()
        duration = self.t_s + 1.0 if duration_s is None else duration_s
        samples: list[StatusSample] = []
        sealed = 0
        for step in range(int(duration / self.sample_every_s) + 1):
            t_s = step * self.sample_every_s
            while sealed < len(self.seal_times) and self.seal_times[sealed] <= t_s:
                sealed += 1
            for node in self.honest:
                rss_bytes = 100 * MIB if rss is None else rss(node, t_s)
                samples.append(StatusSample(t_s, node, sealed, sealed + 1, rss_bytes=rss_bytes))
            for node in self.byzantine:
                # A liar: a height far above the cluster's, and a ballooning RSS.
                samples.append(StatusSample(t_s, node, 10**6, 10**6, rss_bytes=int((1 + t_s) * 500 * MIB)))
        blocks: dict[int, list[BlockRecord]] = {node: list(self.blocks) for node in self.honest}
        for node in self.byzantine:
            blocks[node] = [
                dataclasses.replace(
                    b, id=f"{b.height:064x}", parent_id="ff" * 32, txs=(b"junk",), app_hash="ee"
                )
                for b in self.blocks[::2]
            ]
        return RunRecord(
            scenario="configs/scenarios/test.toml",
            seed=self.seed,
            command=f"bft chaos run configs/scenarios/test.toml --seed {self.seed}",
            nodes=len(self.honest) + len(self.byzantine),
            honest=self.honest,
            duration_s=duration,
            liveness_bound_s=self.liveness_bound_s,
            ops=list(self.ops),
            blocks=blocks,
            samples=samples,
            recoveries=list(self.recoveries),
        )


def with_dump(record: RunRecord, node: int, dump: list[BlockRecord]) -> RunRecord:
    return dataclasses.replace(record, blocks={**record.blocks, node: dump})


def drop_tx(record: RunRecord, node: int, hash_hex: str) -> RunRecord:
    """`node`'s dump with the tx of hash `hash_hex` removed from its block (ids unchanged)."""
    dump = [
        dataclasses.replace(b, txs=tuple(tx for tx in b.txs if tx_hash(tx) != hash_hex))
        for b in record.blocks[node]
    ]
    return with_dump(record, node, dump)


def change_block(record: RunRecord, node: int, height: int, **changes: object) -> RunRecord:
    dump = [dataclasses.replace(b, **changes) if b.height == height else b for b in record.blocks[node]]  # type: ignore[arg-type]
    return with_dump(record, node, dump)


def change_op(record: RunRecord, at: int, **changes: object) -> RunRecord:
    ops = list(record.ops)
    ops[at] = dataclasses.replace(ops[at], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(record, ops=ops)


def acked_writes(record: RunRecord) -> list[int]:
    """Indices of the acknowledged writes in `record.ops`."""
    return [i for i, op in enumerate(record.ops) if op.outcome == "ok" and op.op != "get"]
