"""The ledger subcommands of `bft`: `submit`, `get`, `status` and `block`, through `bft.client`.

Owns: their arguments, their output (JSON on stdout, one-line errors on stderr) and exit codes:
0 done; 1 the node's answer is "no" (a transaction rejected, a key or block absent, a block that
does not verify); 2 a usage, configuration or connection problem; 3 (`bft submit`) a transaction
committed but refused by the application (a result code other than 0, e.g. a failed cas): it is
in the chain and changed nothing, which a script must not take for success, nor for a rejection
that resubmitting could fix.
May not: speak HTTP or read responses itself (`bft.client` does), or encode transactions
(`bft.app.kv` does: every transaction is sent in its canonical form, unless `--raw` says not
to). It imports `bft.client`, hence httpx, only when one of its commands runs, so that the rest
of `bft` starts without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bft.client import Client, SubmitResult
    from bft.node.config import Genesis

# `bft submit`: committed, but the application refused it (a result code other than 0).
EXIT_REFUSED = 3

_OPS = {"put": ("KEY VALUE", 2), "del": ("KEY", 1), "cas": ("KEY EXPECT VALUE", 3)}

_SUBMIT_EPILOG = """\
Each TX is a transaction of the key-value ledger as JSON, sent in the ledger's canonical form
(fields sorted, no spaces: the bytes the words below send), or as typed with --raw:
  bft submit '{"op":"put","key":"a","value":"1"}' '{"op":"del","key":"b","nonce":7}'
or else the words of one operation:
  bft submit put KEY VALUE
  bft submit del KEY
  bft submit cas KEY EXPECT VALUE      set KEY to VALUE if its value is EXPECT
  bft submit cas KEY VALUE --absent    set KEY to VALUE if KEY is absent
(put `--` before words that start with a dash). Prints one JSON line per transaction:
{"hash", "status": "accepted"|"committed"|"rejected", "height"?, "index"?, "code"?, "log"?,
"error"?}; a committed transaction's "code" is the ledger's result, 0 applied, else refused
("log" says why; 3: a cas whose expectation failed), and each refusal gets a line on stderr.
Exit status: 0 all accepted or applied, 1 any rejected, 2 usage or connection error, 3 none
rejected but some committed with a result code other than 0 (in the chain, not applied)."""


class _Usage(Exception):
    """A command line that cannot be run; the message says why."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `submit`, `get`, `status` and `block` to the `bft` command's subcommands."""
    submit = commands.add_parser(
        "submit",
        help="submit transactions to a node",
        description="Submit transactions to a node's mempool and print what became of each.",
        epilog=_SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_node_option(submit)
    submit.add_argument(
        "--wait",
        choices=("none", "commit"),
        default="commit",
        help="answer once the transactions are committed (default) or once accepted (none)",
    )
    submit.add_argument("--nonce", default=None, help="with put/del/cas: makes a repeated operation new")
    submit.add_argument("--absent", action="store_true", help="with cas: expect KEY to be absent")
    submit.add_argument(
        "--raw",
        action="store_true",
        help="send JSON transactions byte for byte as typed, not in the canonical form",
    )
    submit.add_argument(
        "words", nargs="+", metavar="TX", help="JSON transactions, or put/del/cas and its words"
    )
    submit.set_defaults(run=_command("submit", _run_submit))

    get = commands.add_parser(
        "get",
        help="read a key of the committed key-value state",
        description='Print {"key", "value", "height"} as JSON; exit 1 if the key is absent.',
    )
    _add_node_option(get)
    get.add_argument("key", metavar="KEY")
    get.set_defaults(run=_command("get", _run_get))

    status = commands.add_parser(
        "status",
        help="print a node's status",
        description="Print the node's status (view, committed height, leader, peers...) as JSON.",
    )
    _add_node_option(status)
    status.set_defaults(run=_command("status", _run_status))

    block = commands.add_parser(
        "block",
        help="print a committed block after verifying its certificates and its commit",
        description=(
            "Fetch the committed block at HEIGHT, check that its contents hash to its id, that its "
            "QC carries 2f+1 valid signatures of the genesis validators over that id, and that it is "
            "committed: its commit proof links it to a commit chain of consecutive views, of the "
            'genesis\' rule (a three-chain, or a two-chain if the genesis says "commit_chain": 2), '
            "whose last block is certified by the commit QC, checked against the same validators. "
            "Print it as JSON, proof included. Exit 1 if the block is absent or does not verify. The "
            "validators and the rule are those of the genesis of the chain the node runs (its /status "
            "names the chain): --genesis FILE, else the one among the local clusters' "
            "(~/.bft/cluster-N/genesis.json) "
            "that is that chain's; exit 2 if none is."
        ),
    )
    _add_node_option(block)
    block.add_argument(
        "--genesis",
        type=Path,
        default=None,
        help="the genesis.json of the node's chain (default: the local cluster's of that chain, "
        "~/.bft/cluster-N/genesis.json)",
    )
    block.add_argument("height", type=int, metavar="HEIGHT")
    block.set_defaults(run=_command("block", _run_block))


def _add_node_option(parser: argparse.ArgumentParser) -> None:
    from bft.cli_args import node_url

    parser.add_argument(
        "--node",
        type=node_url,
        default=None,
        metavar="URL",
        help="the node's API (default: node 0 of the local cluster in configs/local-4.toml)",
    )


def default_node_url() -> str:
    """The API of node 0 of the committed local cluster (port base_port + 1, as `bft testnet` lays out)."""
    from bft.node.config import format_host_port, load_cluster_defaults

    defaults = load_cluster_defaults()
    return "http://" + format_host_port(defaults.host, defaults.base_port + 1)


def default_genesis_path() -> Path:
    """Where `bft cluster` keeps the genesis of the default local cluster."""
    from bft.node.cluster import default_home
    from bft.node.config import GENESIS_FILE_NAME, load_cluster_defaults

    return default_home(load_cluster_defaults().nodes) / GENESIS_FILE_NAME


def known_genesis_paths() -> list[Path]:
    """Where `bft block` looks for a chain's genesis unless told: the default local cluster's
    first, then every other `bft cluster` data directory's (~/.bft/cluster-N), by name."""
    default = default_genesis_path()
    others = sorted(default.parent.parent.glob(f"cluster-*/{default.name}"))
    return [default, *(p for p in others if p != default)]


def genesis_of_chain(chain_id: str, url: str, explicit: Path | None) -> Genesis:
    """The genesis of `chain_id`, the chain the node at `url` runs: `explicit` if given (refused
    if it is another chain's), else the first of `known_genesis_paths` that is that chain's.
    `_Usage` naming the chain if there is none: verifying against another chain's validators
    would only blame the node's signatures."""
    from bft.node.config import load_genesis
    from bft.node.errors import NodeError

    if explicit is not None:
        genesis = load_genesis(explicit)
        if genesis.chain_id != chain_id:
            raise _Usage(
                f"{explicit} is the genesis of chain {genesis.chain_id}, but {url} runs chain "
                f"{chain_id}: pass that chain's genesis with --genesis FILE"
            )
        return genesis
    found: list[str] = []
    for path in known_genesis_paths():
        if not path.is_file():
            continue
        try:
            genesis = load_genesis(path)
        except NodeError:
            continue  # an unreadable one is not this chain's either; --genesis FILE still works
        if genesis.chain_id == chain_id:
            return genesis
        found.append(genesis.chain_id)
    where = default_genesis_path().parent.parent / f"cluster-*/{default_genesis_path().name}"
    seen = f"found chain{'s' if len(found) > 1 else ''} {', '.join(found)}" if found else "none there"
    raise _Usage(
        f"{url} runs chain {chain_id}, and no known genesis is that chain's (looked in {where}: "
        f"{seen}); pass the chain's genesis with --genesis FILE (DIR/genesis.json of "
        "`bft testnet --out DIR`)"
    )


def _open_client(url: str, genesis: Genesis | None = None) -> Client:
    from bft.client import Client

    return Client(url, genesis)


def _client(args: argparse.Namespace, genesis: Genesis | None = None) -> Client:
    return _open_client(args.node if args.node is not None else default_node_url(), genesis)


def _command(name: str, body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`body` with its expected failures turned into a one-line message and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        from bft.client import ClientError
        from bft.node.errors import NodeError

        try:
            return body(args)
        except (_Usage, ClientError, NodeError) as exc:
            print(f"bft {name}: {exc}", file=sys.stderr)
            return 2

    return run


# submit


def transactions_from(
    words: Sequence[str], nonce: str | None = None, absent: bool = False, raw: bool = False
) -> list[bytes]:
    """The transactions a `bft submit` command line means (see its --help); `_Usage` if none."""
    from bft.app.kv import cas_tx, del_tx, put_tx

    op, rest = words[0], list(words[1:])
    if op in _OPS:
        if raw:
            raise _Usage("--raw goes with JSON transactions")
        shape, arity = _OPS[op]
        if op == "cas" and absent:
            shape, arity = "KEY VALUE (with --absent)", 2
        elif absent:
            raise _Usage("--absent goes with cas")
        if len(rest) != arity:
            raise _Usage(f"{op} takes {shape}, got {len(rest)} word(s)")
        try:
            if op == "put":
                return [put_tx(rest[0], rest[1], nonce)]
            if op == "del":
                return [del_tx(rest[0], nonce)]
            expect, value = (None, rest[1]) if absent else (rest[1], rest[2])
            return [cas_tx(rest[0], expect, value, nonce)]
        except UnicodeEncodeError:
            raise _Usage(f"{op}: the key and value must be valid UTF-8") from None
    if nonce is not None or absent:
        raise _Usage("--nonce and --absent go with put, del or cas")
    return [_json_tx(word, raw) for word in words]


def _json_tx(word: str, raw: bool) -> bytes:
    from bft.app.kv import Rejection, canonical_tx

    try:
        doc = json.loads(word)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise _Usage(f"{word!r} is neither put, del or cas nor a JSON transaction object")
    try:
        typed = word.encode("utf-8")
    except UnicodeEncodeError:
        raise _Usage(f"{word!r} is not valid UTF-8") from None
    if raw:
        return typed
    canonical = canonical_tx(typed)
    # Not a valid operation: sent as typed, so that the node's refusal says what is wrong with it.
    return typed if isinstance(canonical, Rejection) else canonical


def result_json(result: SubmitResult) -> dict[str, Any]:
    """A submit result as the API writes it (absent fields left out), plus the retry hint if any."""
    doc: dict[str, Any] = {"hash": result.hash, "status": result.status}
    if result.height is not None:
        doc["height"] = result.height
    if result.index is not None:
        doc["index"] = result.index
    if result.code is not None:
        doc["code"] = result.code
    if result.log is not None:
        doc["log"] = result.log
    if result.error is not None:
        doc["error"] = result.error
    if result.retry_after_s is not None:
        doc["retry_after_s"] = result.retry_after_s
    return doc


def _run_submit(args: argparse.Namespace) -> int:
    from bft.client import STATUS_REJECTED

    txs = transactions_from(args.words, args.nonce, args.absent, args.raw)
    with _client(args) as client:
        results = client.submit(txs, wait=args.wait)
    for result in results:
        print(json.dumps(result_json(result), ensure_ascii=False))
    refused = [r for r in results if r.committed and r.code is not None and not r.applied]
    for result in refused:
        print(
            f"bft submit: transaction {result.hash} committed at height {result.height} but the"
            f" application refused it (code {result.code}): {result.log or 'no reason given'}",
            file=sys.stderr,
        )
    if any(r.status == STATUS_REJECTED for r in results):
        return 1
    return EXIT_REFUSED if refused else 0


# get, status, block


def _run_get(args: argparse.Namespace) -> int:
    if not args.key:
        raise _Usage("KEY must not be empty")
    with _client(args) as client:
        entry = client.get(args.key)
    if entry is None:
        print(f"bft get: key {args.key!r} is not set", file=sys.stderr)
        return 1
    doc = {"key": entry.key, "value": entry.value, "height": entry.height}
    print(json.dumps(doc, ensure_ascii=False))
    return 0


def _run_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.status()
    print(json.dumps(status, indent=2, ensure_ascii=False))
    return 0


def _run_block(args: argparse.Namespace) -> int:
    from bft.client import CertificateError

    if args.height < 0:
        raise _Usage("HEIGHT must be >= 0")
    url = args.node if args.node is not None else default_node_url()
    # Which chain the node runs decides which validators its certificates are checked against.
    with _open_client(url) as plain:
        chain_id = plain.status().get("chain_id")
    if not isinstance(chain_id, str) or not chain_id:
        raise _Usage(f"{url}/status has no chain_id: is it a bft node?")
    genesis = genesis_of_chain(chain_id, url, args.genesis)
    with _open_client(url, genesis) as client:
        try:
            block = client.block(args.height)
        except CertificateError as exc:
            print(f"bft block: {client.url} sent a block that does not verify: {exc}", file=sys.stderr)
            return 1
    if block is None:
        print(f"bft block: no committed block at height {args.height}", file=sys.stderr)
        return 1
    print(json.dumps(block.to_json(), indent=2))
    return 0
