"""`bft` refuses command lines that cannot mean anything: a nonsensical count, port or URL, or
options that would be silently ignored, are a usage error (argparse's message naming the argument,
exit 2) before anything runs; too many Byzantine behaviours state the bound n >= 3f + 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from bft.cli import main


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["testnet", "--nodes", "0", "--out", "x"], "argument --nodes: must be at least 1, got 0"),
        (["testnet", "--nodes", "4", "--out", "x", "--base-port", "-5"], "argument --base-port: a port"),
        (["testnet", "--nodes", "4", "--out", "x", "--base-port", "70000"], "argument --base-port: a port"),
        (["cluster", "--nodes", "0"], "argument --nodes: must be at least 1, got 0"),
        (["cluster", "--base-port", "0"], "argument --base-port: a port is 1..65535, got 0"),
        (["sim", "--seeds", "0"], "argument --seeds: must be at least 1, got 0"),
        (["sim", "--seeds", "-1"], "argument --seeds: must be at least 1, got -1"),
        (["sim", "--nodes", "0"], "argument --nodes: must be at least 1, got 0"),
        (["sim", "--nodes", "-4"], "argument --nodes: must be at least 1, got -4"),
        (["sim", "--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
        (["sim", "--first-seed", "-1"], "argument --first-seed: must be 0 or more, got -1"),
        (["status", "--node", "http://127.0.0.1:26601/kv"], "argument --node: not a node URL"),
        (["get", "--node", "http://127.0.0.1:26601/x", "k"], "argument --node: not a node URL"),
        (["submit", "--node", "http://h:1?q", "put", "a", "b"], "argument --node: not a node URL"),
        (["block", "--node", "http://h:1/blocks", "1"], "argument --node: not a node URL"),
    ],
)
def test_commands_refuse_nonsense_arguments(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert f"bft {argv[0]}: error: {complaint}" in err


def test_sim_trace_needs_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["sim", "--seeds", "1", "--trace", "--quiet"], capsys)
    assert "bft sim: error: --trace needs --seed N" in err


@pytest.mark.parametrize("extra", [["--seeds", "5"], ["--first-seed", "3"], ["--jobs", "2"]])
def test_sim_one_seed_refuses_campaign_options(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # They would be silently ignored: `--seed` replays one schedule in this process.
    err = _usage_error(["sim", "--seed", "3", *extra], capsys)
    assert f"bft sim: error: --seed replays one schedule; {extra[0]} is for a campaign" in err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["sim", "--nodes", "4", "--byzantine", "silent,omit"],
            "2 Byzantine behaviours need at least 7 nodes (n >= 3f + 1); 4 nodes tolerate f = 1",
        ),
        (
            ["sim", "--nodes", "3", "--byzantine", "silent"],
            "1 Byzantine behaviour needs at least 4 nodes (n >= 3f + 1); 3 nodes tolerate f = 0",
        ),
        (
            ["cluster", "--nodes", "2", "--byzantine", "silent"],
            "1 Byzantine behaviour needs at least 4 nodes (n >= 3f + 1); 2 nodes tolerate f = 0",
        ),
    ],
)
def test_too_many_byzantine_behaviours_state_the_bound(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.replace("\n", " ").strip() == f"bft {argv[0]}: {complaint}"


def test_cluster_refuses_a_home_that_holds_something_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "notes"
    home.mkdir()
    (home / "todo.txt").write_text("mine\n")
    # Refused before any node process starts: nothing of the cluster is written either.
    assert main(["cluster", "--home", str(home), "--base-port", "40000"]) == 2
    assert capsys.readouterr().err == (
        f"bft cluster: {home} is not empty and holds no testnet (it has todo.txt); refusing to "
        "write into it: choose a new or empty directory\n"
    )
    assert [p.name for p in home.iterdir()] == ["todo.txt"]


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["hostile", "--api", "127.0.0.1:1", "--duration", "-1"], "argument --duration: must be more than 0"),
        (["hostile", "--api", "127.0.0.1:1", "--duration", "nan"], "argument --duration: expected a finite"),
        (
            ["hostile", "--api", "127.0.0.1:1", "--connections", "0"],
            "argument --connections: must be at least 1",
        ),
        (["hostile", "--api", "127.0.0.1:1", "--trickle", "0"], "argument --trickle: must be more than 0"),
        (["hostile", "--api", "127.0.0.1:1", "--sources", "-2"], "argument --sources: must be 0 or more"),
        (["hostile", "--api", "127.0.0.1:1", "--block-height", "-1"], "argument --block-height: must be 0"),
        (["validator", "--home", "h", "--target", "-1"], "argument --target: must be 0 or more, got -1"),
        (["validator", "--home", "h", "--target", "1", "--rate", "-3"], "argument --rate: must be 0 or more"),
        (
            ["validator", "--home", "h", "--target", "1", "--tx-size", "0"],
            "argument --tx-size: must be at least",
        ),
        (["catalogue", "--home", "h", "--target", "-1"], "argument --target: must be 0 or more, got -1"),
    ],
)
def test_attacks_refuse_nonsense_arguments(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(["attack", *argv], capsys)
    assert f"bft attack {argv[0]}: error: {complaint}" in err


def test_attacks_refuse_a_target_the_genesis_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["testnet", "--nodes", "4", "--out", str(tmp_path / "net"), "--base-port", "41500"]) == 0
    capsys.readouterr()
    home = str(tmp_path / "net" / "node3")
    for kind in ("validator", "catalogue"):
        assert main(["attack", kind, "--home", home, "--target", "4"]) == 2
        assert "--target 4: the genesis has validators 0..3" in capsys.readouterr().err


def test_bench_refuses_a_target_url_with_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--target", "http://127.0.0.1:26601/api", "--duration", "1"]) == 2
    assert "bft bench: --target: not a node URL" in capsys.readouterr().err
