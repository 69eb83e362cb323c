"""The options of `bft bench`: their flags, defaults and checking.

Owns: `BenchOptions`, the defaults, the flags of the `bench` parser (`add_arguments`) and
`options_from_args`, which turns parsed flags into checked options or a BenchError naming the
first bad one.
May not: start, reach or measure anything; import trio, httpx, rich or the client.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bft.bench.errors import BenchError
from bft.bench.txs import check_tx_size
from bft.cli_args import node_url
from bft.cli_commit_chain import add_commit_chain_option
from bft.cli_quorum_store import add_quorum_store_option
from bft.cli_reputation import add_leader_reputation_option
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN

DEFAULT_NODES: Final = 4
DEFAULT_DURATION_S: Final = 20.0
DEFAULT_TX_SIZE_BYTES: Final = 256
DEFAULT_CLIENTS: Final = 16
DEFAULT_BATCH: Final = 50
DEFAULT_WARMUP_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class BenchOptions:
    nodes: int
    duration_s: float
    tx_size_bytes: int
    clients: int
    rate_per_s: float
    batch: int
    warmup_s: float
    targets: tuple[str, ...]
    home: Path | None
    json: bool
    # The local cluster's commit rule (its genesis' "commit_chain"); None with --target: a
    # running cluster's rule is its genesis', which the bench does not read.
    commit_chain: int | None = DEFAULT_COMMIT_CHAIN
    # Whether the local cluster's genesis runs the quorum store; None with --target, as above.
    quorum_store: bool | None = False
    # Whether the local cluster's genesis chooses leaders by reputation; None with --target.
    leader_reputation: bool | None = False
    # The local cluster runs the no-op application (`bft.app.noop`) instead of the key-value ledger.
    consensus_only: bool = False
    # The load submits in the JSON body of `POST /txs` (base64) instead of the binary one.
    json_body: bool = False

    @property
    def local(self) -> bool:
        return not self.targets

    @property
    def app(self) -> str | None:
        """The local cluster's application: "noop" (--consensus-only) or "kv" (the key-value
        ledger); None with --target: a running cluster's is in its nodes' configs, which the bench
        does not read."""
        if not self.local:
            return None
        return "noop" if self.consensus_only else "kv"

    @property
    def body(self) -> str:
        """The body the load submits in: "binary" (the default) or "json" (--json-body)."""
        return "json" if self.json_body else "binary"


def add_arguments(bench: argparse.ArgumentParser) -> None:
    """The flags of `bft bench` on its parser."""
    bench.add_argument(
        "--nodes", type=int, default=DEFAULT_NODES, help=f"local nodes (default {DEFAULT_NODES})"
    )
    bench.add_argument(
        "--duration", type=float, default=DEFAULT_DURATION_S, help="measured seconds (default 20)"
    )
    bench.add_argument(
        "--tx-size", type=int, default=DEFAULT_TX_SIZE_BYTES, help="bytes per transaction (default 256)"
    )
    bench.add_argument(
        "--clients", type=int, default=DEFAULT_CLIENTS, help=f"concurrent clients (default {DEFAULT_CLIENTS})"
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="target transactions per second in total (default 0: unlimited)",
    )
    bench.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help=f"transactions per request (default {DEFAULT_BATCH})"
    )
    bench.add_argument(
        "--warmup", type=float, default=DEFAULT_WARMUP_S, help="seconds of load before the window (default 2)"
    )
    bench.add_argument(
        "--target",
        default="",
        metavar="URL[,URL...]",
        help="API URLs of a running cluster to drive instead of starting one (--nodes is then ignored)",
    )
    bench.add_argument(
        "--home",
        type=Path,
        default=None,
        help="data directory of the local cluster (default: a temporary one)",
    )
    add_commit_chain_option(
        bench,
        default=None,
        more_help=f"default {DEFAULT_COMMIT_CHAIN}, for the local cluster (one reached with --target "
        "runs its genesis' rule)",
    )
    add_quorum_store_option(
        bench,
        more_help="default off, for the local cluster (one reached with --target runs its genesis')",
    )
    add_leader_reputation_option(
        bench,
        more_help="default off, for the local cluster (one reached with --target runs its genesis')",
    )
    bench.add_argument(
        "--consensus-only",
        action="store_true",
        help="run the local cluster with the no-op application (accepts every transaction, executes "
        "none) instead of the key-value ledger, to measure consensus, storage and the API alone",
    )
    bench.add_argument(
        "--json-body",
        action="store_true",
        help="submit transactions in the JSON body (base64) instead of the binary one (length-prefixed "
        "raw bytes), to measure one beside the other (--json is the report's format, not the body's)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    """The checked options of `bft bench`; BenchError naming the first bad one."""
    targets = tuple(_normalize_url(u) for u in args.target.split(",") if u.strip())
    opts = BenchOptions(
        nodes=len(targets) if targets else args.nodes,
        duration_s=args.duration,
        tx_size_bytes=args.tx_size,
        clients=args.clients,
        rate_per_s=args.rate,
        batch=args.batch,
        warmup_s=args.warmup,
        targets=targets,
        home=args.home,
        json=args.json,
        commit_chain=_commit_chain(args.commit_chain, local=not targets),
        quorum_store=None if targets else args.quorum_store,
        leader_reputation=None if targets else args.leader_reputation,
        consensus_only=args.consensus_only,
        json_body=args.json_body,
    )
    problems = [
        (opts.nodes < 1, "--nodes must be at least 1"),
        (not 0 < opts.duration_s < math.inf, "--duration must be a positive number of seconds"),
        (not 0 <= opts.warmup_s < math.inf, "--warmup must be a non-negative number of seconds"),
        (opts.clients < 1, "--clients must be at least 1"),
        (opts.batch < 1, "--batch must be at least 1"),
        (not 0 <= opts.rate_per_s < math.inf, "--rate must be a non-negative number (0: unlimited)"),
        (opts.home is not None and not opts.local, "--home and --target exclude each other"),
        (args.commit_chain is not None and not opts.local, "--commit-chain and --target exclude each other"),
        (args.quorum_store and not opts.local, "--quorum-store and --target exclude each other"),
        (args.leader_reputation and not opts.local, "--leader-reputation and --target exclude each other"),
        (opts.consensus_only and not opts.local, "--consensus-only and --target exclude each other"),
    ]
    for bad, message in problems:
        if bad:
            raise BenchError(message)
    check_tx_size(opts.tx_size_bytes)
    return opts


def _commit_chain(given: int | None, *, local: bool) -> int | None:
    """The commit rule of the cluster measured: the one given, or the default, for a local one;
    unknown (None) for targets."""
    if not local:
        return None
    return DEFAULT_COMMIT_CHAIN if given is None else given


def _normalize_url(url: str) -> str:
    """A --target URL as `bft.cli_args.node_url` takes it (no path: the bench appends its own)."""
    try:
        return node_url(url)
    except argparse.ArgumentTypeError as e:
        raise BenchError(f"--target: {e}") from None
