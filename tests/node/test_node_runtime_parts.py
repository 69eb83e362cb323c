"""Small parts of the node runtime: gossip chunks, metric labels, loading the application."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bft.app.kv import KeyValueLedger
from bft.core.actions import Refusal
from bft.core.errors import DecodeError, TooLarge, Truncated, WrongType
from bft.core.refusals import RefusalReason, Subject
from bft.core.types import ValidatorIndex, View
from bft.node.config import Genesis, GenesisValidator, NodeConfig
from bft.node.errors import ConfigError
from bft.node.metrics import (
    NodeCounters,
    NodeMetrics,
    NodeReason,
    NodeSubject,
    decode_error_label,
    read_counters,
)
from bft.node.runtime import _chunks, load_application
from crypto.keys import PrivateKey


def test_gossip_chunks_keep_order_and_respect_the_byte_limit() -> None:
    txs = [b"a" * 40, b"b" * 40, b"c" * 30, b"d" * 100, b"e" * 10]
    chunks = _chunks(txs, 80)
    assert [tx for chunk in chunks for tx in chunk] == txs
    assert all(sum(map(len, c)) <= 80 for c in chunks if len(c) > 1)
    assert [b"d" * 100] in chunks, "a transaction over the limit goes alone"
    assert _chunks([], 80) == []


def _metrics() -> NodeMetrics:
    return NodeMetrics(
        committed_height=lambda: 5,
        view=lambda: 9,
        mempool_txs=lambda: 2,
        mempool_bytes=lambda: 64,
        peers_connected=lambda: 3,
        recovering=lambda: 0,
    )


def _refusal_lines(metrics: NodeMetrics) -> list[str]:
    text = metrics.render().decode()
    return [line for line in text.splitlines() if line.startswith("bft_refusals_total{")]


def test_refusal_labels_are_the_reason_values_not_the_detail() -> None:
    metrics = _metrics()
    for view in range(50):
        detail = f"wrong leader for view {view}: 3, expected {view % 4}"
        metrics.count_refusal(Refusal(Subject.PROPOSAL, RefusalReason.WRONG_LEADER, detail, View(view)))
    metrics.count_refusal(Refusal(Subject.VOTE, RefusalReason.STALE_VIEW, "stale: view 1 is below 9"))
    lines = _refusal_lines(metrics)
    assert 'bft_refusals_total{reason="wrong-leader",what="proposal"} 50.0' in lines
    assert 'bft_refusals_total{reason="stale-view",what="vote"} 1.0' in lines
    assert len(lines) == 2, "one series per (what, reason), whatever the details say"


def test_every_label_value_comes_from_a_closed_set() -> None:
    metrics = _metrics()
    for what in Subject:
        for reason in RefusalReason:
            metrics.count_refusal(Refusal(what, reason, f"{what} {reason} detail 12345"))
    for error in (TooLarge("9999999 bytes"), WrongType("unknown message type 77"), DecodeError("x")):
        metrics.count_undecodable(error)
    metrics.count_node_refusal(NodeSubject.GOSSIPED_TXS, NodeReason.CHECK_TX)
    lines = _refusal_lines(metrics)
    assert len(lines) == len(Subject) * len(RefusalReason) + 3 + 1
    assert 'bft_refusals_total{reason="TooLarge",what="message"} 1.0' in lines
    assert 'bft_refusals_total{reason="DecodeError",what="message"} 1.0' in lines
    assert 'bft_refusals_total{reason="check-tx",what="gossiped transactions"} 1.0' in lines
    assert not any(char.isdigit() for line in lines for char in line.split("}")[0])


def test_a_decode_error_from_elsewhere_is_labelled_by_its_core_class() -> None:
    class Odd(Truncated):
        pass

    assert decode_error_label(Odd("cut")) == "Truncated"


def test_equivocations_are_counted_per_validator() -> None:
    metrics = _metrics()
    metrics.count_equivocation(ValidatorIndex(2))
    metrics.count_equivocation(ValidatorIndex(2))
    metrics.count_equivocation(ValidatorIndex(0))
    text = metrics.render().decode()
    assert 'bft_equivocations_total{validator="2"} 2.0' in text
    assert 'bft_equivocations_total{validator="0"} 1.0' in text


def test_metrics_read_their_gauges_at_scrape_time() -> None:
    text = _metrics().render().decode()
    for expected in (
        "bft_committed_height 5.0",
        "bft_view 9.0",
        "bft_mempool_txs 2.0",
        "bft_peers_connected 3.0",
    ):
        assert expected in text
    assert "process_cpu_seconds_total" in text and "bft_process_peak_rss_bytes" in text


# Only its flags matter to load_application: a chain without state sync.
GENESIS = Genesis(
    "parts", (GenesisValidator(0, PrivateKey.generate().public_key, "127.0.0.1:1", "127.0.0.1:2"),)
)


def _config(tmp_path: Path, factory: str) -> NodeConfig:
    return NodeConfig(
        home=tmp_path,
        index=ValidatorIndex(0),
        key_file=tmp_path / "key",
        genesis_file=tmp_path / "genesis.json",
        data_dir=tmp_path,
        log_file=tmp_path / "node.log",
        p2p_listen="127.0.0.1:1",
        api_listen="127.0.0.1:2",
        app_factory=factory,
    )


def test_the_default_application_is_the_key_value_ledger(tmp_path: Path) -> None:
    app = load_application(_config(tmp_path, ""), GENESIS)
    assert isinstance(app, KeyValueLedger)
    app.close()
    assert (tmp_path / "app.sqlite").exists()


def test_a_configured_factory_is_called_with_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "my_test_app.py"
    module.write_text(
        "from bft.app.kv import KeyValueLedger\n"
        "made = []\n"
        "def make(data_dir):\n"
        "    made.append(data_dir)\n"
        "    return KeyValueLedger(data_dir / 'mine.sqlite')\n"
        "def not_an_app(data_dir):\n"
        "    return object()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_application(_config(tmp_path, "my_test_app:make"), GENESIS)
    assert isinstance(app, KeyValueLedger) and sys.modules["my_test_app"].made == [tmp_path]
    app.close()
    with pytest.raises(ConfigError, match="not an Application"):
        load_application(_config(tmp_path, "my_test_app:not_an_app"), GENESIS)
    with pytest.raises(ConfigError, match="factory 'my_test_app:missing'"):
        load_application(_config(tmp_path, "my_test_app:missing"), GENESIS)
    with pytest.raises(ConfigError, match="No module named"):
        load_application(replace(_config(tmp_path, ""), app_factory="no_such_module_here:make"), GENESIS)


async def test_a_message_over_the_frame_limit_is_logged_counted_and_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a broken byte budget produces one; it must never raise out of the drive loop (it
    once did, and every node that answered a lagging peer's block request crashed)."""
    from bft.core.actions import Broadcast, Send
    from bft.core.blocktree import genesis
    from bft.core.messages import Block, BlockResponse
    from bft.core.types import ValidatorIndex, View
    from bft.node.runtime import Node
    from bft.node.testnet import write_testnet

    homes = write_testnet(4, tmp_path, 29700)
    node = Node(homes[0])
    root, qc = genesis(node.genesis.chain_id)
    huge = Block(View(1), 1, root.id, ValidatorIndex(0), qc, (b"x" * 1_000_000,) * 5)
    with caplog.at_level("ERROR", logger="bft.node"):
        node._perform([Send(ValidatorIndex(1), BlockResponse((huge,))), Broadcast(BlockResponse((huge,)))])
    assert sum("event=message_not_sent" in r.getMessage() for r in caplog.records) == 2
    assert 'bft_messages_unsendable_total{message="BlockResponse"} 2.0' in node.render_metrics().decode()
    assert node.transport.stats()["queued_outgoing"] == {1: 0, 2: 0, 3: 0}
    node.blocks.close()


async def test_a_broken_replica_invariant_is_logged_and_stops_the_drive_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node checks the replica's own invariants about once a second (the simulator after
    every step): a bug found there stops the node instead of letting it vote on."""
    from bft.core.errors import InvariantViolation
    from bft.core.replica import Replica
    from bft.node.runtime import Node
    from bft.node.testnet import write_testnet

    homes = write_testnet(4, tmp_path, 29720)
    from bft.node.compose import open_ports

    node = Node(homes[0])
    node._start_program(open_ports(node.safety_store, node.blocks, node.executor, node.mempool, node.batches))
    node._perform([])  # a healthy replica passes
    calls: list[int] = []

    def broken(self: Replica) -> None:
        calls.append(1)
        raise InvariantViolation("the lock is above the high QC")

    monkeypatch.setattr(Replica, "check_invariants", broken)
    node._perform([])  # within the interval of the last check: not checked again
    assert calls == []
    node._next_self_check = 0.0
    with caplog.at_level("CRITICAL", logger="bft.node"), pytest.raises(InvariantViolation):
        node._perform([])
    assert calls == [1]
    assert any("event=invariant_violation" in r.getMessage() for r in caplog.records)
    node.blocks.close()


async def test_a_crash_is_logged_as_crashed_and_a_stop_as_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node log that ends with an ordinary `event=stopped` after a crash misleads whoever
    reads it: a crash is `event=crashed`, with what raised and its traceback."""
    import trio

    from bft.node.runtime import Node, crash_of
    from bft.node.testnet import write_testnet

    homes = write_testnet(4, tmp_path, 29760)
    stopped = Node(homes[0])
    with caplog.at_level("INFO", logger="bft.node"):
        async with trio.open_nursery() as nursery:
            await nursery.start(stopped.run)
            nursery.cancel_scope.cancel()
    assert [r.getMessage() for r in caplog.records if "event=crashed" in r.getMessage()] == []
    assert any("event=stopped" in r.getMessage() for r in caplog.records)
    caplog.clear()

    async def fails(self: Node) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Node, "_drive", fails)
    crashing = Node(homes[1])
    with caplog.at_level("INFO", logger="bft.node"), pytest.raises(BaseExceptionGroup) as raised:
        await crashing.run()
    assert crash_of(raised.value) == "RuntimeError: disk on fire"
    crashed = [r for r in caplog.records if "event=crashed" in r.getMessage()]
    assert len(crashed) == 1 and "disk on fire" in crashed[0].getMessage()
    assert crashed[0].exc_info is not None  # the traceback is in the log
    assert not any("event=stopped" in r.getMessage() for r in caplog.records)
    assert crash_of(BaseExceptionGroup("stop", [KeyboardInterrupt()])) is None


async def test_a_flood_of_refusals_is_counted_exactly_but_logged_once_per_window(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bft.core.actions import Action, Refusal
    from bft.core.refusals import RefusalReason, Subject
    from bft.core.types import ValidatorIndex, View
    from bft.node.runtime import Node
    from bft.node.testnet import write_testnet

    homes = write_testnet(4, tmp_path, 29780)
    node = Node(homes[0])
    flood = Refusal(Subject.VOTE, RefusalReason.BAD_SIGNATURE, "bad signature", View(7), ValidatorIndex(3))
    other = Refusal(Subject.VOTE, RefusalReason.BAD_SIGNATURE, "bad signature", View(7), ValidatorIndex(2))
    with caplog.at_level("INFO", logger="bft.node"):
        actions: list[Action] = [flood] * 5_000
        node._perform([*actions, other])
    lines = [r.getMessage() for r in caplog.records if "event=refusal" in r.getMessage()]
    assert len(lines) == 2 and "peer=3" in lines[0] and "peer=2" in lines[1]
    metric = 'bft_refusals_total{reason="bad-signature",what="vote"} 5001.0'
    assert metric in node.render_metrics().decode()
    assert node.refusals == 5_001
    node.blocks.close()


def test_the_counters_a_live_view_shows_are_read_back_from_metrics() -> None:
    """What `bft cluster` and `bft cluster --chaos` show per node: timeouts sent, views entered
    through a TC, refusals summed by reason (over every `what`)."""
    metrics = _metrics()
    for _ in range(3):
        metrics.timeouts_sent.inc()
    metrics.view_changes.labels("tc").inc(2)
    metrics.view_changes.labels("qc").inc(40)
    metrics.refusals.labels("vote", "vote-conflict").inc(5)
    metrics.refusals.labels("proposal", "vote-conflict").inc(1)
    metrics.refusals.labels("proposal", "stale-view").inc(2)
    counters = read_counters(metrics.render().decode())
    assert (counters.timeouts, counters.tcs) == (3, 2)
    assert counters.refusals == {"vote-conflict": 6, "stale-view": 2}
    assert counters.top_refusals(1) == [("vote-conflict", 6)]
    assert read_counters("") == NodeCounters()
