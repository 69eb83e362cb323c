"""The `bft attack` command: hostile connections and validator floods against a running node.

Owns: the `attack` parser (`add_command`), turning its flags into a `HostilePlan` or a
`ValidatorFlood`, running it under `trio.run`, and printing what the node did (one line per kind,
or one JSON object with `--json`).
May not: decide how an attack behaves (`bft.attack.hostile`, `bft.attack.validator` do).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bft.attack.hostile import API_KINDS, KINDS, P2P_KINDS

if TYPE_CHECKING:
    from bft.node.config import Genesis, GenesisValidator

from bft.cli_args import non_negative_float, non_negative_int, positive_float, positive_int

# Connections per kind when `--kinds` names kinds without counts.
DEFAULT_CONNECTIONS = 300


def add_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    attack = commands.add_parser(
        "attack",
        help="attack a running node's resources (hostile connections, validator floods)",
        description=(
            "Attack a running node as a stranger, a client or a validator with a valid key, and "
            "print what the node did. A node that holds up closes every hostile connection within "
            "its deadlines and keeps committing; watch /status, /metrics and its log meanwhile."
        ),
    )
    kinds = attack.add_subparsers(dest="attack", required=True)
    hostile = kinds.add_parser(
        "hostile",
        help="hold hostile connections (pre-auth, slow HTTP, unread answers) against a node",
        description=(
            "Hold hostile connections against one node, reopening each as soon as the node closes "
            f"it. Kinds: p2p {', '.join(P2P_KINDS)}; API {', '.join(API_KINDS)}."
        ),
    )
    hostile.add_argument("--p2p", default=None, help="the node's p2p address host:port")
    hostile.add_argument("--api", default=None, help="the node's API address host:port")
    hostile.add_argument(
        "--kinds",
        default="preauth,slow-body,idle-sse",
        help="comma-separated kinds, each optionally =COUNT (default preauth,slow-body,idle-sse)",
    )
    hostile.add_argument(
        "--connections",
        type=positive_int,
        default=None,
        help=f"total connections, split over kinds without a count (default {DEFAULT_CONNECTIONS} each)",
    )
    hostile.add_argument("--duration", type=positive_float, default=30.0, help="seconds (default 30)")
    hostile.add_argument(
        "--trickle", type=positive_float, default=1.0, help="seconds between slow bytes (default 1)"
    )
    hostile.add_argument(
        "--sources",
        type=non_negative_int,
        default=0,
        help="spread over this many loopback source addresses 127.0.0.2...",
    )
    hostile.add_argument(
        "--reopen-pause",
        type=non_negative_float,
        default=0.1,
        help="seconds before reopening a closed connection",
    )
    hostile.add_argument(
        "--block-height", type=non_negative_int, default=1, help="height unread-blocks asks for"
    )
    hostile.add_argument("--json", action="store_true", help="print one JSON object")
    hostile.set_defaults(run=_run_hostile)

    validator = kinds.add_parser(
        "validator",
        help="flood a node as a validator with a valid key (its own node must be stopped)",
        description=(
            "Connect to a node with the key of the validator at --home (stop that validator's own "
            "node first) and send one kind of message as fast as TCP takes it, never reading "
            "what comes back: sync-flood, block-flood or gossip-fill."
        ),
    )
    validator.add_argument("--home", type=Path, required=True, help="attacking validator's node directory")
    validator.add_argument(
        "--target", type=non_negative_int, required=True, help="index of the validator to attack"
    )
    validator.add_argument(
        "--kind", choices=("sync-flood", "block-flood", "gossip-fill"), default="sync-flood"
    )
    validator.add_argument("--duration", type=positive_float, default=30.0, help="seconds (default 30)")
    validator.add_argument(
        "--height", type=non_negative_int, default=None, help="top of sync ranges (default: target's)"
    )
    validator.add_argument(
        "--rate", type=non_negative_float, default=0.0, help="messages per second (default 0: no cap)"
    )
    validator.add_argument("--tx-size", type=positive_int, default=256, help="bytes per gossiped transaction")
    validator.add_argument(
        "--message-bytes",
        type=positive_int,
        default=None,
        help="bytes per gossip message (default 1 MiB, max ~4 MiB)",
    )
    validator.add_argument("--json", action="store_true", help="print one JSON object")
    validator.set_defaults(run=_run_validator)

    catalogue = kinds.add_parser(
        "catalogue",
        help="run the handshake and frame catalogue against a node's p2p port",
        description=(
            "Open one bad connection per probe (garbage, oversized or silent handshakes, a wrong "
            "chain id, an unknown key; with a validator's key, a bad FINISH signature and bad "
            "frames after a real handshake) and print whether the node closed each one and what "
            "its log should say. Validator probes use the key at --home (stop that node first), "
            "unless --stranger."
        ),
    )
    catalogue.add_argument("--home", type=Path, required=True, help="a node directory (its genesis and key)")
    catalogue.add_argument(
        "--target", type=non_negative_int, required=True, help="index of the validator to probe"
    )
    catalogue.add_argument("--stranger", action="store_true", help="only the probes that need no key")
    catalogue.add_argument("--json", action="store_true", help="print one JSON object")
    catalogue.set_defaults(run=_run_catalogue)


def parse_kinds(text: str, connections: int | None) -> dict[str, int] | str:
    """`preauth=100,slow-body` -> connections per kind, or why it cannot be read."""
    counted: dict[str, int] = {}
    uncounted: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, count = item.partition("=")
        if name not in KINDS:
            return f"unknown kind {name!r}; choose from {', '.join(KINDS)}"
        if count:
            if not count.isdigit():
                return f"{item!r}: the count must be a whole number"
            counted[name] = int(count)
        else:
            uncounted.append(name)
    if uncounted:
        left = (connections - sum(counted.values())) if connections is not None else None
        each = DEFAULT_CONNECTIONS if left is None else max(0, left) // len(uncounted)
        for name in uncounted:
            counted[name] = each
    if not any(counted.values()):
        return "no connections to hold"
    return counted


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True))
        return
    for name, fields in report.items():
        print(name + ": " + ", ".join(f"{key} {value}" for key, value in fields.items()))


def _run_hostile(args: argparse.Namespace) -> int:
    from bft.attack.hostile import HostilePlan, new_tallies, run_hostile
    from bft.node.config import parse_host_port
    from bft.node.errors import ConfigError

    slots = parse_kinds(args.kinds, args.connections)
    if isinstance(slots, str):
        print(f"bft attack: {slots}", file=sys.stderr)
        return 2
    try:
        plan = HostilePlan(
            slots=slots,
            duration_s=args.duration,
            p2p=parse_host_port(args.p2p) if args.p2p else None,
            api=parse_host_port(args.api) if args.api else None,
            trickle_s=args.trickle,
            sources=args.sources,
            block_height=args.block_height,
            reopen_pause_s=args.reopen_pause,
        )
    except (ValueError, ConfigError) as e:
        print(f"bft attack: {e}", file=sys.stderr)
        return 2
    tallies = new_tallies(plan)
    # Ctrl-C (or SIGINT from a script) ends the attack early; the tally so far is still printed.
    with contextlib.suppress(KeyboardInterrupt):
        run_hostile(plan, tallies)
    _print({kind: tally.summary() for kind, tally in tallies.items()}, args.json)
    return 0


def _run_validator(args: argparse.Namespace) -> int:
    import httpx
    import trio

    from bft.attack.validator import GOSSIP_MESSAGE_BYTES, FloodTally, ValidatorFlood, run_flood
    from bft.core.types import BlockId
    from bft.node.config import load_genesis, load_node_config, parse_host_port
    from bft.node.errors import ConfigError
    from crypto.keys import load_private_key

    try:
        config = load_node_config(args.home)
        genesis = load_genesis(config.genesis_file)
        key = load_private_key(config.key_file)
        target = _validator(genesis, args.target)
        status: dict[str, Any] = {}
        if args.height is None or args.kind == "block-flood":
            status = httpx.get(f"http://{target.api}/status", timeout=5.0).json()
        flood = ValidatorFlood(
            kind=args.kind,
            key=key,
            chain_id=genesis.chain_id,
            peer_key=target.public_key,
            address=parse_host_port(target.p2p),
            duration_s=args.duration,
            height=args.height if args.height is not None else max(1, int(status["height"])),
            block_id=BlockId(bytes.fromhex(status["last_block_id"])) if args.kind == "block-flood" else None,
            rate_per_s=args.rate,
            tx_size_bytes=args.tx_size,
            message_bytes=args.message_bytes or GOSSIP_MESSAGE_BYTES,
        )
    except (OSError, ValueError, KeyError, IndexError, ConfigError, httpx.HTTPError) as e:
        print(f"bft attack: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    tally = FloodTally()
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(run_flood, flood, tally)
    _print({args.kind: tally.summary()}, args.json)
    return 0


def _run_catalogue(args: argparse.Namespace) -> int:
    import trio

    from bft.attack.catalogue import Target, probe_names, run_catalogue
    from bft.node.config import load_genesis, load_node_config, parse_host_port
    from bft.node.errors import ConfigError
    from crypto.keys import load_private_key

    try:
        config = load_node_config(args.home)
        genesis = load_genesis(config.genesis_file)
        node = _validator(genesis, args.target)
        target = Target(
            address=parse_host_port(node.p2p),
            chain_id=genesis.chain_id,
            public_key=node.public_key,
            validator_key=None if args.stranger else load_private_key(config.key_file),
        )
        results = trio.run(run_catalogue, target, probe_names(target))
    except (OSError, ValueError, IndexError, ConfigError, trio.TooSlowError) as e:
        print(f"bft attack: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    _print({r.name: r.summary() for r in results}, args.json)
    return 0


def _validator(genesis: Genesis, index: int) -> GenesisValidator:
    """The genesis validator `index`; ConfigError naming the range if there is none (a negative or
    too large --target used to pick the last validator or raise IndexError)."""
    from bft.node.errors import ConfigError

    if not 0 <= index < len(genesis.validators):
        raise ConfigError(f"--target {index}: the genesis has validators 0..{len(genesis.validators) - 1}")
    return genesis.validators[index]
