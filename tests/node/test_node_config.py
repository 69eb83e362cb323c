"""Config files: genesis JSON, config.toml, the committed cluster defaults, the TOML writer."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bft.core.config import (
    DEFAULT_BASE_TIMEOUT_S,
    DEFAULT_MAX_BATCH_DELAY_S,
    DEFAULT_MAX_BLOCK_BYTES,
    DEFAULT_MAX_BLOCK_TXS,
    DEFAULT_MAX_TIMEOUT_S,
    DEFAULT_MAX_VIEWS_AHEAD,
    ReplicaConfig,
)
from bft.core.types import ValidatorIndex
from bft.node.config import (
    BUILTIN_CLUSTER_DEFAULTS,
    DEFAULT_CLUSTER_FILE,
    ApiSettings,
    ClusterDefaults,
    ConsensusSettings,
    Genesis,
    GenesisValidator,
    MempoolSettings,
    NodeConfig,
    check_identity,
    format_host_port,
    format_toml,
    load_cluster_defaults,
    load_genesis,
    load_node_config,
    parse_host_port,
    write_genesis,
)
from bft.node.errors import ConfigError, NodeError
from crypto.keys import PrivateKey

KEYS = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]


def _genesis_doc() -> dict[str, Any]:
    return {
        "chain_id": "cfg-test",
        "validators": [
            {
                "index": i,
                "public_key": KEYS[i].public_key.hex(),
                "p2p": f"127.0.0.1:{26600 + 2 * i}",
                "api": f"127.0.0.1:{26601 + 2 * i}",
            }
            for i in range(4)
        ],
    }


def _write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


L = 'listen = "127.0.0.1:26604"'
CONFIG_TOML = """\
[node]
index = 2
key_file = "node_key"
genesis_file = "genesis.json"
data_dir = "data"
log_file = "node.log"

[p2p]
listen = "127.0.0.1:26604"

[api]
listen = "0.0.0.0:26605"

[consensus]
base_timeout_s = 1
max_timeout_s = 8.5
max_block_txs = 10
max_block_bytes = 4096
max_views_ahead = 16
"""


def _home(tmp_path: Path, text: str = CONFIG_TOML) -> Path:
    (tmp_path / "config.toml").write_text(text)
    return tmp_path


# host:port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:26600", ("127.0.0.1", 26600)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:65535", ("::1", 65535)),
        ("node-3.example:80", ("node-3.example", 80)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected
    assert format_host_port(*expected) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "127.0.0.1",
        ":26600",
        "host:",
        "host:65536",
        "host:-1",
        "host:+80",
        "::1:80",
        "[]:80",
        "a b:80",
        "host:\uff18\uff10",
        "[127.0.0.1]:80",
    ],
)
def test_parse_host_port_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        parse_host_port(text)


# Genesis


def test_genesis_round_trip(tmp_path: Path) -> None:
    genesis = load_genesis(_write_json(tmp_path / "g.json", _genesis_doc()))
    assert genesis.chain_id == "cfg-test"
    assert [v.index for v in genesis.validators] == [0, 1, 2, 3]
    assert genesis.validators[1] == GenesisValidator(
        1, KEYS[1].public_key, "127.0.0.1:26602", "127.0.0.1:26603"
    )
    assert genesis.validator_set().public_keys == tuple(k.public_key for k in KEYS)
    write_genesis(tmp_path / "copy.json", genesis)
    assert load_genesis(tmp_path / "copy.json") == genesis
    assert json.loads((tmp_path / "copy.json").read_text()) == _genesis_doc()


def test_genesis_entries_may_come_in_any_order(tmp_path: Path) -> None:
    doc = _genesis_doc()
    doc["validators"].reverse()
    genesis = load_genesis(_write_json(tmp_path / "g.json", doc))
    assert [v.public_key for v in genesis.validators] == [k.public_key for k in KEYS]


def _break(doc: dict[str, Any], case: str) -> None:
    v = doc["validators"]
    if case == "missing_chain_id":
        del doc["chain_id"]
    elif case == "unknown_field":
        doc["extra"] = 1
    elif case == "missing_api":
        del v[0]["api"]
    elif case == "bad_hex":
        v[1]["public_key"] = "zz" * 32
    elif case == "short_key":
        v[1]["public_key"] = "ab" * 31
    elif case == "duplicate_key":
        v[1]["public_key"] = v[0]["public_key"]
    elif case == "index_gap":
        v[3]["index"] = 4
    elif case == "duplicate_index":
        v[3]["index"] = 2
    elif case == "bool_index":
        v[0]["index"] = False
    elif case == "bad_address":
        v[2]["p2p"] = "127.0.0.1"
    elif case == "port_zero":
        v[2]["api"] = "127.0.0.1:0"
    elif case == "duplicate_address":
        v[2]["p2p"] = v[1]["p2p"]
    elif case == "empty_chain_id":
        doc["chain_id"] = ""
    elif case == "no_validators":
        doc["validators"] = []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_chain_id", "missing key 'chain_id'"),
        ("unknown_field", "unknown key 'extra'"),
        ("missing_api", r"validators\[0\]: missing key 'api'"),
        ("bad_hex", r"validators\[1\]: public_key must be 64 hex digits"),
        ("short_key", r"validators\[1\]: public_key must be 64 hex digits"),
        ("duplicate_key", "validator 1: duplicate public key"),
        ("index_gap", "indices must be 0..3"),
        ("duplicate_index", "indices must be 0..3"),
        ("bool_index", "index must be an integer"),
        ("bad_address", "validator 2: p2p: .*host:port"),
        ("port_zero", "validator 2: api: peers cannot dial port 0"),
        ("duplicate_address", "validator 2: p2p: duplicate address"),
        ("empty_chain_id", "chain_id must be a non-empty string"),
        ("no_validators", "no validators"),
    ],
)
def test_genesis_refusals_name_the_problem(tmp_path: Path, case: str, message: str) -> None:
    doc = _genesis_doc()
    _break(doc, case)
    with pytest.raises(ConfigError, match=message):
        load_genesis(_write_json(tmp_path / "g.json", doc))


def test_genesis_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="genesis file not found"):
        load_genesis(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_genesis(tmp_path / "bad.json")
    (tmp_path / "dup.json").write_text('{"chain_id": "a", "chain_id": "b", "validators": []}')
    with pytest.raises(ConfigError, match="field 'chain_id' appears twice"):
        load_genesis(tmp_path / "dup.json")
    with pytest.raises(ConfigError, match="top level"):
        load_genesis(_write_json(tmp_path / "list.json", [1]))


def test_genesis_constructor_validates_too() -> None:
    # write_genesis writes only what Genesis accepts, so a written file always loads.
    with pytest.raises(ConfigError, match=r"validator 0: .*32 bytes"):
        Genesis("c", (GenesisValidator(0, b"short", "h:1", "h:2"),))
    with pytest.raises(ConfigError, match="commit_chain must be the integer 3"):
        Genesis("c", _doc_validators(), commit_chain=4)


def _doc_validators() -> tuple[GenesisValidator, ...]:
    return tuple(
        GenesisValidator(v["index"], bytes.fromhex(v["public_key"]), v["p2p"], v["api"])
        for v in _genesis_doc()["validators"]
    )


# Genesis: the commit rule


def test_a_genesis_without_commit_chain_runs_the_three_chain(tmp_path: Path) -> None:
    genesis = load_genesis(_write_json(tmp_path / "genesis.json", _genesis_doc()))
    assert genesis.commit_chain == 3
    assert load_node_config(_home(tmp_path)).replica_config(genesis).commit_chain == 3


def test_a_two_chain_genesis_round_trips_and_reaches_the_replica(tmp_path: Path) -> None:
    doc = {**_genesis_doc(), "commit_chain": 2}
    genesis = load_genesis(_write_json(tmp_path / "genesis.json", doc))
    assert genesis.commit_chain == 2
    assert load_node_config(_home(tmp_path)).replica_config(genesis).commit_chain == 2
    write_genesis(tmp_path / "copy.json", genesis)
    assert json.loads((tmp_path / "copy.json").read_text()) == doc
    assert load_genesis(tmp_path / "copy.json") == genesis


def test_an_explicit_three_chain_is_the_default_and_written_as_absent(tmp_path: Path) -> None:
    # Writing the default as absence keeps every three-chain genesis as it was before the field.
    genesis = load_genesis(_write_json(tmp_path / "g.json", {**_genesis_doc(), "commit_chain": 3}))
    assert genesis == load_genesis(_write_json(tmp_path / "plain.json", _genesis_doc()))
    write_genesis(tmp_path / "copy.json", genesis)
    assert json.loads((tmp_path / "copy.json").read_text()) == _genesis_doc()


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (4, "int 4"),
        (1, "int 1"),
        ("2", "str '2'"),
        (True, "bool True"),
        (2.0, "float 2.0"),
        (None, "NoneType None"),
    ],
)
def test_a_commit_chain_that_is_not_2_or_3_is_refused(tmp_path: Path, value: object, shown: str) -> None:
    path = _write_json(tmp_path / "g.json", {**_genesis_doc(), "commit_chain": value})
    with pytest.raises(ConfigError) as info:
        load_genesis(path)
    assert str(info.value) == (
        f"{path}: genesis: commit_chain must be the integer 3 (chained HotStuff's three-chain) or 2 "
        f"(Jolteon's two-chain), got {shown}"
    )


# Node config


def test_load_node_config(tmp_path: Path) -> None:
    config = load_node_config(_home(tmp_path))
    home = tmp_path.resolve()
    assert config == NodeConfig(
        home=home,
        index=ValidatorIndex(2),
        key_file=home / "node_key",
        genesis_file=home / "genesis.json",
        data_dir=home / "data",
        log_file=home / "node.log",
        p2p_listen="127.0.0.1:26604",
        api_listen="0.0.0.0:26605",
        consensus=ConsensusSettings(1.0, 8.5, 10, 4096, 16),
        consensus_keys=frozenset(
            {"base_timeout_s", "max_timeout_s", "max_block_txs", "max_block_bytes", "max_views_ahead"}
        ),
    )
    assert isinstance(config.consensus.base_timeout_s, float)


def test_node_config_defaults_and_absolute_paths(tmp_path: Path) -> None:
    text = '[node]\nindex = 0\ndata_dir = "/var/lib/bft"\n[p2p]\nlisten = "h:1"\n[api]\nlisten = "h:2"\n'
    config = load_node_config(_home(tmp_path, text))
    assert config.key_file == tmp_path.resolve() / "node_key"
    assert config.data_dir == Path("/var/lib/bft")
    assert config.consensus == ConsensusSettings()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("index = 2", "index = 2\ncolour = 1"), r"\[node\]: unknown key 'colour'"),
        (("[api]", "[rpc]\nlisten = 'h:1'\n[api]"), "unknown key 'rpc'"),
        (("index = 2", 'index = "2"'), r"\[node\] index must be an integer, got str"),
        (("index = 2", "index = true"), r"\[node\] index must be an integer, got bool"),
        (("index = 2", "index = -1"), "index must be >= 0"),
        (("index = 2\n", ""), r"\[node\]: missing key 'index'"),
        (('listen = "127.0.0.1:26604"', 'listen = "nowhere"'), r"\[p2p\] listen: .*host:port"),
        (('listen = "127.0.0.1:26604"', "listen = 26604"), r"\[p2p\] listen must be a string"),
        (("max_block_txs = 10", "max_block_txs = 10.5"), r"\[consensus\] max_block_txs must be an integer"),
        (("max_block_txs = 10", "max_block_txs = 0"), "max_block_txs must be positive"),
        (("max_timeout_s = 8.5", "max_timeout_s = 0.5"), "max_timeout_s .* is below base_timeout_s"),
        (("max_timeout_s = 8.5", "max_timeout_s = nan"), "max_timeout_s must be positive"),
        (("max_views_ahead = 16", "max_views_ahead = 16\nfoo = 1"), r"\[consensus\]: unknown key 'foo'"),
        (('data_dir = "data"', 'data_dir = ""'), r"\[node\] data_dir must not be empty"),
        (("[node]", "[node]\n[node]"), "not valid TOML"),
        (("[p2p]", "p2p = 3\n[x]"), "unknown key 'x'"),
        (
            ("max_views_ahead = 16", "max_views_ahead = 16\nmax_batch_delay_s = 1.0"),
            "must be below base_timeout_s",
        ),
        (
            ("max_views_ahead = 16", "max_views_ahead = 16\nmax_batch_delay_s = -0.01"),
            r"\[consensus\] max_batch_delay_s must be 0 or more, got -0.01",
        ),
        (("[p2p]", "[mempool]\nmax_txs = 0\n[p2p]"), r"\[mempool\] max_txs must be a positive integer"),
        (("[p2p]", "[mempool]\nmax_bytes = 1.5\n[p2p]"), r"\[mempool\] max_bytes must be an integer"),
        (("[p2p]", "[mempool]\ncolour = 1\n[p2p]"), r"\[mempool\]: unknown key 'colour'"),
        (
            ("[p2p]", "[mempool]\nmax_txs = 10\npeer_share_txs = 11\n[p2p]"),
            r"\[mempool\] peer_share_txs must be an integer in 0..10",
        ),
        (("[p2p]", "[mempool]\npeer_share_bytes = -1\n[p2p]"), r"\[mempool\] peer_share_bytes must be"),
        (("[p2p]", "[app]\nfactory = 'no colon'\n[p2p]"), r"\[app\] factory must look like"),
        (("[p2p]", "[app]\nmodule = 'x'\n[p2p]"), r"\[app\]: unknown key 'module'"),
        (
            ('listen = "0.0.0.0:26605"', 'listen = "0.0.0.0:26605"\ncolour = 1'),
            r"\[api\]: unknown key 'colour'",
        ),
        (('listen = "127.0.0.1:26604"', 'listen = "127.0.0.1:26604"\nmax_connections = 5'), "unknown key"),
        (('listen = "0.0.0.0:26605"', 'listen = "0.0.0.0:26605"\nsend_timeout_s = 0'), "must be positive"),
        (
            ('listen = "0.0.0.0:26605"', 'listen = "0.0.0.0:26605"\nmax_connections = 1.5'),
            "must be an integer",
        ),
        (
            ('listen = "0.0.0.0:26605"', 'listen = "0.0.0.0:26605"\nheader_timeout_s = "10"'),
            "must be a number",
        ),
        ((L, L + "\ndial = 3"), r"\[p2p\] dial must be a table"),
        ((L, L + '\ndial = { x = "h:1" }'), r"\[p2p\] dial: 'x' is not the index of another validator"),
        ((L, L + '\ndial = { 2 = "h:1" }'), r"\[p2p\] dial: '2' is not the index of another validator"),
        ((L, L + "\ndial = { 1 = 5 }"), r'\[p2p\] dial: 1 must be a "host:port" string'),
        ((L, L + '\ndial = { 1 = "h" }'), r"\[p2p\] dial: 1: .*host:port"),
        ((L, L + '\ndial = { 1 = "h:0" }'), r"\[p2p\] dial: 1: cannot dial port 0"),
        (("[p2p]", "[chaos]\nclock_rate = 0\n[p2p]"), r"\[chaos\] clock_rate must be in 0.01..100, got 0"),
        (("[p2p]", "[chaos]\nclock_rate = 'fast'\n[p2p]"), r"\[chaos\] clock_rate must be a number"),
        (("[p2p]", "[chaos]\nskew = 2\n[p2p]"), r"\[chaos\]: unknown key 'skew'"),
    ],
)
def test_node_config_refusals_name_the_key(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    old, new = edit
    assert old in CONFIG_TOML
    with pytest.raises(ConfigError, match=message):
        load_node_config(_home(tmp_path, CONFIG_TOML.replace(old, new, 1)))


def test_dial_overrides_and_the_clock_rate_are_read(tmp_path: Path) -> None:
    text = CONFIG_TOML.replace(
        'listen = "127.0.0.1:26604"',
        'listen = "127.0.0.1:26604"\ndial = { 0 = "127.0.0.1:40000", 3 = "relay:9" }',
    )
    config = load_node_config(_home(tmp_path, text + "\n[chaos]\nclock_rate = 1.5\n"))
    assert config.dial == {0: "127.0.0.1:40000", 3: "relay:9"}
    assert config.clock_rate == 1.5
    plain = load_node_config(_home(tmp_path))
    assert (plain.dial, plain.clock_rate) == ({}, 1.0)


def test_api_settings_are_read_from_the_api_table(tmp_path: Path) -> None:
    assert load_node_config(_home(tmp_path)).api == ApiSettings(), "all optional"
    text = CONFIG_TOML.replace(
        'listen = "0.0.0.0:26605"',
        'listen = "0.0.0.0:26605"\nheader_timeout_s = 5\nbody_timeout_s = 12.5\nsend_timeout_s = 7.0\n'
        "keep_alive_timeout_s = 3\nmax_connections = 100\nmax_answer_bytes_in_flight = 1048576",
    )
    config = load_node_config(_home(tmp_path, text))
    assert config.api == ApiSettings(
        header_timeout_s=5.0,
        body_timeout_s=12.5,
        send_timeout_s=7.0,
        keep_alive_timeout_s=3.0,
        max_connections=100,
        max_answer_bytes_in_flight=1024 * 1024,
    )
    assert config.api_listen == "0.0.0.0:26605"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml: node config not found"):
        load_node_config(tmp_path)


def test_replica_config_and_identity(tmp_path: Path) -> None:
    config = load_node_config(_home(tmp_path))
    genesis = load_genesis(_write_json(tmp_path / "genesis.json", _genesis_doc()))
    check_identity(config, genesis, KEYS[2].public_key)
    rc = config.replica_config(genesis)
    assert rc.chain_id == "cfg-test"
    assert rc.me == 2
    assert rc.validators.public_keys == tuple(k.public_key for k in KEYS)
    assert (rc.base_timeout_s, rc.max_timeout_s) == (1.0, 8.5)
    assert (rc.max_block_txs, rc.max_block_bytes, rc.max_views_ahead) == (10, 4096, 16)

    with pytest.raises(ConfigError, match=r"is not the key genesis .* lists for validator 2"):
        check_identity(config, genesis, KEYS[1].public_key)
    small = Genesis(genesis.chain_id, genesis.validators[:2])
    with pytest.raises(ConfigError, match="index 2 is not a validator"):
        check_identity(config, small, KEYS[2].public_key)
    with pytest.raises(ConfigError, match="index 2 is not a validator"):
        config.replica_config(small)


# Cluster defaults


def test_builtin_cluster_defaults_equal_the_committed_file() -> None:
    assert DEFAULT_CLUSTER_FILE.is_file()
    assert load_cluster_defaults(DEFAULT_CLUSTER_FILE) == BUILTIN_CLUSTER_DEFAULTS
    assert load_cluster_defaults() == BUILTIN_CLUSTER_DEFAULTS
    # Every key is spelled out in the file, so the comparison does not lean on shared defaults.
    doc = tomllib.loads(DEFAULT_CLUSTER_FILE.read_text())
    assert doc == {
        "cluster": {"nodes": 4, "host": "127.0.0.1", "base_port": 26600, "chain_id": "bft-local"},
        "consensus": BUILTIN_CLUSTER_DEFAULTS.consensus.to_toml_table(),
    }


def test_consensus_defaults_are_the_cores() -> None:
    # One source of defaults: bft.core.config. The [consensus] table, the committed cluster file
    # (checked above against these settings) and a default node's replica all agree with it.
    core = {f.name: f.default for f in dataclasses.fields(ReplicaConfig)}
    table = ConsensusSettings().to_toml_table()
    assert table == {name: core[name] for name in table}
    assert table == {
        "base_timeout_s": DEFAULT_BASE_TIMEOUT_S,
        "max_timeout_s": DEFAULT_MAX_TIMEOUT_S,
        "max_block_txs": DEFAULT_MAX_BLOCK_TXS,
        "max_block_bytes": DEFAULT_MAX_BLOCK_BYTES,
        "max_views_ahead": DEFAULT_MAX_VIEWS_AHEAD,
        "max_batch_delay_s": DEFAULT_MAX_BATCH_DELAY_S,
    }


def test_cluster_defaults_from_another_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[cluster]\nnodes = 7\nchain_id = "other"\n[consensus]\nmax_timeout_s = 3.0\n')
    assert load_cluster_defaults(path) == ClusterDefaults(
        nodes=7, chain_id="other", consensus=ConsensusSettings(max_timeout_s=3.0)
    )
    path.write_text("[cluster]\nnodes = 0\n")
    with pytest.raises(ConfigError, match=r"c.toml: \[cluster\] nodes must be >= 1"):
        load_cluster_defaults(path)
    path.write_text("[cluster]\nbase_port = 65530\n")
    with pytest.raises(ConfigError, match="leaves no room"):
        load_cluster_defaults(path)
    path.write_text("[cluster]\nnode = 4\n")
    with pytest.raises(ConfigError, match="unknown key 'node'"):
        load_cluster_defaults(path)


def test_errors_share_a_base() -> None:
    assert issubclass(ConfigError, NodeError)


# TOML writer


def test_format_toml_round_trips_through_tomllib() -> None:
    doc: dict[str, dict[str, str | int | float]] = {
        "node": {"index": 3, "name": 'quote " back \\ tab \t nl \n del \x7f é ☃', "empty": ""},
        "consensus": {"base_timeout_s": 1.0, "tiny": 1e-05, "big": 1e300, "neg": -2, "ratio": 0.1},
        "odd table.name": {"key with space": "v"},
    }
    text = format_toml(doc, header="line one\nline two")
    assert text.startswith("# line one\n# line two\n")
    assert tomllib.loads(text) == doc
    assert isinstance(tomllib.loads(text)["consensus"]["base_timeout_s"], float)


@pytest.mark.parametrize("value", [True, float("inf"), float("nan"), "\ud800"])
def test_format_toml_refuses_what_it_cannot_write(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        format_toml({"t": {"k": value}})


def test_a_peers_mempool_share_is_a_validators_slice_unless_set(tmp_path: Path) -> None:
    assert MempoolSettings().peer_shares(4) == (5_000, 16 * 1024 * 1024)
    assert MempoolSettings(max_txs=10, max_bytes=10).peer_shares(100) == (1, 1)
    text = CONFIG_TOML + "\n[mempool]\nmax_txs = 100\npeer_share_txs = 60\npeer_share_bytes = 4096\n"
    config = load_node_config(_home(tmp_path, text))
    assert config.mempool.peer_shares(4) == (60, 4096)


def test_a_batch_delay_of_zero_means_propose_at_once(tmp_path: Path) -> None:
    text = CONFIG_TOML.replace("max_views_ahead = 16", "max_views_ahead = 16\nmax_batch_delay_s = 0.0")
    config = load_node_config(_home(tmp_path, text))
    genesis = load_genesis(_write_json(tmp_path / "g.json", _genesis_doc()))
    assert config.replica_config(genesis).max_batch_delay_s == 0.0


def test_mempool_and_app_settings(tmp_path: Path) -> None:
    text = CONFIG_TOML + '\n[mempool]\nmax_txs = 7\n\n[app]\nfactory = "my.pkg:make_app"\n'
    config = load_node_config(_home(tmp_path, text))
    assert (config.mempool.max_txs, config.mempool.max_bytes) == (7, MempoolSettings().max_bytes)
    assert config.app_factory == "my.pkg:make_app"
    defaults = load_node_config(_home(tmp_path))
    assert defaults.mempool == MempoolSettings() and defaults.app_factory == ""
    assert (
        defaults.replica_config(
            load_genesis(_write_json(tmp_path / "g.json", _genesis_doc()))
        ).max_batch_delay_s
        == 0.05
    )
