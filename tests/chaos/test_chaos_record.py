"""The run record survives JSON unchanged, and anything else is refused with a ValueError."""

from __future__ import annotations

import pytest

from bft.chaos.record import BlockRecord, ClientOp, FaultEvent, RecoveryPoint, RunRecord, StatusSample


def _record() -> RunRecord:
    return RunRecord(
        scenario="configs/scenarios/x.toml",
        seed=7,
        command="bft chaos run configs/scenarios/x.toml --seed 7",
        nodes=4,
        honest=(0, 1, 2),
        duration_s=30.0,
        liveness_bound_s=20.0,
        ops=[
            ClientOp(
                0,
                1,
                "cas",
                "k",
                0.5,
                0.7,
                "ok",
                value="b",
                expect=None,
                tx_hash="ab",
                height=3,
                index=0,
                code=0,
            ),
            ClientOp(1, 2, "get", "k", 0.8, 0.81, "ok", height=3, read_value="b"),
        ],
        blocks={0: [BlockRecord(1, 1, "aa", "00", (b"\x00\xff", b"{}"), "cc")]},
        samples=[StatusSample(1.0, 0, 1, 2, rss_bytes=10, refusals={"wrong_leader": 2})],
        faults=[FaultEvent(5.0, "partition", "{0,1} | {2,3}", (0, 1, 2, 3), 10.0)],
        recoveries=[RecoveryPoint(10.0, "heal")],
    )


def test_a_record_round_trips_through_json() -> None:
    record = _record()
    again = RunRecord.from_json(record.to_json())
    assert again == record
    assert again.blocks[0][0].txs == (b"\x00\xff", b"{}")


@pytest.mark.parametrize("text", ["[]", "{}", '{"scenario": 1}', "not json"])
def test_anything_else_is_refused_with_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match="not a chaos run record"):
        RunRecord.from_json(text)
