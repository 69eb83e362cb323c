"""What a chaos run recorded: the client history, the block dumps, the status samples and the
faults, as plain data that the checker and the report read and that round-trips through JSON.

Owns: the record types and their JSON form (`RunRecord.to_json` / `RunRecord.from_json`), so that
`bft chaos check RECORD` can re-judge a run without a cluster and a test can feed the checker a
hand-made history. May not: do I/O beyond (de)serialising, or judge anything (the checker does).

Everything here is what a user could have recorded from the documented HTTP API: the client's own
invocations and completions, `GET /blocks/<h>`, `GET /status` and `GET /metrics`; plus what the
runner did to the cluster (faults) and the process memory it read from /proc.
Times are seconds since the run started, on the runner's monotonic clock.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

OpKind = Literal["put", "cas", "del", "get"]
# ok: acknowledged (a write committed, a read answered); fail: certainly not applied (refused
# before ordering); info: unknown (timeout, connection lost): it may or may not have committed.
Outcome = Literal["ok", "fail", "info"]

OP_KINDS: Final = ("put", "cas", "del", "get")
OUTCOMES: Final = ("ok", "fail", "info")


@dataclass(frozen=True, slots=True)
class ClientOp:
    """One client operation, from invocation to completion.

    For a write: `value` is the new value (put, cas), `expect` the value a cas requires (None: the
    key must be absent); when `outcome == "ok"`, `height`/`index` are where it committed and `code`
    the application's result code (0 applied; e.g. a cas mismatch is refused with a non-zero code
    and changes nothing). For a get: `height` is the committed height the node read at and
    `read_value` what it returned (None: absent).
    """

    client: int
    node: int
    op: OpKind
    key: str
    invoke_s: float
    complete_s: float
    outcome: Outcome
    value: str | None = None
    expect: str | None = None
    tx_hash: str | None = None
    height: int | None = None
    index: int | None = None
    code: int | None = None
    read_value: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One committed block as `GET /blocks/<height>` returned it (txs decoded from base64)."""

    height: int
    view: int
    id: str
    parent_id: str
    txs: tuple[bytes, ...]
    app_hash: str


@dataclass(frozen=True, slots=True)
class StatusSample:
    """One look at one node. `height`/`view` are None when its API did not answer."""

    t_s: float
    node: int
    height: int | None
    view: int | None
    rss_bytes: int | None = None
    timeouts: int | None = None  # timeouts this node signed so far (from /metrics)
    tcs: int | None = None  # timeout certificates it formed or saw so far
    refusals: dict[str, int] = field(default_factory=dict)  # refusals by reason so far


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """A perturbation the runner applied: `kind` is a scenario action name (partition, heal,
    kill, restart, pause, resume, wipe, delay, drop, ...), `nodes` the nodes it touched,
    `end_s` when it was lifted (None: an instant, or never lifted)."""

    t_s: float
    kind: str
    detail: str
    nodes: tuple[int, ...] = ()
    end_s: float | None = None


@dataclass(frozen=True, slots=True)
class RecoveryPoint:
    """A moment from which the cluster is back inside the fault model (every partition healed,
    at most f nodes faulty, Byzantine ones included): commits must resume within the bound."""

    t_s: float
    what: str


@dataclass(slots=True)
class RunRecord:
    scenario: str
    seed: int
    command: str  # the line that replays the run
    nodes: int
    honest: tuple[int, ...]
    duration_s: float
    liveness_bound_s: float
    ops: list[ClientOp] = field(default_factory=list)
    blocks: dict[int, list[BlockRecord]] = field(default_factory=dict)
    samples: list[StatusSample] = field(default_factory=list)
    faults: list[FaultEvent] = field(default_factory=list)
    recoveries: list[RecoveryPoint] = field(default_factory=list)

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "command": self.command,
            "nodes": self.nodes,
            "honest": list(self.honest),
            "duration_s": self.duration_s,
            "liveness_bound_s": self.liveness_bound_s,
            "ops": [asdict(op) for op in self.ops],
            "blocks": {
                str(node): [
                    {**asdict(b), "txs": [base64.b64encode(tx).decode("ascii") for tx in b.txs]}
                    for b in blocks
                ]
                for node, blocks in sorted(self.blocks.items())
            },
            "samples": [asdict(s) for s in self.samples],
            "faults": [{**asdict(f), "nodes": list(f.nodes)} for f in self.faults],
            "recoveries": [asdict(r) for r in self.recoveries],
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """Parse what `to_json` wrote; ValueError (naming the field) for anything else."""
        try:
            doc = json.loads(text)
            return cls(
                scenario=str(doc["scenario"]),
                seed=int(doc["seed"]),
                command=str(doc["command"]),
                nodes=int(doc["nodes"]),
                honest=tuple(int(i) for i in doc["honest"]),
                duration_s=float(doc["duration_s"]),
                liveness_bound_s=float(doc["liveness_bound_s"]),
                ops=[ClientOp(**op) for op in doc["ops"]],
                blocks={
                    int(node): [
                        BlockRecord(
                            **{**b, "txs": tuple(base64.b64decode(tx, validate=True) for tx in b["txs"])}
                        )
                        for b in blocks
                    ]
                    for node, blocks in doc["blocks"].items()
                },
                samples=[StatusSample(**s) for s in doc["samples"]],
                faults=[FaultEvent(**{**f, "nodes": tuple(f["nodes"])}) for f in doc["faults"]],
                recoveries=[RecoveryPoint(**r) for r in doc["recoveries"]],
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a chaos run record: {type(exc).__name__}: {exc}") from exc
