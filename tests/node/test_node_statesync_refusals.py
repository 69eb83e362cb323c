"""State sync's refusals without a network: malformed snapshot lists are skipped, an offer no
committed block backs is never restored, and `bft node --state-sync` refuses what it cannot do
with a clear message (the honest path and a lying server: tests/cluster/test_cluster_state_sync.py;
restored storage going on as its peer's: test_node_state_install.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bft import cli
from bft.app.kv import KeyValueLedger
from bft.node.config import load_genesis, load_node_config
from bft.node.errors import StorageError
from bft.node.process import sync_before_start
from bft.node.statesync import StateSyncError, SyncChain, sync_from
from bft.node.storage import BlockStore
from bft.node.testnet import write_testnet


class FakeSource:
    def __init__(self, listing: object, blocks: dict[int, object] | None = None) -> None:
        self.listing = listing
        self.blocks = blocks or {}
        self.asked: list[str] = []

    @property
    def name(self) -> str:
        return "fake"

    def snapshot_list(self) -> object | None:
        self.asked.append("list")
        return self.listing

    def block(self, height: int) -> object | None:
        self.asked.append(f"block {height}")
        return self.blocks.get(height)

    def chunk(self, height: int, format: int, index: int) -> bytes | None:
        self.asked.append(f"chunk {index}")
        return b"junk"

    def records(self, height: int, after: bytes) -> bytes | None:
        self.asked.append("records")
        return b""

    def earliest_height(self) -> int | None:
        self.asked.append("earliest")
        return self.earliest

    earliest: int | None = None


OFFER = {
    "height": 40,
    "format": 1,
    "chunks": 1,
    "hash": "00" * 32,
    "metadata": "",
    "app_hash": "11" * 32,
    "tx_set": "22" * 32,
}


@pytest.fixture
def chain(tmp_path: Path) -> tuple[SyncChain, KeyValueLedger, Path]:
    write_testnet(4, tmp_path / "net", 29700, state_sync=True)
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    app = KeyValueLedger(tmp_path / "app.sqlite", hash_version=2)
    return SyncChain.of(genesis), app, tmp_path


def _no_store() -> BlockStore:
    raise AssertionError("no store is made before an offer is trusted")


@pytest.mark.parametrize(
    "listing",
    [
        None,
        "not an object",
        {"snapshots": "not a list"},
        {"snapshots": [{"height": -1}]},
        {"snapshots": [{**OFFER, "height": "40"}]},
        {"snapshots": [{**OFFER, "hash": "zz"}]},
        {"snapshots": [{**OFFER, "metadata": "not base64!"}]},
        {"snapshots": [{k: v for k, v in OFFER.items() if k != "tx_set"}]},
    ],
    ids=["silent", "string", "no-list", "negative", "string-height", "bad-hex", "bad-base64", "missing"],
)
def test_a_malformed_snapshot_list_is_skipped(
    chain: tuple[SyncChain, KeyValueLedger, Path], listing: object
) -> None:
    sync_chain, app, _ = chain
    source = FakeSource(listing)
    assert sync_from(sync_chain, app, [source], _no_store) is None
    assert source.asked == ["list"], "nothing else is asked of a source whose list is malformed"
    assert app.info().last_height == 0


def test_an_offer_no_committed_block_backs_is_never_restored(
    chain: tuple[SyncChain, KeyValueLedger, Path],
) -> None:
    sync_chain, app, _ = chain
    forged = {"height": 40, "id": "ab" * 32}  # not a block that verifies
    source = FakeSource({"snapshots": [OFFER]}, {40: forged})
    with pytest.raises(StateSyncError, match="heights \\[40\\]"):
        sync_from(sync_chain, app, [source], _no_store)
    assert "records" not in source.asked and not any(a.startswith("chunk") for a in source.asked)
    assert app.info().last_height == 0
    # A source that still holds every block above what the node holds: block sync will do.
    source.earliest = 1
    assert sync_from(sync_chain, app, [source], _no_store) is None
    assert app.info().last_height == 0
    # Nothing above what the node holds: not even asked to verify.
    assert sync_from(sync_chain, app, [FakeSource({"snapshots": [OFFER]})], _no_store, held=40) is None


def test_state_sync_on_a_chain_without_it_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_testnet(4, tmp_path / "net", 29710)
    config = load_node_config(tmp_path / "net" / "node3")
    with pytest.raises(StateSyncError, match='does not say "state_sync"'):
        sync_before_start(config)
    assert cli.main(["node", "--home", str(config.home), "--sync-from", "http://127.0.0.1:1"]) == 2
    assert "it needs --state-sync" in capsys.readouterr().err


def test_a_state_sync_with_nobody_to_ask_fails_after_its_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bft.node.process as process

    write_testnet(4, tmp_path / "net", 29720, state_sync=True)
    config = load_node_config(tmp_path / "net" / "node3")
    monkeypatch.setattr(process, "STATE_SYNC_RETRY_S", 0.0)
    # Ports nobody listens on: no snapshot is offered, so there is nothing to restore.
    assert sync_before_start(config, ["http://127.0.0.1:9"]) is None
    assert "no snapshot above height 0" in capsys.readouterr().out


def test_records_naming_one_transaction_twice_are_refused(tmp_path: Path) -> None:
    with (
        BlockStore(tmp_path / "blocks.sqlite", tx_set=True) as store,
        BlockStore(tmp_path / "fresh.sqlite", tx_set=True) as fresh,
    ):
        with pytest.raises(StorageError, match="index 2 transaction records"):
            store.add_tx_records([(b"\x00" * 32, 1, 0), (b"\x00" * 32, 1, 1)])
        assert store.tx_set_digest() == fresh.tx_set_digest(), "a refused page adds nothing to the set"


def test_a_server_answer_over_its_bound_is_cut_off_and_read_as_no_answer() -> None:
    # A chunk one byte over MAX_SNAPSHOT_CHUNK_BYTES, a page of records one byte over its bound:
    # read in pieces and dropped at the bound; the same sizes at the bound come through.
    from bft.app.interface import MAX_SNAPSHOT_CHUNK_BYTES
    from bft.node.statesync_http import MAX_PAGE_BYTES, HttpSource

    sizes = {"chunk": MAX_SNAPSHOT_CHUNK_BYTES, "txs": MAX_PAGE_BYTES}
    extra = {"value": 1}

    def serve(request: httpx.Request) -> httpx.Response:
        kind = "txs" if request.url.path.endswith("/txs") else "chunk"
        return httpx.Response(200, content=b"\x00" * (sizes[kind] + extra["value"]))

    with httpx.Client(transport=httpx.MockTransport(serve)) as http:
        source = HttpSource("http://liar:1", http)
        assert source.chunk(10, 1, 0) is None
        assert source.records(10, b"") is None
        extra["value"] = 0
        chunk = source.chunk(10, 1, 0)
        assert chunk is not None and len(chunk) == MAX_SNAPSHOT_CHUNK_BYTES
        page = source.records(10, b"")
        assert page is not None and len(page) == MAX_PAGE_BYTES
