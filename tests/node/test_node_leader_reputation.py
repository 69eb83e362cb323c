"""The genesis' `"leader_reputation"` (`bft.node.config`, `bft.core.reputation`): optional, a JSON
boolean, written only when true, and what `bft testnet --leader-reputation` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from core_helpers import KEYS

from bft.cli import main
from bft.node.config import Genesis, genesis_to_json, load_genesis, load_node_config
from bft.node.errors import ConfigError


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
