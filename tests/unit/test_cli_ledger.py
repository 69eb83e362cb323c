"""`bft submit`, `bft get`, `bft status` and `bft block`: parsing, output and exit codes, against
the fake node of the client's tests (its clients are swapped in for the real one)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from core_helpers import CHAIN, KEYS
from test_client import B1, GAPPED, GENESIS, STRANGERS, URL, FakeNode, block_doc, genesis_for

from bft import cli_ledger
from bft.app.kv import cas_tx, del_tx, put_tx
from bft.client import Client, tx_hash
from bft.node.config import Genesis, load_cluster_defaults, write_genesis


class Bft:
    """Runs the ledger subcommands through a parser like `bft`'s, against `node`."""

    def __init__(self, node: FakeNode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
        self.node = node
        self.capsys = capsys
        self.urls: list[str] = []
        self.genesis: list[Genesis | None] = []
        monkeypatch.setattr(cli_ledger, "_open_client", self._open)

    def _open(self, url: str, genesis: Genesis | None = None) -> Client:
        self.urls.append(url)
        self.genesis.append(genesis)
        return Client(url, genesis, transport=httpx.MockTransport(self.node.handle))

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        parser = argparse.ArgumentParser(prog="bft")
        cli_ledger.add_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        code: int = args.run(args)
        out, err = self.capsys.readouterr()
        return code, out, err

    def sent_txs(self, index: int = -1) -> list[bytes]:
        return [base64.b64decode(tx) for tx in self.node.sent_json(index)["txs"]]


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def bft(node: FakeNode, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Bft:
    return Bft(node, monkeypatch, capsys)


def lines(out: str) -> list[Any]:
    return [json.loads(line) for line in out.splitlines()]


# submit


def test_submit_put_waits_for_commit_and_prints_one_json_line(node: FakeNode, bft: Bft) -> None:
    node.accept_all("committed", height=4)
    code, out, err = bft("submit", "--node", URL, "put", "color", "blue")
    assert (code, err) == (0, "")
    assert bft.sent_txs() == [put_tx("color", "blue")]
    assert node.sent_json()["wait"] == "commit"
    assert lines(out) == [{"hash": tx_hash(put_tx("color", "blue")), "status": "committed", "height": 4}]


@pytest.mark.parametrize(
    ("argv", "tx"),
    [
        (["del", "k", "--nonce", "7"], del_tx("k", "7")),
        (["cas", "k", "old", "new"], cas_tx("k", "old", "new")),
        (["cas", "k", "new", "--absent"], cas_tx("k", None, "new")),
        (["--absent", "cas", "k", "new"], cas_tx("k", None, "new")),
        (["put", "k", "-1"], put_tx("k", "-1")),
        (["put", "--", "-k", "--v"], put_tx("-k", "--v")),
    ],
)
def test_submit_operation_words(node: FakeNode, bft: Bft, argv: list[str], tx: bytes) -> None:
    node.accept_all()
    code, _, _ = bft("submit", "--node", URL, *argv)
    assert code == 0 and bft.sent_txs() == [tx]


def test_submit_json_transactions_in_the_canonical_form(node: FakeNode, bft: Bft) -> None:
    # However it is written, an operation is sent as the bytes `bft submit put ...` sends:
    # identical operations from any of our tools are one transaction.
    node.accept_all()
    txs = ['{"op":"put","key":"ключ","value":"1"}', '{"op": "del", "key": "b", "nonce": 7}']
    code, out, _ = bft("submit", "--node", URL, "--wait", "none", *txs)
    assert code == 0
    assert bft.sent_txs() == [put_tx("ключ", "1"), del_tx("b", 7)]
    assert node.sent_json()["wait"] == "none"
    assert [r["status"] for r in lines(out)] == ["accepted", "accepted"]
    bft("submit", "--node", URL, "put", "ключ", "1")
    assert bft.sent_txs() == [put_tx("ключ", "1")]


def test_submit_raw_sends_json_transactions_as_their_utf8_bytes(node: FakeNode, bft: Bft) -> None:
    node.accept_all()
    txs = ['{"op":"put","key":"ключ","value":"1"}', '{"op": "del", "key": "b", "nonce": 7}', '{"op":"x"}']
    code, out, _ = bft("submit", "--node", URL, "--raw", *txs)
    assert code == 0 and bft.sent_txs() == [tx.encode("utf-8") for tx in txs]
    assert [r["hash"] for r in lines(out)] == [tx_hash(tx.encode("utf-8")) for tx in txs]


def test_raw_goes_with_json_transactions_only(node: FakeNode, bft: Bft) -> None:
    code, out, err = bft("submit", "--node", URL, "--raw", "put", "a", "1")
    assert (code, out) == (2, "") and err == "bft submit: --raw goes with JSON transactions\n"
    assert node.requests == []


def test_submit_committed_prints_where_and_the_result_code(node: FakeNode, bft: Bft) -> None:
    tx = put_tx("a", "1")
    result = {"hash": tx_hash(tx), "status": "committed", "height": 4, "index": 1, "code": 0}
    node.on("POST", "/txs", body={"results": [result]})
    code, out, err = bft("submit", "--node", URL, "put", "a", "1")
    assert (code, err) == (0, "") and lines(out) == [result]


def test_submit_of_a_cas_the_ledger_refused_shows_its_log_and_exits_3(node: FakeNode, bft: Bft) -> None:
    # Committed (it is in the chain, and stays there) but not applied: the cas expected "wrong".
    tx = cas_tx("k", "wrong", "new")
    log = "cas mismatch: current value differs"
    result = {"hash": tx_hash(tx), "status": "committed", "height": 9, "index": 0, "code": 3, "log": log}
    node.on("POST", "/txs", body={"results": [result]})
    code, out, err = bft("submit", "--node", URL, "cas", "k", "wrong", "new")
    assert code == 3 and lines(out) == [result]
    assert err == (
        f"bft submit: transaction {tx_hash(tx)} committed at height 9 but the application refused it"
        f" (code 3): {log}\n"
    )


def test_a_rejected_transaction_outranks_a_refused_one(node: FakeNode, bft: Bft) -> None:
    txs = [cas_tx("k", "wrong", "new"), b'{"op":"put","key":"b"}']
    results = [
        {"hash": tx_hash(txs[0]), "status": "committed", "height": 9, "index": 0, "code": 3, "log": "no"},
        {"hash": tx_hash(txs[1]), "status": "rejected", "error": "missing field value"},
    ]
    node.on("POST", "/txs", body={"results": results})
    code, out, _ = bft("submit", "--node", URL, *(tx.decode() for tx in txs))
    assert code == 1 and lines(out) == results


def test_submit_exits_1_if_any_transaction_is_rejected(node: FakeNode, bft: Bft) -> None:
    txs = ['{"op":"put","key":"a","value":"1"}', '{"op":"put","key":"b"}']
    results = [
        {"hash": tx_hash(put_tx("a", "1")), "status": "accepted"},
        # Not a valid operation, so not rewritten: sent as typed, for the node to say why not.
        {"hash": tx_hash(txs[1].encode()), "status": "rejected", "error": "missing field value"},
    ]
    node.on("POST", "/txs", body={"results": results})
    code, out, _ = bft("submit", "--node", URL, *txs)
    assert code == 1 and lines(out) == results


def test_submit_with_a_full_mempool_prints_the_retry_hint_and_exits_1(node: FakeNode, bft: Bft) -> None:
    full = {"hash": tx_hash(put_tx("a", "1")), "status": "rejected", "error": "mempool full"}
    node.on("POST", "/txs", 503, {"results": [full]}, headers={"Retry-After": "3"})
    code, out, _ = bft("submit", "--node", URL, "put", "a", "1")
    assert code == 1 and lines(out) == [{**full, "retry_after_s": 3.0}]


# The README's hand-made transaction (Quickstart): these strings are copied into README.md, so a
# user who follows it with curl sends the bytes `bft submit put greeting hello` sends (one
# transaction, not two). The cluster test of the ledger submits both ways to real nodes.
README_PUT_JSON = '{"key":"greeting","op":"put","value":"hello"}'
README_PUT_SHELL = "printf '%s' '" + README_PUT_JSON + "' | base64 -w0"
README_PUT_B64 = "eyJrZXkiOiJncmVldGluZyIsIm9wIjoicHV0IiwidmFsdWUiOiJoZWxsbyJ9"
README_PUT_HASH = "29fe4c39e9ead5efd6c947fb4a933aa112eb2034a24f27a91c6cd167aecf942d"


def test_the_readmes_hand_made_put_is_what_bft_submit_sends(node: FakeNode, bft: Bft) -> None:
    tx = put_tx("greeting", "hello")
    assert README_PUT_JSON.encode("utf-8") == tx
    assert base64.b64decode(README_PUT_B64, validate=True) == tx
    assert hashlib.sha256(tx).hexdigest() == README_PUT_HASH
    node.accept_all()
    bft("submit", "--node", URL, "put", "greeting", "hello")
    assert node.sent_json()["txs"] == [README_PUT_B64]
    bft("submit", "--node", URL, '{"op": "put", "key": "greeting", "value": "hello"}')
    assert node.sent_json()["txs"] == [README_PUT_B64]


@pytest.mark.skipif(shutil.which("base64") is None, reason="needs coreutils base64, as the README does")
def test_the_readmes_shell_line_prints_the_same_base64() -> None:
    made = subprocess.run(
        ["sh", "-c", README_PUT_SHELL], capture_output=True, text=True, timeout=10, check=True
    )
    assert made.stdout == README_PUT_B64


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["put", "a"], "put takes KEY VALUE, got 1 word(s)"),
        (["del"], "del takes KEY, got 0 word(s)"),
        (["cas", "k", "v"], "cas takes KEY EXPECT VALUE, got 2 word(s)"),
        (["cas", "k", "a", "b", "--absent"], "cas takes KEY VALUE (with --absent), got 3 word(s)"),
        (["put", "k", "v", "--absent"], "--absent goes with cas"),
        (["pt", "a", "1"], "'pt' is neither put, del or cas nor a JSON transaction object"),
        (["[1, 2]"], "is neither"),
        (['{"op":"put","key":"a","value":"1"}', "--nonce", "1"], "--nonce and --absent go with put"),
        (["put", "\udcff", "v"], "must be valid UTF-8"),
    ],
)
def test_submit_usage_errors_exit_2_with_one_line(
    node: FakeNode, bft: Bft, argv: list[str], complaint: str
) -> None:
    code, out, err = bft("submit", "--node", URL, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("bft submit: ") and complaint in err and err.count("\n") == 1
    assert node.requests == []


@pytest.mark.parametrize("argv", [["submit", "--node", URL], ["submit", "--wait", "later", "put", "a", "1"]])
def test_argparse_usage_errors_exit_2(bft: Bft, argv: Sequence[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bft(*argv)
    assert info.value.code == 2


def test_a_node_that_cannot_be_reached_exits_2(monkeypatch: pytest.MonkeyPatch, bft: Bft) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    monkeypatch.setattr(bft.node, "handle", refuse)
    code, out, err = bft("submit", "--node", URL, "put", "a", "1")
    assert (code, out) == (2, "")
    assert err.startswith("bft submit: POST http://node.test:26601/txs: cannot reach the node")
    assert err.count("\n") == 1


def test_a_refusal_exits_2_with_the_nodes_message(node: FakeNode, bft: Bft) -> None:
    node.on("POST", "/txs", 413, {"error": "body too large"})
    code, _, err = bft("submit", "--node", URL, "put", "a", "1")
    assert code == 2 and "HTTP 413" in err and "body too large" in err


def test_without_node_the_local_clusters_node_0_is_used(node: FakeNode, bft: Bft) -> None:
    node.on("GET", "/status", body={"node": 0})
    code, _, _ = bft("status")
    defaults = load_cluster_defaults()
    assert code == 0
    assert bft.urls == [cli_ledger.default_node_url()]
    assert cli_ledger.default_node_url() == f"http://{defaults.host}:{defaults.base_port + 1}"
    assert cli_ledger.default_node_url() == "http://127.0.0.1:26601"  # configs/local-4.toml as committed


# get, status


def test_get_prints_the_entry(node: FakeNode, bft: Bft) -> None:
    node.on("GET", "/kv/a%20b", body={"key": "a b", "value": "ü", "height": 9})
    code, out, err = bft("get", "--node", URL, "a b")
    assert (code, err) == (0, "")
    assert lines(out) == [{"key": "a b", "value": "ü", "height": 9}]


def test_get_of_an_absent_key_exits_1(bft: Bft) -> None:
    code, out, err = bft("get", "--node", URL, "missing")
    assert (code, out, err) == (1, "", "bft get: key 'missing' is not set\n")


def test_status_prints_the_status_pretty(node: FakeNode, bft: Bft) -> None:
    status = {
        "node": 2,
        "chain_id": "c",
        "view": 5,
        "height": 3,
        "leader": 1,
        "last_block_id": "ab",
        "peers": 3,
    }
    node.on("GET", "/status", body=status)
    code, out, _ = bft("status", "--node", URL)
    assert code == 0 and json.loads(out) == status and out.count("\n") > 1


# block


def runs_chain(node: FakeNode, chain_id: str = CHAIN) -> None:
    """The fake node's GET /status, naming the chain it runs, as every node's does."""
    node.on("GET", "/status", body={"node": 0, "chain_id": chain_id, "view": 9, "height": 5})


@pytest.fixture
def genesis_file(node: FakeNode, tmp_path: Path) -> Path:
    runs_chain(node)
    path = tmp_path / "genesis.json"
    write_genesis(path, GENESIS)
    return path


def cluster_home(home: Path, nodes: int, genesis: Genesis) -> None:
    """A `bft cluster` data directory under $HOME = `home`, holding `genesis`."""
    path = home / ".bft" / f"cluster-{nodes}" / "genesis.json"
    path.parent.mkdir(parents=True)
    write_genesis(path, genesis)


def test_block_prints_a_verified_block(node: FakeNode, bft: Bft, genesis_file: Path) -> None:
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, out, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "1")
    assert (code, err) == (0, "")
    # Everything the client checked, the commit proof included, so that anyone can check it again.
    assert json.loads(out) == block_doc(B1)
    assert [entry["height"] for entry in json.loads(out)["commit_proof"]] == [2, 3]
    # First the node's chain id (no genesis needed to ask), then the block against that chain's.
    assert bft.genesis == [None, GENESIS]


def test_a_certified_block_that_is_not_proven_committed_exits_1(
    node: FakeNode, bft: Bft, genesis_file: Path
) -> None:
    node.on("GET", "/blocks/1", body=block_doc(GAPPED[0], proof=GAPPED[1:3]))
    code, out, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "1")
    assert (code, out) == (1, "")
    assert err == (
        f"bft block: {URL} sent a block that does not verify: block 1: commit proof: views 1, 2, 4 are"
        " not consecutive (blocks 1, 2, 3 are certified, not a three-chain)\n"
    )


def test_a_block_without_a_commit_proof_exits_1(node: FakeNode, bft: Bft, genesis_file: Path) -> None:
    node.on("GET", "/blocks/1", body=block_doc(B1, proof=()))
    code, out, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "1")
    assert (code, out) == (1, "") and err.endswith(
        "block 1: commit proof: missing (a certified block is not proven committed without it)\n"
    )


def test_block_whose_qc_does_not_verify_exits_1(node: FakeNode, bft: Bft, tmp_path: Path) -> None:
    # The node's keys are not the ones this genesis of its chain lists: every signature is a
    # forgery to it.
    runs_chain(node)
    path = tmp_path / "other.json"
    write_genesis(path, genesis_for(reversed(KEYS)))
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, out, err = bft("block", "--node", URL, "--genesis", str(path), "1")
    assert (code, out) == (1, "")
    assert err.startswith(
        f"bft block: {URL} sent a block that does not verify: block 1: the QC does not verify"
    )
    assert err.count("\n") == 1


def test_block_above_the_tip_exits_1(bft: Bft, genesis_file: Path) -> None:
    code, _, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "50")
    assert (code, err) == (1, "bft block: no committed block at height 50\n")


def test_block_with_an_unreadable_genesis_exits_2(node: FakeNode, bft: Bft, tmp_path: Path) -> None:
    runs_chain(node)
    code, _, err = bft("block", "--node", URL, "--genesis", str(tmp_path / "none.json"), "1")
    assert code == 2 and err.startswith(f"bft block: {tmp_path / 'none.json'}") and "not found" in err


def test_block_defaults_to_the_local_clusters_genesis(
    node: FakeNode, bft: Bft, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli_ledger.default_genesis_path() == tmp_path / ".bft" / "cluster-4" / "genesis.json"
    cluster_home(tmp_path, 4, GENESIS)
    runs_chain(node)
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, _, _ = bft("block", "--node", URL, "1")
    assert code == 0 and bft.genesis == [None, GENESIS]


def test_block_finds_the_genesis_of_the_nodes_chain_among_the_cluster_homes(
    node: FakeNode, bft: Bft, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default 4-node cluster runs another chain; the node asked is one of `bft cluster --nodes 7`.
    monkeypatch.setenv("HOME", str(tmp_path))
    cluster_home(tmp_path, 4, genesis_for(STRANGERS, "bft-local-4"))
    cluster_home(tmp_path, 7, GENESIS)
    runs_chain(node)
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, out, err = bft("block", "--node", URL, "1")
    assert (code, err) == (0, "")
    assert json.loads(out) == block_doc(B1) and bft.genesis == [None, GENESIS]


def test_block_without_a_genesis_of_the_nodes_chain_demands_one(
    node: FakeNode, bft: Bft, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before, the default cluster's genesis was used whatever the node ran, and the node's
    # signatures were blamed ("does not verify").
    monkeypatch.setenv("HOME", str(tmp_path))
    cluster_home(tmp_path, 4, genesis_for(STRANGERS, "bft-local-4"))
    runs_chain(node, "bft-testnet-0a1b2c3d")
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, out, err = bft("block", "--node", URL, "1")
    assert (code, out) == (2, "")
    assert err == (
        f"bft block: {URL} runs chain bft-testnet-0a1b2c3d, and no known genesis is that chain's "
        f"(looked in {tmp_path}/.bft/cluster-*/genesis.json: found chain bft-local-4); pass the "
        "chain's genesis with --genesis FILE (DIR/genesis.json of `bft testnet --out DIR`)\n"
    )
    assert [r.url.path for r in node.requests] == ["/status"]


def test_block_with_the_genesis_of_another_chain_says_so(node: FakeNode, bft: Bft, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis_for(KEYS, "bft-testnet-ffff0000"))
    runs_chain(node)
    node.on("GET", "/blocks/1", body=block_doc(B1))
    code, out, err = bft("block", "--node", URL, "--genesis", str(path), "1")
    assert (code, out) == (2, "")
    assert err == (
        f"bft block: {path} is the genesis of chain bft-testnet-ffff0000, but {URL} runs chain "
        f"{CHAIN}: pass that chain's genesis with --genesis FILE\n"
    )
    assert [r.url.path for r in node.requests] == ["/status"]


def test_block_from_a_node_that_does_not_name_its_chain_exits_2(
    node: FakeNode, bft: Bft, genesis_file: Path
) -> None:
    node.on("GET", "/status", body={"node": 0, "view": 1})
    code, out, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "1")
    assert (code, out) == (2, "")
    assert err == f"bft block: {URL}/status has no chain_id: is it a bft node?\n"


def test_a_negative_height_is_a_usage_error(bft: Bft, genesis_file: Path) -> None:
    code, _, err = bft("block", "--node", URL, "--genesis", str(genesis_file), "--", "-1")
    assert (code, err) == (2, "bft block: HEIGHT must be >= 0\n")


def test_a_node_url_that_is_not_http_exits_2(bft: Bft, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bft("status", "--node", "ftp://node.test")
    assert info.value.code == 2
    assert "bft status: error: argument --node: not a node URL: 'ftp://node.test'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["get", "k"], ["submit", "put", "a", "1"], ["block", "1"]])
def test_a_node_url_with_a_path_is_refused_before_any_request(
    node: FakeNode, bft: Bft, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    # The client appends /kv/KEY... to the base: a path would turn every 404 into "absent".
    with pytest.raises(SystemExit) as info:
        bft(command[0], "--node", URL + "/api", *command[1:])
    assert info.value.code == 2
    assert f"argument --node: not a node URL: '{URL}/api' (a node URL has no path" in capsys.readouterr().err
    assert node.requests == [] and bft.urls == []
