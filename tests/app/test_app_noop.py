"""Tests of the no-op application (`bft.app.noop`) against the `bft.app.interface` contract: every
transaction admitted and OK, the documented hash chain, the call order enforced, its state file
surviving reopen and torn writes, and the node's restart contract with the real `Executor` and
`BlockStore` (a block the application lost is replayed to the same hash)."""

from __future__ import annotations

import hashlib
import importlib
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from core_helpers import GENESIS_BLOCK, make_block, make_qc, qc_for

from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    Application,
    BlockResult,
    OutOfOrder,
    StateCorrupt,
)
from bft.app.noop import (
    NOOP_FACTORY,
    SLOT_SIZE_BYTES,
    STATE_FILE_NAME,
    STATE_SIZE_BYTES,
    NoopApplication,
    decode_slot,
    encode_slot,
    next_app_hash,
    open_noop_app,
)
from bft.core.actions import Commit
from bft.core.messages import Block
from bft.node.executor import Executor
from bft.node.storage import BlockStore

# Anything at all: the no-op application never looks inside a transaction.
TXS: list[list[bytes]] = [[b"", b"\xff\xfe not utf-8", b'{"op": "put"}'], [], [b"x" * 70_000] * 3]


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / STATE_FILE_NAME


@pytest.fixture
def app(state_file: Path) -> Iterator[NoopApplication]:
    with NoopApplication(state_file) as opened:
        yield opened


def run_block(app: Application, txs: Sequence[bytes]) -> BlockResult:
    """Execute and commit the next block; check that commit returns the executed hash."""
    result = app.execute_block(app.info().last_height + 1, txs)
    assert app.commit() == result.app_hash
    return result


# --- the contract ---------------------------------------------------------------------------


def test_satisfies_application_protocol_and_accepts_everything(app: NoopApplication) -> None:
    checked: Application = app
    assert isinstance(checked, Application)
    assert (app.info().last_height, app.info().app_hash) == (0, GENESIS_APP_HASH)
    assert all(app.check_tx(tx).ok for block in TXS for tx in block)
    for height, txs in enumerate(TXS, start=1):
        result = run_block(app, txs)
        assert result.height == height
        assert [(r.code, r.log, r.data) for r in result.results] == [(CODE_OK, "", b"")] * len(txs)
        assert app.info().last_height == height and app.info().app_hash == result.app_hash


def test_app_hash_follows_the_documented_formula(app: NoopApplication) -> None:
    previous = GENESIS_APP_HASH
    for height, txs in enumerate(TXS, start=1):
        expected = hashlib.sha256(
            b"bft-noop/v1" + previous + struct.pack(">Q", height) + struct.pack(">I", len(txs))
        ).digest()
        assert next_app_hash(previous, height, len(txs)) == expected
        assert run_block(app, txs).app_hash == expected
        previous = expected


def test_two_nodes_agree_and_every_height_moves_the_hash(tmp_path: Path) -> None:
    with NoopApplication(tmp_path / "a") as a, NoopApplication(tmp_path / "b") as b:
        hashes = [run_block(a, txs).app_hash for txs in TXS]
        assert [run_block(b, txs).app_hash for txs in TXS] == hashes
    assert len({GENESIS_APP_HASH, *hashes}) == len(TXS) + 1
    assert next_app_hash(GENESIS_APP_HASH, 1, 2) != next_app_hash(GENESIS_APP_HASH, 1, 3)


def test_calls_out_of_order_raise(app: NoopApplication) -> None:
    with pytest.raises(OutOfOrder, match="expected height 1"):
        app.execute_block(2, [])
    with pytest.raises(OutOfOrder, match="no block executed"):
        app.commit()
    app.execute_block(1, [b"a"])
    with pytest.raises(OutOfOrder, match="block 1 is executed but not committed"):
        app.execute_block(1, [b"a"])
    app.commit()
    with pytest.raises(OutOfOrder, match="expected height 2"):
        app.execute_block(1, [b"a"])


def test_query_knows_no_path_and_answers_at_the_committed_height(app: NoopApplication) -> None:
    run_block(app, [b"k"])
    app.execute_block(2, [])  # staged, not committed: still height 1
    answer = app.query("/kv", b"k")
    assert (answer.code, answer.value, answer.height) == (QUERY_UNKNOWN_PATH, None, 1)


def test_use_after_close_raises(state_file: Path) -> None:
    app = NoopApplication(state_file)
    app.close()
    app.close()  # idempotent
    for call in (app.info, app.commit, lambda: app.check_tx(b""), lambda: app.execute_block(1, [])):
        with pytest.raises(AppClosed):
            call()


def test_the_factory_is_what_app_factory_names(tmp_path: Path) -> None:
    module, _, name = NOOP_FACTORY.partition(":")
    assert getattr(importlib.import_module(module), name) is open_noop_app
    with open_noop_app(tmp_path) as app:
        run_block(app, [b"a"])
    assert (tmp_path / STATE_FILE_NAME).stat().st_size == STATE_SIZE_BYTES


# --- durability -------------------------------------------------------------------------------


def test_commit_survives_reopen_and_a_staged_block_does_not(state_file: Path) -> None:
    with NoopApplication(state_file) as app:
        for txs in TXS[:2]:
            last = run_block(app, txs)
        staged = app.execute_block(3, TXS[2])
    with NoopApplication(state_file) as app:
        assert (app.info().last_height, app.info().app_hash) == (2, last.app_hash)
        assert run_block(app, TXS[2]) == staged


def test_hard_crash_after_execute_keeps_the_last_commit(state_file: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from bft.app.noop import NoopApplication\n"
        "app = NoopApplication(Path(sys.argv[1]))\n"
        "app.execute_block(1, [b'a']); app.commit()\n"
        "app.execute_block(2, [b'b'])\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(state_file)], check=True, timeout=60)
    with NoopApplication(state_file) as app:
        assert app.info().last_height == 1
        assert app.info().app_hash == next_app_hash(GENESIS_APP_HASH, 1, 1)


def _tear_slot(path: Path, slot: int) -> None:
    """A write cut short: the slot's last bytes are garbage, so its checksum fails."""
    raw = bytearray(path.read_bytes())
    end = (slot + 1) * SLOT_SIZE_BYTES
    raw[end - 6 : end] = b"\xa5" * 6
    path.write_bytes(bytes(raw))


def test_a_torn_write_leaves_the_previous_height(state_file: Path) -> None:
    with NoopApplication(state_file) as app:
        hashes = [run_block(app, txs).app_hash for txs in TXS]
    _tear_slot(state_file, len(TXS) % 2)  # the slot of the last height
    with NoopApplication(state_file) as app:
        assert (app.info().last_height, app.info().app_hash) == (len(TXS) - 1, hashes[-2])
        # Replay re-executes the lost height to the same hash.
        assert run_block(app, TXS[-1]).app_hash == hashes[-1]
    with NoopApplication(state_file) as app:
        assert app.info().last_height == len(TXS)


def test_a_torn_first_write_is_a_fresh_application(state_file: Path) -> None:
    with NoopApplication(state_file) as app:
        run_block(app, [b"a"])
    _tear_slot(state_file, 1)
    with NoopApplication(state_file) as app:
        assert (app.info().last_height, app.info().app_hash) == (0, GENESIS_APP_HASH)


def test_a_file_that_is_not_its_state_is_refused(state_file: Path) -> None:
    with NoopApplication(state_file) as app:
        run_block(app, [b"a"])
        run_block(app, [b"b"])
    _tear_slot(state_file, 0)
    _tear_slot(state_file, 1)
    with pytest.raises(StateCorrupt, match="no valid slot"):
        NoopApplication(state_file)
    state_file.write_bytes(b"x" * (STATE_SIZE_BYTES + 1))
    with pytest.raises(StateCorrupt, match=f"a no-op application state is {STATE_SIZE_BYTES}"):
        NoopApplication(state_file)


def test_slots_round_trip_and_refuse_what_they_did_not_write() -> None:
    app_hash = bytes(range(32))
    raw = encode_slot(7, app_hash)
    assert len(raw) == SLOT_SIZE_BYTES and decode_slot(raw) == (7, app_hash)
    assert decode_slot(bytes(SLOT_SIZE_BYTES)) is None
    assert decode_slot(raw[:-1]) is None
    assert decode_slot(b"X" + raw[1:]) is None


# --- the node's restart contract, with the real executor and block store ----------------------


def _commit(blocks: list[Block]) -> Commit:
    return Commit(
        tuple(blocks), tuple(qc_for(b) for b in blocks), make_qc(blocks[-1].id, blocks[-1].view + 2)
    )


def test_the_executor_replays_what_the_application_lost(tmp_path: Path) -> None:
    blocks: list[Block] = []
    parent = GENESIS_BLOCK
    for txs in TXS:
        parent = make_block(parent, parent.view + 1, txs=tuple(txs))
        blocks.append(parent)
    home = tmp_path / "node"
    home.mkdir()

    def open_node() -> tuple[NoopApplication, BlockStore, Executor]:
        app = open_noop_app(home)
        store = BlockStore(home / "blocks.sqlite", genesis_id=GENESIS_BLOCK.id)
        return app, store, Executor(app, store)

    app, store, executor = open_node()
    assert executor.start() == 0
    executor.on_commit(_commit(blocks[:1]))
    # The rest reaches the block store only: the process dies before the application applies it.
    rest = _commit(blocks[1:])
    store.append(rest.blocks, rest.qcs, rest.commit_qc)
    app.close()
    store.close()

    app, store, executor = open_node()
    assert executor.start() == len(blocks) - 1
    expected = GENESIS_APP_HASH
    for height, txs in enumerate(TXS, start=1):
        # A transaction repeated in a block is executed once (the executor skips the repeats).
        expected = next_app_hash(expected, height, len(set(txs)))
        assert store.app_hash_at(height) == expected
    assert executor.executed() == (len(TXS), expected) and app.info().app_hash == expected
    assert executor.app_hash_mismatches == 0
    app.close()
    store.close()

    app, store, executor = open_node()
    assert executor.start() == 0
    app.close()
    store.close()
