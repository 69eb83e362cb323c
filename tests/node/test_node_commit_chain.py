"""The commit rule chosen when a chain is set up: `bft testnet --commit-chain` and `bft cluster
--commit-chain` write it into the genesis, from which every node's replica config and block store
take it; a cluster home set up with the other rule is refused before any node starts."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from rich.console import Console

from bft.cli import main
from bft.node import cluster as cluster_module
from bft.node.cluster import default_home, run_cluster
from bft.node.cluster_state import EXIT_REFUSED
from bft.node.config import load_genesis, load_node_config
from bft.node.errors import ConfigError
from bft.node.testnet import free_base_port, write_testnet


@pytest.mark.parametrize("commit_chain", [2, 3])
def test_the_testnet_command_writes_the_commit_rule_into_every_genesis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], commit_chain: int
) -> None:
    out = tmp_path / "net"
    argv = ["testnet", "--nodes", "4", "--out", str(out), "--base-port", "40000"]
    assert main([*argv, "--commit-chain", str(commit_chain)]) == 0
    capsys.readouterr()
    genesis = load_genesis(out / "genesis.json")
    assert genesis.commit_chain == commit_chain
    for i in range(4):
        config = load_node_config(out / f"node{i}")
        assert config.replica_config(load_genesis(config.genesis_file)).commit_chain == commit_chain


def test_the_testnet_command_defaults_to_the_three_chain_and_writes_the_genesis_as_before(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["testnet", "--nodes", "4", "--out", str(tmp_path / "net"), "--base-port", "40000"]) == 0
    capsys.readouterr()
    assert load_genesis(tmp_path / "net" / "genesis.json").commit_chain == 3
    assert "commit_chain" not in json.loads((tmp_path / "net" / "genesis.json").read_text())


def test_a_two_chain_genesis_says_so_in_its_file(tmp_path: Path) -> None:
    write_testnet(4, tmp_path / "net", 40000, commit_chain=2)
    assert json.loads((tmp_path / "net" / "genesis.json").read_text())["commit_chain"] == 2


def test_an_unknown_commit_rule_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="commit_chain must be the integer 3"):
        write_testnet(4, tmp_path / "net", 40000, commit_chain=4)
    assert not (tmp_path / "net").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["testnet", "--nodes", "4", "--out", "x", "--commit-chain", "4"],
        ["cluster", "--commit-chain", "1"],
        ["bench", "--commit-chain", "two"],
    ],
)
def test_the_commands_refuse_a_commit_rule_that_does_not_exist(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"bft {argv[0]}: error: argument --commit-chain: invalid" in capsys.readouterr().err


def test_a_two_chain_cluster_has_its_own_default_home() -> None:
    assert default_home(4) == Path.home() / ".bft" / "cluster-4"
    assert default_home(4, 3) == default_home(4)
    assert default_home(4, 2) == Path.home() / ".bft" / "cluster-4-two-chain"


@pytest.mark.parametrize(
    ("argv", "commit_chain", "quorum_store", "reputation"),
    [
        ([], 3, False, False),
        (["--commit-chain", "2"], 2, False, False),
        (["--quorum-store"], 3, True, False),
        (["--leader-reputation"], 3, False, True),
    ],
)
def test_the_cluster_command_runs_the_genesis_asked_for_in_its_default_home(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], commit_chain: int, quorum_store: bool, reputation: bool
) -> None:
    calls: list[tuple[Any, ...]] = []

    async def fake_run_cluster(*args: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(cluster_module, "run_cluster", fake_run_cluster)
    assert main(["cluster", *argv]) == 0
    ((home, nodes, *_, passed_chain, passed_store, passed_reputation),) = calls
    expected = (
        default_home(4, commit_chain, quorum_store, reputation),
        4,
        commit_chain,
        quorum_store,
        reputation,
    )
    assert (home, nodes, passed_chain, passed_store, passed_reputation) == expected


def test_the_chaos_cluster_refuses_the_two_chain(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["cluster", "--chaos", "--commit-chain", "2", "--home", str(tmp_path / "run")]) == 2
    assert "--chaos runs the three-chain rule only" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_cluster_home_of_the_other_rule_is_refused_before_any_node_starts(tmp_path: Path) -> None:
    home = tmp_path / "cluster"
    write_testnet(4, home, free_base_port(8), commit_chain=3)
    output = io.StringIO()
    console = Console(file=output, width=200)
    assert trio.run(run_cluster, home, 4, 40000, {}, console, 2) == EXIT_REFUSED
    assert f"{home} holds a cluster of commit chain 3; pass --commit-chain 3, or --home" in output.getvalue()
    assert not any((home / f"node{i}" / "stderr.log").exists() for i in range(4))
