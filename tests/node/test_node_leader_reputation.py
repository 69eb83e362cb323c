"""The genesis' `"leader_reputation"` (`bft.node.config`, `bft.core.reputation`): optional, a JSON
boolean, written only when true, and what `bft testnet --leader-reputation` writes; `bft cluster`
and `bft bench` with the flag."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from core_helpers import KEYS
from rich.console import Console

from bft.bench.errors import BenchError
from bft.bench.local import prepare_home
from bft.bench.options import add_arguments, options_from_args
from bft.cli import main
from bft.node.cluster import default_home, run_cluster
from bft.node.cluster_state import EXIT_REFUSED
from bft.node.config import Genesis, genesis_to_json, load_genesis, load_node_config
from bft.node.errors import ConfigError
from bft.node.testnet import free_base_port, write_testnet


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
    return {"chain_id": "rep-test", "validators": validators, **more}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_genesis_without_the_field_has_the_fixed_schedule_and_is_written_as_before(tmp_path: Path) -> None:
    before = json.dumps(_genesis_doc(), indent=2) + "\n"
    genesis = load_genesis(_write(tmp_path / "genesis.json", before))
    assert genesis.leader_reputation is False
    assert genesis_to_json(genesis) == before
    explicit = load_genesis(
        _write(tmp_path / "false.json", json.dumps(_genesis_doc(leader_reputation=False)))
    )
    assert explicit == genesis and genesis_to_json(explicit) == before


def test_a_reputation_genesis_round_trips_and_reaches_the_replica(tmp_path: Path) -> None:
    doc = _genesis_doc(quorum_store=True, leader_reputation=True)
    genesis = load_genesis(_write(tmp_path / "genesis.json", json.dumps(doc)))
    assert genesis.leader_reputation is True
    assert json.loads(genesis_to_json(genesis)) == doc
    home = tmp_path / "node"
    home.mkdir()
    _write(
        home / "config.toml",
        '[node]\nindex = 1\n[p2p]\nlisten = "127.0.0.1:26602"\n[api]\nlisten = "127.0.0.1:26603"\n',
    )
    assert load_node_config(home).replica_config(genesis).leader_reputation is True


@pytest.mark.parametrize("value", [1, "true", None])
def test_a_reputation_flag_that_is_not_a_boolean_is_refused(tmp_path: Path, value: object) -> None:
    path = _write(tmp_path / "g.json", json.dumps(_genesis_doc(leader_reputation=value)))
    with pytest.raises(ConfigError, match="leader_reputation must be true or false"):
        load_genesis(path)
    genesis = load_genesis(_write(tmp_path / "ok.json", json.dumps(_genesis_doc())))
    with pytest.raises(ConfigError, match="leader_reputation must be true or false"):
        Genesis(genesis.chain_id, genesis.validators, leader_reputation=value)  # type: ignore[arg-type]


def test_the_testnet_command_writes_it_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["testnet", "--nodes", "4", "--out", str(tmp_path / "a"), "--leader-reputation"]) == 0
    assert json.loads((tmp_path / "a" / "genesis.json").read_text())["leader_reputation"] is True
    assert json.loads((tmp_path / "a" / "node2" / "genesis.json").read_text())["leader_reputation"] is True
    assert main(["testnet", "--nodes", "4", "--out", str(tmp_path / "b")]) == 0
    assert "leader_reputation" not in json.loads((tmp_path / "b" / "genesis.json").read_text())
    capsys.readouterr()


# bft cluster and bft bench --leader-reputation


def test_a_reputation_cluster_has_its_own_default_home() -> None:
    assert default_home(4, 3, False, False) == default_home(4)
    assert default_home(4, 3, False, True) == Path.home() / ".bft" / "cluster-4-reputation"
    assert (
        default_home(4, 2, True, True) == Path.home() / ".bft" / "cluster-4-two-chain-quorum-store-reputation"
    )


@pytest.mark.parametrize(
    ("written", "asked", "says"),
    [
        (False, True, "holds a cluster without leader reputation; drop --leader-reputation, or --home"),
        (True, False, "holds a cluster with leader reputation; pass --leader-reputation, or --home"),
    ],
)
def test_a_cluster_home_of_the_other_schedule_is_refused_before_any_node_starts(
    tmp_path: Path, written: bool, asked: bool, says: str
) -> None:
    home = tmp_path / "cluster"
    write_testnet(4, home, free_base_port(8), leader_reputation=written)
    output = io.StringIO()
    console = Console(file=output, width=200)
    assert trio.run(run_cluster, home, 4, 40000, {}, console, 3, False, asked) == EXIT_REFUSED
    assert f"{home} {says}" in output.getvalue()
    assert not any((home / f"node{i}" / "stderr.log").exists() for i in range(4))


def test_the_chaos_cluster_refuses_leader_reputation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["cluster", "--chaos", "--leader-reputation", "--home", str(tmp_path / "run")]) == 2
    assert "--chaos runs the fixed leader schedule" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_bench_testnet_has_the_schedule_asked_for_and_keeps_it(tmp_path: Path) -> None:
    apis = prepare_home(tmp_path, 4, 3, leader_reputation=True)
    assert load_genesis(tmp_path / "genesis.json").leader_reputation is True
    assert prepare_home(tmp_path, 4, 3, leader_reputation=True) == apis
    with pytest.raises(BenchError, match="with leader reputation \\(pass --leader-reputation"):
        prepare_home(tmp_path, 4, 3)


def test_the_bench_report_says_which_schedule_ran() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    local = options_from_args(parser.parse_args(["--leader-reputation"]))
    assert local.leader_reputation is True
    remote = options_from_args(parser.parse_args(["--target", "http://127.0.0.1:1"]))
    assert remote.leader_reputation is None
    with pytest.raises(BenchError, match="--leader-reputation and --target exclude each other"):
        options_from_args(parser.parse_args(["--leader-reputation", "--target", "http://127.0.0.1:1"]))
