"""write_testnet: node homes that load, with keys that match genesis and ports derived from the base."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from bft.core.safety import first_state
from bft.core.safety_store import DurableFileStore
from bft.node.config import (
    ConsensusSettings,
    check_identity,
    load_genesis,
    load_node_config,
)
from bft.node.errors import ConfigError
from bft.node.osfs import OsFilesystem
from bft.node.testnet import write_testnet
from crypto.keys import load_private_key


def test_four_node_testnet(tmp_path: Path) -> None:
    out = tmp_path / "net"
    homes = write_testnet(4, out, 30000, chain_id="tn-test")
    assert homes == [out / f"node{i}" for i in range(4)]
    genesis = load_genesis(out / "genesis.json")
    assert genesis.chain_id == "tn-test"
    assert len(genesis.validators) == 4
    for i, home in enumerate(homes):
        doc = tomllib.loads((home / "config.toml").read_text())
        assert doc["node"]["index"] == i
        assert doc["p2p"]["listen"] == f"127.0.0.1:{30000 + 2 * i}"
        assert doc["api"]["listen"] == f"127.0.0.1:{30000 + 2 * i + 1}"
        assert stat.S_IMODE((home / "node_key").stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        key = load_private_key(home / "node_key")
        assert genesis.validators[i].public_key == key.public_key
        assert genesis.validators[i].p2p == doc["p2p"]["listen"]
        assert genesis.validators[i].api == doc["api"]["listen"]
        assert (home / "genesis.json").read_bytes() == (out / "genesis.json").read_bytes()

        config = load_node_config(home)
        node_genesis = load_genesis(config.genesis_file)
        assert node_genesis == genesis
        check_identity(config, node_genesis, load_private_key(config.key_file).public_key)
        assert config.replica_config(node_genesis).me == i
    assert len({v.public_key for v in genesis.validators}) == 4
    assert sorted(p.name for p in out.iterdir()) == ["genesis.json", "node0", "node1", "node2", "node3"]
    assert sorted(p.name for p in homes[0].iterdir()) == ["config.toml", "data", "genesis.json", "node_key"]
    # Each validator's first safety record: a data directory without one lost it.
    first = DurableFileStore(OsFilesystem(homes[0] / "data")).load()
    assert first == first_state(genesis.chain_id)
    assert (homes[0] / "data").stat().st_mode & 0o777 == 0o700


def test_options_reach_the_files(tmp_path: Path) -> None:
    consensus = ConsensusSettings(base_timeout_s=0.25, max_timeout_s=2.0, max_block_txs=7)
    homes = write_testnet(1, tmp_path, 40000, consensus=consensus, host="localhost")
    config = load_node_config(homes[0])
    assert config.consensus == consensus
    assert config.p2p_listen == "localhost:40000"
    assert config.api_listen == "localhost:40001"


def test_default_chain_ids_are_fresh(tmp_path: Path) -> None:
    write_testnet(1, tmp_path / "a", 40000)
    write_testnet(1, tmp_path / "b", 40000)
    a = load_genesis(tmp_path / "a" / "genesis.json").chain_id
    b = load_genesis(tmp_path / "b" / "genesis.json").chain_id
    assert a.startswith("bft-testnet-")
    assert a != b


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_refuses_to_overwrite_a_testnet(tmp_path: Path) -> None:
    write_testnet(2, tmp_path, 40000, chain_id="tn-old")
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError) as info:
        write_testnet(3, tmp_path, 40000)
    assert str(info.value) == (
        f"{tmp_path} already holds a testnet (chain tn-old, 2 validators); refusing to overwrite "
        f"its keys: remove {tmp_path} to generate a new one, or choose another directory"
    )
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "node2").exists()


def test_refuses_an_interrupted_testnet(tmp_path: Path) -> None:
    # Keys written, then the process died before the top-level genesis (written last).
    write_testnet(2, tmp_path, 40000)
    (tmp_path / "genesis.json").unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(ConfigError) as info:
        write_testnet(2, tmp_path, 40000)
    assert str(info.value) == (
        f"{tmp_path} holds an incomplete testnet (node0/node_key, no genesis.json); refusing to "
        f"overwrite its keys: remove {tmp_path} to generate a new one, or choose another directory"
    )
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "contents",
    [
        ["__init__.py", "framing.py"],  # `bft testnet --out net` from the clone root: the net/ package
        [".hidden"],
        ["node0/notes.txt"],
        ["genesis.json.bak", "a", "b", "c", "d", "e", "f", "g"],
    ],
)
def test_refuses_a_directory_that_is_not_a_testnet(tmp_path: Path, contents: list[str]) -> None:
    out = tmp_path / "net"
    for name in contents:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine\n")
    before = _snapshot(out)
    with pytest.raises(ConfigError) as info:
        write_testnet(4, out, 40000)
    message = str(info.value)
    assert message.startswith(f"{out} is not empty and holds no testnet (it has ")
    assert message.endswith("); refusing to write into it: choose a new or empty directory")
    top = sorted({name.split("/")[0] for name in contents})
    assert all(name in message for name in top[:5])
    assert _snapshot(out) == before


def test_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "net").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        write_testnet(1, tmp_path / "net", 40000)


def test_writes_into_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    homes = write_testnet(2, tmp_path / "net", 40000)
    assert [load_node_config(home).index for home in homes] == [0, 1]


@pytest.mark.parametrize(("nodes", "base_port"), [(0, 40000), (4, 0), (4, 65530)])
def test_refuses_impossible_layouts(tmp_path: Path, nodes: int, base_port: int) -> None:
    with pytest.raises(ConfigError):
        write_testnet(nodes, tmp_path / "out", base_port)
    assert not (tmp_path / "out").exists()


def test_the_top_level_genesis_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its presence tells `bft cluster` (and anyone watching) that every node's files are in place.
    import bft.node.testnet as testnet_module

    written: list[str] = []
    real = testnet_module._write_atomic

    def recording(path: Path, text: str) -> None:
        written.append(str(path.relative_to(tmp_path)))
        real(path, text)

    monkeypatch.setattr(testnet_module, "_write_atomic", recording)
    testnet_module.write_testnet(3, tmp_path / "net", 29000)
    assert written[-1] == "net/genesis.json"
    assert len(written) == 1 + 3 * 2  # per node: genesis copy and config


def test_the_command_writes_a_fresh_directory_and_refuses_any_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bft.cli import main

    source = tmp_path / "clone" / "net"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text('"""The transport package."""\n')
    assert main(["testnet", "--nodes", "4", "--out", str(source)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"bft testnet: {source} is not empty and holds no testnet (it has __init__.py); refusing "
        "to write into it: choose a new or empty directory\n"
    )
    assert [p.name for p in source.iterdir()] == ["__init__.py"]

    fresh = tmp_path / "bft-net"
    assert main(["testnet", "--nodes", "4", "--out", str(fresh), "--base-port", "40000"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == [f"wrote {fresh / f'node{i}'}" for i in range(4)]
    chain_id = load_genesis(fresh / "genesis.json").chain_id
    assert main(["testnet", "--nodes", "4", "--out", str(fresh), "--base-port", "40000"]) == 2
    assert capsys.readouterr().err == (
        f"bft testnet: {fresh} already holds a testnet (chain {chain_id}, 4 validators); refusing "
        f"to overwrite its keys: remove {fresh} to generate a new one, or choose another directory\n"
    )
