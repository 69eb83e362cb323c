"""Small parts of the node runtime: gossip chunks, metric labels, loading the application."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bft.app.kv import KeyValueLedger
from bft.core.types import ValidatorIndex
from bft.node.config import NodeConfig
from bft.node.errors import ConfigError
from bft.node.metrics import MAX_REASON_LABELS, NodeMetrics, reason_label
from bft.node.runtime import _chunks, load_application


def test_gossip_chunks_keep_order_and_respect_the_byte_limit() -> None:
    txs = [b"a" * 40, b"b" * 40, b"c" * 30, b"d" * 100, b"e" * 10]
    chunks = _chunks(txs, 80)
    assert [tx for chunk in chunks for tx in chunk] == txs
    assert all(sum(map(len, c)) <= 80 for c in chunks if len(c) > 1)
    assert [b"d" * 100] in chunks, "a transaction over the limit goes alone"
    assert _chunks([], 80) == []


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("stale: view 12 is below the current view 15", "stale"),
        ("wrong leader for view 40: 3, expected 1", "wrong leader for view N"),
        (
            "app hash at height 7 is 0a1b2c3d4e5f6071, ours is ffeeddccbbaa9988",
            "app hash at height N is N, ours is N",
        ),
        ("", "unspecified"),
    ],
)
def test_refusal_reasons_lose_their_numbers(reason: str, label: str) -> None:
    assert reason_label(reason) == label


def _metrics() -> NodeMetrics:
    return NodeMetrics(
        committed_height=lambda: 5,
        view=lambda: 9,
        mempool_txs=lambda: 2,
        mempool_bytes=lambda: 64,
        peers_connected=lambda: 3,
    )


def test_refusal_labels_stay_bounded_whatever_peers_send() -> None:
    metrics = _metrics()
    for i in range(MAX_REASON_LABELS * 3):
        metrics.count_refusal("vote", f"reason-{chr(65 + i % 26)}{chr(65 + i // 26)}: detail")
    text = metrics.render().decode()
    lines = [line for line in text.splitlines() if line.startswith("bft_refusals_total{")]
    assert len(lines) == MAX_REASON_LABELS + 1  # the first ones, then "other"
    assert any('reason="other"' in line for line in lines)


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
    app = load_application(_config(tmp_path, ""))
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
    app = load_application(_config(tmp_path, "my_test_app:make"))
    assert isinstance(app, KeyValueLedger) and sys.modules["my_test_app"].made == [tmp_path]
    app.close()
    with pytest.raises(ConfigError, match="not an Application"):
        load_application(_config(tmp_path, "my_test_app:not_an_app"))
    with pytest.raises(ConfigError, match="factory 'my_test_app:missing'"):
        load_application(_config(tmp_path, "my_test_app:missing"))
    with pytest.raises(ConfigError, match="No module named"):
        load_application(replace(_config(tmp_path, ""), app_factory="no_such_module_here:make"))


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
