"""The quorum store chosen when a chain is set up: the genesis' "quorum_store", the [consensus]
batch settings and the larger block limits it defaults to, `bft testnet|cluster|bench
--quorum-store`, and a node of such a chain, which neither gossips client transactions nor
admits gossip, and refuses a transaction no batch could hold."""

from __future__ import annotations

import argparse
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
from core_helpers import Recording
from rich.console import Console

from bft.bench.errors import BenchError
from bft.bench.local import prepare_home
from bft.bench.options import add_arguments, options_from_args
from bft.bench.report import BenchReport, report_table
from bft.bench.stats import Tally
from bft.cli import main
from bft.core.config import (
    DEFAULT_BATCH_LIFETIME_HEIGHTS,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_TXS,
    DEFAULT_MAX_BLOCK_BATCHES,
    DEFAULT_MAX_BLOCK_BYTES,
    DEFAULT_MAX_BLOCK_TXS,
    DEFAULT_MAX_STORED_BATCHES,
    ReplicaConfig,
)
from bft.core.wire import MAX_MESSAGE_SIZE_BYTES, MAX_TXS_PER_BLOCK, check_block_limits
from bft.node.cluster import default_home, run_cluster
from bft.node.cluster_state import EXIT_REFUSED
from bft.node.compose import open_ports
from bft.node.config import (
    QUORUM_STORE_MAX_BLOCK_BYTES,
    QUORUM_STORE_MAX_BLOCK_TXS,
    ConsensusSettings,
    Genesis,
    genesis_to_json,
    load_genesis,
    load_node_config,
)
from bft.node.errors import ConfigError
from bft.node.gossip import Transactions, encode_transactions
from bft.node.runtime import Node
from bft.node.testnet import free_base_port, write_testnet
from crypto.keys import PrivateKey
from net.transport import DEFAULT_MAX_FRAME_BYTES

KEYS = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
BATCH_KEYS = {
    "max_batch_txs": DEFAULT_MAX_BATCH_TXS,
    "max_batch_bytes": DEFAULT_MAX_BATCH_BYTES,
    "batch_lifetime_heights": DEFAULT_BATCH_LIFETIME_HEIGHTS,
    "max_stored_batches": DEFAULT_MAX_STORED_BATCHES,
    "max_block_batches": DEFAULT_MAX_BLOCK_BATCHES,
}


def _genesis_doc(**more: Any) -> dict[str, Any]:
    validators = [
        {
            "index": i,
            "public_key": KEYS[i].public_key.hex(),
            "p2p": f"127.0.0.1:{26600 + 2 * i}",
            "api": f"127.0.0.1:{26601 + 2 * i}",
        }
        for i in range(4)
    ]
    return {"chain_id": "qs-test", "validators": validators, **more}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


NODE_TOML = '[node]\nindex = 1\n[p2p]\nlisten = "127.0.0.1:26602"\n[api]\nlisten = "127.0.0.1:26603"\n'


def _home(home: Path, consensus: str = "") -> Path:
    home.mkdir(parents=True, exist_ok=True)
    _write(home / "config.toml", NODE_TOML + (f"[consensus]\n{consensus}" if consensus else ""))
    return home


# The genesis field.


def test_a_genesis_without_the_field_runs_without_and_is_written_byte_for_byte_as_before(
    tmp_path: Path,
) -> None:
    # What genesis_to_json wrote before the field existed: the same document, nothing added.
    before = json.dumps(_genesis_doc(), indent=2) + "\n"
    genesis = load_genesis(_write(tmp_path / "genesis.json", before))
    assert genesis.quorum_store is False
    assert genesis_to_json(genesis) == before
    assert load_node_config(_home(tmp_path)).replica_config(genesis).quorum_store is False
    # An explicit false is the default, written as absent.
    explicit = load_genesis(_write(tmp_path / "false.json", json.dumps(_genesis_doc(quorum_store=False))))
    assert explicit == genesis and genesis_to_json(explicit) == before


def test_a_quorum_store_genesis_round_trips_and_reaches_the_replica(tmp_path: Path) -> None:
    doc = _genesis_doc(commit_chain=2, quorum_store=True)
    genesis = load_genesis(_write(tmp_path / "genesis.json", json.dumps(doc)))
    assert genesis.quorum_store is True and genesis.commit_chain == 2
    text = genesis_to_json(genesis)
    assert json.loads(text) == doc
    assert load_genesis(_write(tmp_path / "copy.json", text)) == genesis
    rc = load_node_config(_home(tmp_path)).replica_config(genesis)
    assert (rc.quorum_store, rc.commit_chain) == (True, 2)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1, "int 1"), (0, "int 0"), ("true", "str 'true'"), (None, "NoneType None"), ([], "list []")],
)
def test_a_quorum_store_that_is_not_a_boolean_is_refused(tmp_path: Path, value: object, shown: str) -> None:
    path = _write(tmp_path / "g.json", json.dumps(_genesis_doc(quorum_store=value)))
    with pytest.raises(ConfigError) as info:
        load_genesis(path)
    assert str(info.value) == (
        f"{path}: genesis: quorum_store must be true or false (a JSON boolean), got {shown}"
    )
    genesis = load_genesis(_write(tmp_path / "ok.json", json.dumps(_genesis_doc())))
    with pytest.raises(ConfigError, match="quorum_store must be true or false"):
        Genesis(genesis.chain_id, genesis.validators, quorum_store=value)  # type: ignore[arg-type]


# The [consensus] settings.


def test_the_batch_settings_are_read_from_config_toml_and_reach_the_replica(tmp_path: Path) -> None:
    settings = (
        "max_batch_txs = 100\nmax_batch_bytes = 65536\nbatch_lifetime_heights = 8\n"
        "max_stored_batches = 6\nmax_block_batches = 12\n"
    )
    config = load_node_config(_home(tmp_path, settings))
    c = config.consensus
    assert (c.max_batch_txs, c.max_batch_bytes, c.batch_lifetime_heights) == (100, 65536, 8)
    assert (c.max_stored_batches, c.max_block_batches) == (6, 12)
    genesis = load_genesis(_write(tmp_path / "g.json", json.dumps(_genesis_doc(quorum_store=True))))
    rc = config.replica_config(genesis)
    assert (rc.max_batch_txs, rc.max_batch_bytes, rc.batch_lifetime_heights) == (100, 65536, 8)
    assert (rc.max_stored_batches, rc.max_block_batches) == (6, 12)


def test_the_batch_settings_default_to_the_cores(tmp_path: Path) -> None:
    c = load_node_config(_home(tmp_path)).consensus
    assert {k: getattr(c, k) for k in BATCH_KEYS} == BATCH_KEYS
    core = {f: ReplicaConfig.__dataclass_fields__[f].default for f in BATCH_KEYS}
    assert core == BATCH_KEYS


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_batch_txs = 0", "max_batch_txs must be positive"),
        ("max_batch_txs = 1.5", "max_batch_txs must be an integer"),
        ("max_batch_bytes = true", "max_batch_bytes must be an integer"),
        ("max_batch_bytes = -1", "max_batch_bytes must be positive"),
        ("batch_lifetime_heights = 0", "batch_lifetime_heights must be positive"),
        ("max_stored_batches = 1", "max_stored_batches must be 2 or more"),
        ("max_block_batches = 0", "max_block_batches must be positive"),
        ("max_block_batches = 257", "max_block_batches .257. exceeds the wire limit of 256"),
        (f"max_batch_txs = {MAX_TXS_PER_BLOCK + 1}", "max_batch_txs 10001 is outside the wire limits"),
        (f"max_batch_bytes = {MAX_MESSAGE_SIZE_BYTES}", "above what a message of"),
        ("max_batches = 3", "unknown key 'max_batches'"),
    ],
)
def test_bad_batch_settings_are_refused_when_the_config_loads(
    tmp_path: Path, line: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=rf"config.toml: .*{message}"):
        load_node_config(_home(tmp_path, line + "\n"))


def test_a_quorum_store_chain_defaults_to_larger_block_limits_unless_config_toml_sets_them(
    tmp_path: Path,
) -> None:
    plain = load_genesis(_write(tmp_path / "plain.json", json.dumps(_genesis_doc())))
    qs = load_genesis(_write(tmp_path / "qs.json", json.dumps(_genesis_doc(quorum_store=True))))
    unset = load_node_config(_home(tmp_path / "a", "base_timeout_s = 1.0\n"))
    rc = unset.replica_config(qs)
    assert (rc.max_block_txs, rc.max_block_bytes) == (
        QUORUM_STORE_MAX_BLOCK_TXS,
        QUORUM_STORE_MAX_BLOCK_BYTES,
    )
    assert (QUORUM_STORE_MAX_BLOCK_TXS, QUORUM_STORE_MAX_BLOCK_BYTES) == (MAX_TXS_PER_BLOCK, 3 * 1024 * 1024)
    assert unset.consensus_for(qs).max_block_txs == QUORUM_STORE_MAX_BLOCK_TXS
    # Without the quorum store, the defaults are as they were.
    rc_plain = unset.replica_config(plain)
    assert (rc_plain.max_block_txs, rc_plain.max_block_bytes) == (
        DEFAULT_MAX_BLOCK_TXS,
        DEFAULT_MAX_BLOCK_BYTES,
    )
    # A limit config.toml sets is kept; the other still takes the quorum store's default.
    one = load_node_config(_home(tmp_path / "b", "max_block_txs = 2000\n"))
    rc_one = one.replica_config(qs)
    assert (rc_one.max_block_txs, rc_one.max_block_bytes) == (2000, QUORUM_STORE_MAX_BLOCK_BYTES)
    # No [consensus] table at all: the same defaults.
    rc_none = load_node_config(_home(tmp_path / "c")).replica_config(qs)
    assert (rc_none.max_block_txs, rc_none.max_block_bytes) == (
        QUORUM_STORE_MAX_BLOCK_TXS,
        QUORUM_STORE_MAX_BLOCK_BYTES,
    )


@pytest.mark.parametrize("validators", [1, 4, 16, 32, 64])
def test_the_larger_block_limits_fit_a_message_and_a_frame_for_up_to_64_validators(validators: int) -> None:
    reason = check_block_limits(
        QUORUM_STORE_MAX_BLOCK_BYTES,
        QUORUM_STORE_MAX_BLOCK_TXS,
        validators,
        max_block_batches=DEFAULT_MAX_BLOCK_BATCHES,
    )
    assert reason is None
    assert MAX_MESSAGE_SIZE_BYTES < DEFAULT_MAX_FRAME_BYTES  # the transport carries any message


def test_block_limits_whose_full_block_would_not_fit_a_message_are_refused(tmp_path: Path) -> None:
    # 256 proofs signed by each of 64 validators, with 3 MiB of transactions, exceed 4 MiB.
    keys = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(64)]
    doc = {
        "chain_id": "big",
        "validators": [
            {"index": i, "public_key": k.public_key.hex(), "p2p": f"h:{1000 + i}", "api": f"h:{2000 + i}"}
            for i, k in enumerate(keys)
        ],
        "quorum_store": True,
    }
    genesis = load_genesis(_write(tmp_path / "g.json", json.dumps(doc)))
    config = load_node_config(_home(tmp_path, "max_block_batches = 256\n"))
    with pytest.raises(ConfigError, match=r"\[consensus\]: a block of 3145728 bytes .* and 256 proofs"):
        config.replica_config(genesis)
    # Without the quorum store blocks carry no proofs: the same settings are fine.
    assert config.replica_config(Genesis("big", genesis.validators)).max_block_batches == 256


def test_a_batch_larger_than_a_block_is_refused_under_the_quorum_store(tmp_path: Path) -> None:
    genesis = load_genesis(_write(tmp_path / "g.json", json.dumps(_genesis_doc(quorum_store=True))))
    config = load_node_config(_home(tmp_path, "max_block_txs = 100\n"))
    with pytest.raises(ConfigError, match=r"\[consensus\]: a batch must fit a block"):
        config.replica_config(genesis)


def test_the_toml_table_spells_out_the_batch_settings_only_where_they_matter() -> None:
    plain = ConsensusSettings().to_toml_table()
    assert not set(BATCH_KEYS) & set(plain)  # a chain without a quorum store: as before
    assert {
        k: v for k, v in ConsensusSettings().to_toml_table(quorum_store=True).items() if k in BATCH_KEYS
    } == (BATCH_KEYS)
    # A setting that differs from its default is never dropped.
    assert ConsensusSettings(max_batch_txs=7).to_toml_table()["max_batch_txs"] == 7


# bft testnet --quorum-store


def test_the_testnet_command_writes_the_quorum_store_into_every_genesis_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "net"
    assert main(["testnet", "--nodes", "4", "--out", str(out), "--base-port", "40000", "--quorum-store"]) == 0
    capsys.readouterr()
    assert json.loads((out / "genesis.json").read_text())["quorum_store"] is True
    for i in range(4):
        home = out / f"node{i}"
        assert (home / "genesis.json").read_bytes() == (out / "genesis.json").read_bytes()
        table = tomllib.loads((home / "config.toml").read_text())["consensus"]
        assert table["max_block_txs"] == QUORUM_STORE_MAX_BLOCK_TXS
        assert table["max_block_bytes"] == QUORUM_STORE_MAX_BLOCK_BYTES
        assert {k: table[k] for k in BATCH_KEYS} == BATCH_KEYS
        config = load_node_config(home)
        rc = config.replica_config(load_genesis(config.genesis_file))
        assert rc.quorum_store and rc.max_block_txs == QUORUM_STORE_MAX_BLOCK_TXS


def test_the_testnet_command_without_the_flag_writes_the_files_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["testnet", "--nodes", "2", "--out", str(tmp_path / "net"), "--base-port", "40000"]) == 0
    capsys.readouterr()
    assert "quorum_store" not in json.loads((tmp_path / "net" / "genesis.json").read_text())
    table = tomllib.loads((tmp_path / "net" / "node0" / "config.toml").read_text())["consensus"]
    assert table == ConsensusSettings().to_toml_table()
    assert not set(BATCH_KEYS) & set(table)


def test_a_testnet_with_explicit_consensus_settings_keeps_them(tmp_path: Path) -> None:
    consensus = ConsensusSettings(max_block_txs=2000, max_batch_txs=100)
    write_testnet(1, tmp_path, 40000, consensus=consensus, quorum_store=True)
    config = load_node_config(tmp_path / "node0")
    assert config.consensus == consensus
    assert config.replica_config(load_genesis(config.genesis_file)).max_block_txs == 2000


# bft cluster --quorum-store


def test_a_quorum_store_cluster_has_its_own_default_home() -> None:
    assert default_home(4, 3, False) == default_home(4) == Path.home() / ".bft" / "cluster-4"
    assert default_home(4, 3, True) == Path.home() / ".bft" / "cluster-4-quorum-store"
    assert default_home(4, 2, True) == Path.home() / ".bft" / "cluster-4-two-chain-quorum-store"


def test_the_chaos_cluster_refuses_the_quorum_store(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["cluster", "--chaos", "--quorum-store", "--home", str(tmp_path / "run")]) == 2
    assert "--chaos runs without the quorum store" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("written", "asked", "says"),
    [
        (False, True, "holds a cluster without the quorum store; drop --quorum-store, or --home"),
        (True, False, "holds a cluster with the quorum store; pass --quorum-store, or --home"),
    ],
)
def test_a_cluster_home_of_the_other_kind_is_refused_before_any_node_starts(
    tmp_path: Path, written: bool, asked: bool, says: str
) -> None:
    home = tmp_path / "cluster"
    write_testnet(4, home, free_base_port(8), quorum_store=written)
    output = io.StringIO()
    console = Console(file=output, width=200)
    assert trio.run(run_cluster, home, 4, 40000, {}, console, 3, asked) == EXIT_REFUSED
    assert f"{home} {says}" in output.getvalue()
    assert not any((home / f"node{i}" / "stderr.log").exists() for i in range(4))


# bft bench --quorum-store


def _bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_bench_runs_its_local_cluster_with_the_quorum_store_asked_for(tmp_path: Path) -> None:
    assert options_from_args(_bench_args()).quorum_store is False
    opts = options_from_args(_bench_args("--quorum-store"))
    assert opts.quorum_store is True
    # A running cluster's is in its genesis, which the bench does not read.
    assert options_from_args(_bench_args("--target", "127.0.0.1:1")).quorum_store is None
    with pytest.raises(BenchError, match="--quorum-store and --target exclude each other"):
        options_from_args(_bench_args("--target", "127.0.0.1:1", "--quorum-store"))
    report = BenchReport(opts, Tally(), [])
    data = json.loads(json.dumps(report.to_json()))
    assert data["quorum_store"] is True
    assert any("quorum store" in str(row) for row in report_table(report).columns[0].cells)
    plain = BenchReport(options_from_args(_bench_args()), Tally(), [])
    assert plain.to_json()["quorum_store"] is False


def test_the_bench_testnet_has_the_quorum_store_asked_for_and_keeps_it(tmp_path: Path) -> None:
    apis = prepare_home(tmp_path, 4, 3, quorum_store=True)
    genesis = load_genesis(tmp_path / "genesis.json")
    assert genesis.quorum_store is True
    assert prepare_home(tmp_path, 4, 3, quorum_store=True) == apis
    with pytest.raises(BenchError, match=r"holds a testnet with the quorum store \(pass --quorum-store"):
        prepare_home(tmp_path, 4, 3)
    prepare_home(tmp_path / "plain", 4, 3)
    with pytest.raises(BenchError, match=r"holds a testnet without the quorum store \(drop --quorum-store"):
        prepare_home(tmp_path / "plain", 4, 3, quorum_store=True)


# A node of a quorum store chain.


def _node(tmp_path: Path, *, quorum_store: bool) -> Node:
    node = Node(write_testnet(4, tmp_path, free_base_port(8), quorum_store=quorum_store)[0])
    node._start_program(open_ports(node.safety_store, node.blocks, node.executor, node.mempool, node.batches))
    return node


def _refusals(node: Node, what: str, reason: str) -> float:
    prefix = f'bft_refusals_total{{reason="{reason}",what="{what}"}} '
    lines = [line for line in node.render_metrics().decode().splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


def _put(i: int, size: int = 0) -> bytes:
    return json.dumps({"op": "put", "key": f"k{i}", "value": "v" * size}).encode()


async def test_a_quorum_store_node_refuses_gossip_unread_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    node = _node(tmp_path, quorum_store=True)
    program = Recording()
    frame = encode_transactions(Transactions(tuple(_put(i) for i in range(100))))
    with caplog.at_level("INFO", logger="bft.node"):
        for _ in range(50):
            node._on_frame(program, 3, frame, 1.0)
    assert len(node.mempool) == 0 and program.payloads == 0 and not program.messages
    assert _refusals(node, "gossiped transactions", "gossip-off") == 50
    lines = [r.getMessage() for r in caplog.records if "reason=gossip-off" in r.getMessage()]
    assert len(lines) == 1, "logged once, thinned; counted exactly"
    assert "peer=3" in lines[0] and "the chain runs the quorum store" in lines[0]
    node.blocks.close()
    node.batches.close()


async def test_a_node_without_the_quorum_store_still_admits_gossip(tmp_path: Path) -> None:
    node = _node(tmp_path, quorum_store=False)
    program = Recording()
    node._on_frame(program, 3, encode_transactions(Transactions((_put(1),))), 1.0)
    assert len(node.mempool) == 1 and program.payloads == 1
    assert _refusals(node, "gossiped transactions", "gossip-off") == 0
    node.blocks.close()
    node.batches.close()


async def test_a_quorum_store_node_queues_nothing_for_gossip_and_batches_its_clients_transactions(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path, quorum_store=True)
    assert node.quorum_store
    results, full = await node.submit([_put(i) for i in range(10)], wait_commit=False)
    assert not full and [r["status"] for r in results] == ["accepted"] * 10
    assert node.mempool.take_new(1000) == []  # nothing to gossip
    # The mempool offers one batch's worth at a time (the core packs it into a batch).
    assert node.mempool.payload_for(1, set()) == tuple(_put(i) for i in range(10))
    node.blocks.close()
    node.batches.close()


async def test_a_quorum_store_node_refuses_a_transaction_no_batch_can_hold(tmp_path: Path) -> None:
    node = _node(tmp_path, quorum_store=True)
    big = _put(1, DEFAULT_MAX_BATCH_BYTES)
    results, full = await node.submit([big, _put(2)], wait_commit=False)
    assert not full
    assert results[0]["status"] == "rejected"
    assert results[0]["error"] == (
        f"transaction of {len(big)} bytes exceeds {DEFAULT_MAX_BATCH_BYTES}, the most one batch holds "
        "(max_batch_bytes): it could never be batched"
    )
    assert results[1]["status"] == "accepted"
    node.blocks.close()
    node.batches.close()
