"""Generation of a testnet: one home directory per node, with keys, config and the shared genesis.

Owns: `write_testnet`, the layout `bft testnet` and `bft cluster` produce:

    OUT/genesis.json
    OUT/node<i>/config.toml    [p2p] listen = host_i:(base_port + 2r), [api] listen = host_i:(base_port+2r+1)
    OUT/node<i>/node_key       mode 0600, crypto.keys format
    OUT/node<i>/genesis.json   a copy, so a node home is self-contained

Hosts and ports (`testnet_addresses`): node i runs on host_i (one host for all by default,
127.0.0.1; `bft testnet --hosts` gives each its own), and r is its rank on that host (how many
nodes before it share host_i). On one machine that is node i's ports base_port + 2i and
base_port + 2i + 1, as always; with a host per node every node uses base_port and base_port + 1,
the convention of a network spread over machines (CometBFT's 26656 everywhere). The genesis holds
each validator's address as host_i:port, which its peers dial; the config's listen address is the
same unless a listen host is given (0.0.0.0 in a container, whose name is what peers dial).

May not: overwrite a private key, write into a directory that holds anything but its own
testnet, start nodes, or pick ports other than the ones derived above.

Which directories it writes into: one that does not exist yet, or an empty one. Any other is
refused before anything is written, with a message saying what is there:
- a testnet it wrote (its mark is the top-level genesis.json, written last, so present only when
  every node's files are): refused, its keys are not overwritten;
- an interrupted one (node<i>/node_key but no top-level genesis.json): refused the same way;
- anything else: refused, and nothing in it is touched. (`bft testnet --out net` run from the
  clone root once wrote a testnet into the project's own `net/` package.)
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN
from bft.core.safety import first_state
from bft.core.safety_store import DurableFileStore
from bft.node.config import (
    CONFIG_FILE_NAME,
    GENESIS_FILE_NAME,
    KEY_FILE_NAME,
    ConsensusSettings,
    Genesis,
    GenesisValidator,
    check_port_range,
    default_consensus,
    format_host_port,
    format_toml,
    genesis_to_json,
    load_genesis,
    parse_host_port,
)
from bft.node.errors import ConfigError
from bft.node.osfs import OsFilesystem
from crypto.errors import KeyFileError
from crypto.keys import PrivateKey, write_private_key

_CONFIG_HEADER = (
    "Written by `bft testnet`. Paths are relative to this directory.\n"
    "Every node of the cluster must use the same [consensus] settings."
)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_base_port(count: int, attempts: int = 200, host: str = "127.0.0.1") -> int:
    """A base port P with P .. P+count-1 free on `host` now (ConfigError if none is found).
    Preferably below the kernel's ephemeral range, where the nodes' own outgoing connections
    cannot take the listen port of a node that is down for a restart."""
    low = _ephemeral_low()
    rng = random.Random()
    for attempt in range(attempts):
        if low - count > 20000 and attempt < attempts // 2:
            base = rng.randrange(20000, low - count)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                base = s.getsockname()[1]
        if base + count <= 65535 and all(_port_is_free(host, base + k) for k in range(count)):
            return base
    raise ConfigError(f"no run of {count} free ports on {host} in {attempts} attempts")


def testnet_ports(base_port: int, index: int) -> tuple[int, int]:
    """Node `index`'s p2p and API ports in a one-host testnet whose first port is `base_port`."""
    return base_port + 2 * index, base_port + 2 * index + 1


def testnet_addresses(hosts: Sequence[str], base_port: int) -> list[tuple[str, str]]:
    """Each node's (p2p, API) address as "host:port": node i on `hosts[i]`, with the ports of its
    rank among the nodes on that host (module header). ConfigError if the ports do not fit."""
    ranks: dict[str, int] = {}
    out = []
    for host in hosts:
        rank = ranks.get(host, 0)
        ranks[host] = rank + 1
        p2p, api = testnet_ports(base_port, rank)
        out.append((format_host_port(host, p2p), format_host_port(host, api)))
    check_port_range(base_port, max(ranks.values(), default=1))
    return out


def parse_hosts(text: str, nodes: int | None) -> list[str]:
    """The hosts of `bft testnet --hosts`: comma-separated, or (one per line, `#` comments) in the
    file named after an `@`. Each must be a host `parse_host_port` accepts (an IPv4 address, a
    name, or an IPv6 address in brackets); there must be `nodes` of them if `nodes` is given.
    ConfigError otherwise."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--hosts {text}: cannot read {path}: {exc}") from exc
        items = [line.split("#", 1)[0].strip() for line in lines]
    else:
        items = [item.strip() for item in text.split(",")]
    hosts = [item for item in items if item]
    if not hosts:
        raise ConfigError(f"--hosts {text!r}: no host given")
    bare = [host[1:-1] if host.startswith("[") and host.endswith("]") else host for host in hosts]
    for host, name in zip(hosts, bare, strict=True):
        if ":" in name and not _is_ipv6(name):
            raise ConfigError(f"--hosts: {host!r} is not a host (no ports here: --base-port sets them)")
        try:
            parse_host_port(format_host_port(name, 1))
        except ConfigError as exc:
            raise ConfigError(f"--hosts: {host!r} is not a host: {exc}") from exc
    if nodes is not None and len(hosts) != nodes:
        raise ConfigError(f"--hosts names {len(hosts)} hosts for {nodes} nodes: give one host per node")
    return bare


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def node_home(out: Path, index: int) -> Path:
    return out / f"node{index}"


def write_testnet(
    nodes: int,
    out: Path,
    base_port: int,
    *,
    chain_id: str | None = None,
    consensus: ConsensusSettings | None = None,
    host: str = "127.0.0.1",
    hosts: Sequence[str] | None = None,
    listen_host: str | None = None,
    ignored: frozenset[str] = frozenset(),
    commit_chain: int = DEFAULT_COMMIT_CHAIN,
    quorum_store: bool = False,
    leader_reputation: bool = False,
    state_sync: bool = False,
    app_factory: str = "",
) -> list[Path]:
    """Write a `nodes`-validator testnet under `out` and return the node home directories.

    Fresh keys come from the OS CSPRNG; `chain_id` defaults to "bft-testnet-<random hex>";
    `commit_chain` is the genesis' commit rule (3 or 2); with `leader_reputation` it chooses
    leaders by reputation; with `state_sync` its claims name a verifiable state that new nodes join
    from (`bft.node.statesync`); with `quorum_store` the genesis runs the quorum store, and `consensus`
    defaults to `default_consensus(quorum_store=True)` (its larger
    block limits, spelled out in every config.toml with the batch settings); `app_factory`, if
    given, goes into every node's `[app] factory` (else the nodes run the built-in key-value
    ledger). Node i runs on `hosts[i]` if given (one per node), else all on `host`; with
    `listen_host` its config listens there (0.0.0.0: every interface) while the genesis keeps
    host_i, the address its peers dial (module header). ConfigError, before anything is
    written, if `nodes` < 1, `hosts` does not name one host per node, the ports do not fit,
    `commit_chain` is neither, `quorum_store` is not a boolean, or `out` exists and is not an
    empty directory (the module's header says which messages); entries named in `ignored` do not
    count (`bft cluster` locks its home before it writes the testnet).
    """
    if nodes < 1:
        raise ConfigError(f"a testnet needs at least one node, got {nodes}")
    hosts = [host] * nodes if hosts is None else list(hosts)
    if len(hosts) != nodes:
        raise ConfigError(f"{len(hosts)} hosts for {nodes} nodes: give one host per node")
    addresses = testnet_addresses(hosts, base_port)
    check_out(out, ignored)
    if chain_id is None:
        chain_id = f"bft-testnet-{secrets.token_hex(4)}"
    consensus = default_consensus(quorum_store=quorum_store) if consensus is None else consensus
    homes = [node_home(out, i) for i in range(nodes)]
    # Already refused by _check_out; kept so that no change there can ever overwrite a key.
    for home in homes:
        if (home / KEY_FILE_NAME).exists():
            raise ConfigError(
                f"{home / KEY_FILE_NAME}: a private key is already there; refusing to overwrite it "
                f"(remove {out} to generate a new testnet)"
            )

    keys = [PrivateKey.generate() for _ in range(nodes)]
    p2p = [p for p, _ in addresses]
    api = [a for _, a in addresses]
    genesis = Genesis(
        chain_id,
        tuple(GenesisValidator(i, keys[i].public_key, p2p[i], api[i]) for i in range(nodes)),
        commit_chain,
        quorum_store,
        leader_reputation,
        state_sync,
    )
    genesis_json = genesis_to_json(genesis)

    out.mkdir(parents=True, exist_ok=True)
    for i, home in enumerate(homes):
        # 0700: the directory holds a private key and the node's safety record.
        home.mkdir(mode=0o700, exist_ok=True)
        try:
            write_private_key(home / KEY_FILE_NAME, keys[i])
        except KeyFileError as exc:
            raise ConfigError(str(exc)) from exc
        _write_atomic(home / GENESIS_FILE_NAME, genesis_json)
        config: dict[str, Mapping[str, str | int | float]] = {
            "node": {
                "index": i,
                "key_file": KEY_FILE_NAME,
                "genesis_file": GENESIS_FILE_NAME,
                "data_dir": "data",
                "log_file": "node.log",
            },
            "p2p": {"listen": _listen(p2p[i], listen_host)},
            "api": {"listen": _listen(api[i], listen_host)},
            "consensus": consensus.to_toml_table(quorum_store=quorum_store),
        }
        if app_factory:
            config["app"] = {"factory": app_factory}
        _write_atomic(home / CONFIG_FILE_NAME, format_toml(config, header=_CONFIG_HEADER))
        # The validator's first safety record: from now on, a data directory without one lost it
        # (wiped, restored from an old backup) and the node recovers before it signs anything.
        data = home / "data"
        data.mkdir(mode=0o700, exist_ok=True)
        DurableFileStore(OsFilesystem(data)).save(first_state(chain_id))
    # Last: the top-level genesis marks a complete network (`bft cluster` sets up a directory
    # without one, and readers that see it find every node's files in place).
    _write_atomic(out / GENESIS_FILE_NAME, genesis_json)
    return homes


def _listen(address: str, listen_host: str | None) -> str:
    """The listen address of a node reached at `address`: the same, or its port on `listen_host`."""
    if listen_host is None:
        return address
    return format_host_port(listen_host, parse_host_port(address)[1])


_REMOVE_OR_MOVE = "remove {out} to generate a new one, or choose another directory"
# How many of a foreign directory's entries the refusal names.
_SHOWN_ENTRIES = 5


def check_out(out: Path, ignored: frozenset[str]) -> None:
    """ConfigError unless `out` is absent or an empty directory (but for `ignored` names), saying
    what is there."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    entries = sorted(p.name for p in out.iterdir() if p.name not in ignored)
    if not entries:
        return
    genesis_file = out / GENESIS_FILE_NAME
    if genesis_file.is_file():
        try:
            found = load_genesis(genesis_file)
            what = f"chain {found.chain_id}, {len(found.validators)} validators"
        except ConfigError:
            what = "its genesis.json unreadable"
        raise ConfigError(
            f"{out} already holds a testnet ({what}); refusing to overwrite its keys: "
            + _REMOVE_OR_MOVE.format(out=out)
        )
    keys = sorted(p.relative_to(out) for p in out.glob(f"node*/{KEY_FILE_NAME}"))
    if keys:
        raise ConfigError(
            f"{out} holds an incomplete testnet ({keys[0]}, no {GENESIS_FILE_NAME}); refusing to "
            "overwrite its keys: " + _REMOVE_OR_MOVE.format(out=out)
        )
    shown = ", ".join(entries[:_SHOWN_ENTRIES])
    more = f" and {len(entries) - _SHOWN_ENTRIES} more" if len(entries) > _SHOWN_ENTRIES else ""
    raise ConfigError(
        f"{out} is not empty and holds no testnet (it has {shown}{more}); refusing to write into "
        "it: choose a new or empty directory"
    )


def _write_atomic(path: Path, text: str) -> None:
    # A reader (a node starting up, a cluster supervisor) never sees a half-written file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
