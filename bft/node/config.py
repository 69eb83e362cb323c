"""The node's files: genesis (JSON), per-node config (TOML) and the committed cluster defaults.

Owns: `Genesis` and its JSON format, `NodeConfig` and `<home>/config.toml`, `ConsensusSettings`,
`ClusterDefaults` and `configs/local-4.toml`, host:port parsing, the identity check binding a
node's key to its genesis entry, and `format_toml`, the tiny TOML writer used for generated files.
May not: read private keys (`crypto.keys` does), create directories, or start anything.

Every problem with a file is a `ConfigError` naming the file and the key at fault.

genesis.json:

    {"chain_id": "bft-local",
     "validators": [{"index": 0, "public_key": "<64 hex>", "p2p": "127.0.0.1:26600",
                     "api": "127.0.0.1:26601"}, ...],
     "commit_chain": 2,
     "quorum_store": true,
     "leader_reputation": true,
     "state_sync": true}

"commit_chain" is optional: the commit rule's chain length (`bft.core.commit_rule`), 3 (chained
HotStuff's three-chain) when absent, or 2 (Jolteon's two-chain). It is written only when it is
not 3, so a three-chain genesis reads and writes as it did before the field existed, and an older
node refuses a two-chain genesis (an unknown key) instead of running it under the wrong rule.

"quorum_store" is optional, a JSON boolean: whether the chain disseminates batches apart from
ordering (`bft.core.quorum_store`: proposals carry proofs of availability, not transactions).
False when absent, and written only when true, for the same two reasons: a genesis without it is
byte for byte what it was before the field existed, and an older node refuses one with it.

"leader_reputation" is optional, a JSON boolean, the same way: whether leaders are chosen from
the recent history of the chain (`bft.core.reputation`: a validator that failed its turn and
shows no sign of life is skipped until it votes again) instead of the fixed schedule alone.

"state_sync" is optional, a JSON boolean, the same way: whether the state every block's app-hash
claim names can be verified from a snapshot (`bft.node.statesync`): the built-in ledger keeps a
state commitment (its app hash version 2), the block store a commitment to every committed
transaction's location, and a block claims the hash of the two together. A new or wiped node of
such a chain joins from a peer's snapshot instead of replaying every block since genesis.

config.toml: tables [node] (index; key_file, genesis_file, data_dir, log_file, relative to the
home directory), [p2p] listen, [api] listen (and optionally the `ApiSettings` keys: deadlines and
bounds of the HTTP API), and optionally [consensus] (see `ConsensusSettings`;
missing keys take their defaults, the block limits those of the genesis' mode:
`NodeConfig.consensus_for`), [mempool] (`MempoolSettings`), [storage] (`StorageSettings`) and [app] factory
("package.module:callable", the application; default the built-in key-value ledger).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from bft.core.commit_rule import COMMIT_CHAINS, DEFAULT_COMMIT_CHAIN
from bft.core.config import (
    DEFAULT_BASE_TIMEOUT_S,
    DEFAULT_BATCH_LIFETIME_HEIGHTS,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_DELAY_S,
    DEFAULT_MAX_BATCH_TXS,
    DEFAULT_MAX_BLOCK_BATCHES,
    DEFAULT_MAX_BLOCK_BYTES,
    DEFAULT_MAX_BLOCK_TXS,
    DEFAULT_MAX_STORED_BATCHES,
    DEFAULT_MAX_TIMEOUT_S,
    DEFAULT_MAX_VIEWS_AHEAD,
    ReplicaConfig,
)
from bft.core.types import ValidatorIndex, ValidatorSet
from bft.core.wire import MAX_BATCHES_PER_BLOCK, MAX_TXS_PER_BLOCK, check_batch_limits, check_block_limits
from bft.node.errors import ConfigError
from crypto.errors import CryptoError
from crypto.keys import PUBLIC_KEY_LEN, load_public_key

CONFIG_FILE_NAME: Final = "config.toml"
GENESIS_FILE_NAME: Final = "genesis.json"
KEY_FILE_NAME: Final = "node_key"
# Anything bigger than this is not a config file we wrote; refuse before parsing it.
_MAX_FILE_BYTES: Final = 1024 * 1024

# host:port

_PORT_RE: Final = re.compile(r"[0-9]{1,5}")


def parse_host_port(text: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 hosts in brackets: "[::1]:26600"); ConfigError if malformed.

    Port 0 is accepted (listen on any free port); hosts are not resolved.
    """
    if not isinstance(text, str):
        raise ConfigError(f"expected a 'host:port' string, got {type(text).__name__}")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ConfigError(f"{text!r} is not 'host:port' (no port)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ConfigError(f"{text!r} is not 'host:port' (brackets are for IPv6 addresses)")
    elif ":" in host:
        raise ConfigError(f"{text!r} is not 'host:port' (write IPv6 hosts in brackets: '[::1]:26600')")
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{text!r} is not 'host:port' (bad host)")
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise ConfigError(f"{text!r} is not 'host:port' (port must be 0..65535)")
    return host, int(port_text)


def format_host_port(host: str, port: int) -> str:
    """The inverse of `parse_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port_range(base_port: int, nodes: int) -> None:
    """ConfigError unless ports base_port .. base_port + 2*nodes - 1 (p2p, api per node) all exist."""
    last = base_port + 2 * nodes - 1
    if base_port < 1 or last > 65535:
        raise ConfigError(f"base port {base_port} leaves no room for {nodes} nodes (ports up to {last})")


# Genesis


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    """One validator: its index in the set, Ed25519 public key, and addresses as "host:port"."""

    index: int
    public_key: bytes
    p2p: str
    api: str


@dataclass(frozen=True, slots=True)
class Genesis:
    """The chain's identity, its validators, ordered by index (0..n-1), its commit rule, and
    whether it runs the quorum store.

    Construction validates: ConfigError for an empty chain id, indices not 0..n-1 in order,
    invalid or duplicate public keys, bad or duplicate addresses, a `commit_chain` that is not
    the integer 2 or 3, or a `quorum_store` or `leader_reputation` that is not a boolean.
    """

    chain_id: str
    validators: tuple[GenesisValidator, ...]
    # The commit rule's chain length: every node of the chain must run the same one.
    commit_chain: int = DEFAULT_COMMIT_CHAIN
    # Proposals carry proofs of availability of batches instead of transactions: a chain's
    # nodes must all do it or none (their blocks would not even be valid to each other).
    quorum_store: bool = False
    # Leaders from the chain's recent history: every node must compute the same schedule.
    leader_reputation: bool = False
    # Claims name a verifiable state (app state and transaction index): all nodes or none.
    state_sync: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not self.chain_id:
            raise ConfigError("genesis: chain_id must be a non-empty string")
        _check_commit_chain(self.commit_chain)
        _check_flag("quorum_store", self.quorum_store)
        _check_flag("leader_reputation", self.leader_reputation)
        _check_flag("state_sync", self.state_sync)
        if not self.validators:
            raise ConfigError("genesis: no validators")
        seen_keys: set[bytes] = set()
        seen_addresses: set[str] = set()
        for position, v in enumerate(self.validators):
            if v.index != position:
                raise ConfigError(
                    f"genesis: validator indices must be 0..{len(self.validators) - 1} in order; "
                    f"entry {position} has index {v.index}"
                )
            try:
                load_public_key(v.public_key)
            except CryptoError as exc:
                raise ConfigError(f"genesis: validator {v.index}: {exc}") from exc
            if v.public_key in seen_keys:
                raise ConfigError(f"genesis: validator {v.index}: duplicate public key {v.public_key.hex()}")
            seen_keys.add(v.public_key)
            for what, address in (("p2p", v.p2p), ("api", v.api)):
                try:
                    _, port = parse_host_port(address)
                except ConfigError as exc:
                    raise ConfigError(f"genesis: validator {v.index}: {what}: {exc}") from exc
                if port == 0:
                    raise ConfigError(f"genesis: validator {v.index}: {what}: peers cannot dial port 0")
                if address in seen_addresses:
                    raise ConfigError(f"genesis: validator {v.index}: {what}: duplicate address {address}")
                seen_addresses.add(address)

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(tuple(v.public_key for v in self.validators))


def _check_commit_chain(value: object) -> None:
    # `type(...) is int`: JSON's true is a Python int, and "2" is a string; neither is a length.
    if type(value) is not int or value not in COMMIT_CHAINS:
        raise ConfigError(
            "genesis: commit_chain must be the integer 3 (chained HotStuff's three-chain) or 2 "
            f"(Jolteon's two-chain), got {type(value).__name__} {value!r}"
        )


def _check_flag(name: str, value: object) -> None:
    # `type(...) is bool`: 1 and "true" are not JSON's true, and guessing would split a chain.
    if type(value) is not bool:
        raise ConfigError(
            f"genesis: {name} must be true or false (a JSON boolean), got {type(value).__name__} {value!r}"
        )


def genesis_to_json(genesis: Genesis) -> str:
    """The genesis JSON of `genesis`; "commit_chain" only when it is not the default, and
    "quorum_store", "leader_reputation" and "state_sync" only when true (module header)."""
    doc: dict[str, Any] = {
        "chain_id": genesis.chain_id,
        "validators": [
            {"index": int(v.index), "public_key": v.public_key.hex(), "p2p": v.p2p, "api": v.api}
            for v in genesis.validators
        ],
    }
    if genesis.commit_chain != DEFAULT_COMMIT_CHAIN:
        doc["commit_chain"] = genesis.commit_chain
    if genesis.quorum_store:
        doc["quorum_store"] = True
    if genesis.leader_reputation:
        doc["leader_reputation"] = True
    if genesis.state_sync:
        doc["state_sync"] = True
    return json.dumps(doc, indent=2) + "\n"


class _DuplicateField(Exception):
    pass


def _refuse_duplicate_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two "public_key"s; a genesis must be unambiguous.
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateField(key)
        doc[key] = value
    return doc


def genesis_from_json(text: str, source: str = "genesis") -> Genesis:
    """Parse and validate genesis JSON; ConfigError naming `source` and the field at fault."""
    try:
        doc = json.loads(text, object_pairs_hook=_refuse_duplicate_fields)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from exc
    except _DuplicateField as exc:
        raise ConfigError(f"{source}: field {exc.args[0]!r} appears twice in one object") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a JSON object at the top level")
    _check_keys(
        doc,
        {"chain_id", "validators", "commit_chain", "quorum_store", "leader_reputation", "state_sync"},
        {"chain_id", "validators"},
        source,
    )
    chain_id = doc["chain_id"]
    if not isinstance(chain_id, str):
        raise ConfigError(f"{source}: chain_id must be a string")
    entries = doc["validators"]
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: validators must be a list")
    validators = []
    for position, entry in enumerate(entries):
        where = f"{source}: validators[{position}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected an object")
        keys = {"index", "public_key", "p2p", "api"}
        _check_keys(entry, keys, keys, where)
        index = entry["index"]
        if type(index) is not int:
            raise ConfigError(f"{where}: index must be an integer")
        for name in ("public_key", "p2p", "api"):
            if not isinstance(entry[name], str):
                raise ConfigError(f"{where}: {name} must be a string")
        key_hex = entry["public_key"]
        if not re.fullmatch(r"[0-9a-fA-F]*", key_hex) or len(key_hex) != 2 * PUBLIC_KEY_LEN:
            raise ConfigError(f"{where}: public_key must be {2 * PUBLIC_KEY_LEN} hex digits")
        validators.append(GenesisValidator(index, bytes.fromhex(key_hex), entry["p2p"], entry["api"]))
    validators.sort(key=lambda v: v.index)
    try:
        return Genesis(
            chain_id,
            tuple(validators),
            doc.get("commit_chain", DEFAULT_COMMIT_CHAIN),
            doc.get("quorum_store", False),
            doc.get("leader_reputation", False),
            doc.get("state_sync", False),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def load_genesis(path: Path) -> Genesis:
    return genesis_from_json(_read_text(path, "genesis file"), str(path))


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write `genesis` as JSON (public keys as lowercase hex), replacing any file at `path`."""
    path.write_text(genesis_to_json(genesis), encoding="utf-8")


# Consensus settings


# The block limits of a chain that runs the quorum store, where config.toml does not set them
# (`NodeConfig.consensus_for`). There a block carries proofs, and its limits bound what they
# reference: a leader's proposal packs whole batches, so the limits must leave room for many of
# them (at the defaults, 20 batches of 500 transactions, or 12 of 256 KiB). The transaction count
# is the wire's limit. The bytes are what still fits a message once the block is full (as stored,
# executed and served by block sync: its batches' transactions and its proofs, each signed by
# every validator) with its certificates: `check_block_limits` accepts 3 MiB, 10,000 transactions
# and DEFAULT_MAX_BLOCK_BATCHES (32) proofs for up to 64 validators and beyond (a full block of
# 64 validators' proofs bounds at about 3.4 MB, the message limit is 4 MiB, and the transport's
# frame holds one message); a test checks it.
QUORUM_STORE_MAX_BLOCK_TXS: Final = MAX_TXS_PER_BLOCK
QUORUM_STORE_MAX_BLOCK_BYTES: Final = 3 * 1024 * 1024

# The quorum store's settings: a to_toml_table leaves them out for a chain without one, where
# nothing reads them, unless they differ from their defaults.
_BATCH_KEYS: Final = (
    "max_batch_txs",
    "max_batch_bytes",
    "batch_lifetime_heights",
    "max_stored_batches",
    "max_block_batches",
)


@dataclass(frozen=True, slots=True)
class ConsensusSettings:
    """Timing and limits shared by all nodes of a cluster; the [consensus] table. The defaults
    are the core's (`bft.core.config`); `default_consensus(quorum_store=True)` has the larger
    block limits a chain running the quorum store takes where config.toml does not set them.
    The batch settings (`max_batch_txs` ... `max_block_batches`) are read only under the quorum
    store (`bft.core.config.ReplicaConfig` says what each bounds)."""

    base_timeout_s: float = DEFAULT_BASE_TIMEOUT_S
    max_timeout_s: float = DEFAULT_MAX_TIMEOUT_S
    max_block_txs: int = DEFAULT_MAX_BLOCK_TXS
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES
    max_views_ahead: int = DEFAULT_MAX_VIEWS_AHEAD
    max_batch_delay_s: float = DEFAULT_MAX_BATCH_DELAY_S
    max_batch_txs: int = DEFAULT_MAX_BATCH_TXS
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    batch_lifetime_heights: int = DEFAULT_BATCH_LIFETIME_HEIGHTS
    max_stored_batches: int = DEFAULT_MAX_STORED_BATCHES
    max_block_batches: int = DEFAULT_MAX_BLOCK_BATCHES

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            is_float = f.name.endswith("_s")  # durations are floats, limits are counts
            if type(value) is not int and (not is_float or type(value) is not float):
                raise ConfigError(f"[consensus] {f.name} must be {'a number' if is_float else 'an integer'}")
            if f.name in _MAY_BE_ZERO:
                if not math.isfinite(value) or value < 0:
                    raise ConfigError(f"[consensus] {f.name} must be 0 or more, got {value}")
            elif not math.isfinite(value) or value <= 0:
                raise ConfigError(f"[consensus] {f.name} must be positive, got {value}")
        if self.max_timeout_s < self.base_timeout_s:
            raise ConfigError(
                f"[consensus] max_timeout_s ({self.max_timeout_s}) "
                f"is below base_timeout_s ({self.base_timeout_s})"
            )
        if self.max_batch_delay_s >= self.base_timeout_s:
            raise ConfigError(
                f"[consensus] max_batch_delay_s ({self.max_batch_delay_s}) "
                f"must be below base_timeout_s ({self.base_timeout_s})"
            )
        # An author keeps at most half its budget in flight (`bft.core.quorum_store`): one at least.
        if self.max_stored_batches < 2:
            raise ConfigError(
                f"[consensus] max_stored_batches must be 2 or more, got {self.max_stored_batches}"
            )
        if self.max_block_batches > MAX_BATCHES_PER_BLOCK:
            raise ConfigError(
                f"[consensus] max_block_batches ({self.max_block_batches}) exceeds the wire limit "
                f"of {MAX_BATCHES_PER_BLOCK}"
            )
        reason = check_batch_limits(self.max_batch_bytes, self.max_batch_txs)
        if reason is not None:
            raise ConfigError(f"[consensus] max_batch_txs / max_batch_bytes: {reason}")

    def to_toml_table(self, *, quorum_store: bool = False) -> dict[str, int | float]:
        """The [consensus] table of these settings; the batch settings only for a chain with
        the quorum store, or where they differ from their defaults."""
        table: dict[str, int | float] = {f.name: getattr(self, f.name) for f in fields(self)}
        defaults = ConsensusSettings()
        if not quorum_store and all(table[k] == getattr(defaults, k) for k in _BATCH_KEYS):
            for key in _BATCH_KEYS:
                del table[key]
        return table


def default_consensus(*, quorum_store: bool = False) -> ConsensusSettings:
    """The [consensus] defaults of a chain with or without the quorum store (whose block limits
    are QUORUM_STORE_MAX_BLOCK_TXS and QUORUM_STORE_MAX_BLOCK_BYTES)."""
    if not quorum_store:
        return ConsensusSettings()
    return ConsensusSettings(
        max_block_txs=QUORUM_STORE_MAX_BLOCK_TXS, max_block_bytes=QUORUM_STORE_MAX_BLOCK_BYTES
    )


# 0 is a batch delay an operator tuning for latency means: a leader proposes as soon as it may,
# with whatever the mempool holds (an idle chain then makes empty blocks as fast as a round trip
# allows, each one journaled and fsynced, instead of one per delay).
_MAY_BE_ZERO: Final = frozenset({"max_batch_delay_s"})

_CONSENSUS_KEYS: Final = frozenset(f.name for f in fields(ConsensusSettings))
# The keys whose default depends on the genesis (`NodeConfig.consensus_for`).
_BLOCK_LIMIT_KEYS: Final = frozenset({"max_block_txs", "max_block_bytes"})


def _consensus_from_table(table: Mapping[str, Any], source: str) -> ConsensusSettings:
    where = f"{source}: [consensus]"
    _check_keys(table, set(_CONSENSUS_KEYS), set(), where)
    d = ConsensusSettings()
    try:
        return ConsensusSettings(
            base_timeout_s=_float(table, "base_timeout_s", where, d.base_timeout_s),
            max_timeout_s=_float(table, "max_timeout_s", where, d.max_timeout_s),
            max_block_txs=_int(table, "max_block_txs", where, d.max_block_txs),
            max_block_bytes=_int(table, "max_block_bytes", where, d.max_block_bytes),
            max_views_ahead=_int(table, "max_views_ahead", where, d.max_views_ahead),
            max_batch_delay_s=_float(table, "max_batch_delay_s", where, d.max_batch_delay_s),
            max_batch_txs=_int(table, "max_batch_txs", where, d.max_batch_txs),
            max_batch_bytes=_int(table, "max_batch_bytes", where, d.max_batch_bytes),
            batch_lifetime_heights=_int(table, "batch_lifetime_heights", where, d.batch_lifetime_heights),
            max_stored_batches=_int(table, "max_stored_batches", where, d.max_stored_batches),
            max_block_batches=_int(table, "max_block_batches", where, d.max_block_batches),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class MempoolSettings:
    """Bounds of this node's mempool; the optional [mempool] table. When either is reached,
    clients get "mempool full" and back off. `peer_share_txs` / `peer_share_bytes` bound what
    the transactions one validator gossips may hold of it (0: `max_txs` / `max_bytes` divided by
    the number of validators, see `peer_shares`)."""

    max_txs: int = 20_000
    max_bytes: int = 64 * 1024 * 1024
    peer_share_txs: int = 0
    peer_share_bytes: int = 0

    def __post_init__(self) -> None:
        for name in ("max_txs", "max_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"[mempool] {name} must be a positive integer, got {value!r}")
        for name, most in (("peer_share_txs", self.max_txs), ("peer_share_bytes", self.max_bytes)):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= most:
                raise ConfigError(f"[mempool] {name} must be an integer in 0..{most}, got {value!r}")

    def peer_shares(self, validators: int) -> tuple[int, int]:
        """One gossiping peer's share (transactions, bytes) in a set of `validators`.

        Why 1/n by default: every validator, ourselves (our clients) included, gets an equal
        slice, so the f < n/3 Byzantine peers can hold at most f/n of the pool and clients and
        honest peers always have the rest. An honest peer's share must hold what its clients
        submit between two commits (a few views): at the defaults, 5,000 transactions and 16 MiB
        with 4 validators, five full blocks of the default limits (1,000 txs, 1 MB)."""
        return (
            self.peer_share_txs or max(1, self.max_txs // validators),
            self.peer_share_bytes or max(1, self.max_bytes // validators),
        )


def _mempool_from_table(table: Mapping[str, Any], source: str) -> MempoolSettings:
    where = f"{source}: [mempool]"
    _check_keys(table, {"max_txs", "max_bytes", "peer_share_txs", "peer_share_bytes"}, set(), where)
    d = MempoolSettings()
    try:
        return MempoolSettings(
            max_txs=_int(table, "max_txs", where, d.max_txs),
            max_bytes=_int(table, "max_bytes", where, d.max_bytes),
            peer_share_txs=_int(table, "peer_share_txs", where, d.peer_share_txs),
            peer_share_bytes=_int(table, "peer_share_bytes", where, d.peer_share_bytes),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """Deadlines and bounds of this node's HTTP API; optional keys of the [api] table (served by
    `bft.node.api_server`). The defaults follow nginx and CometBFT's RPC server: a client that is
    slower than these is broken or hostile, and each one it holds costs a descriptor and memory."""

    # The whole request head (request line and headers) within this, from its first byte.
    header_timeout_s: float = 10.0
    # The whole request body (at most 8 MiB) within this, from the end of the head.
    body_timeout_s: float = 30.0
    # Each slice (64 KiB) of a response accepted by the client's socket within this.
    send_timeout_s: float = 30.0
    # An idle keep-alive connection (no byte of a next request) is closed after this.
    keep_alive_timeout_s: float = 20.0
    # Connections served at once; lowered at start to the descriptor limit minus a reserve.
    max_connections: int = 1024
    # Bytes of large answers (e.g. `GET /blocks/<h>`) being sent at once; beyond it a 503.
    max_answer_bytes_in_flight: int = 128 * 1024 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            is_float = f.name.endswith("_s")
            if type(value) is not int and (not is_float or type(value) is not float):
                raise ConfigError(f"[api] {f.name} must be {'a number' if is_float else 'an integer'}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"[api] {f.name} must be positive, got {value}")


_API_KEYS: Final = frozenset(f.name for f in fields(ApiSettings))


def _api_from_table(table: Mapping[str, Any], source: str) -> ApiSettings:
    """The [api] table's settings (its `listen` is read with [p2p]'s)."""
    where = f"{source}: [api]"
    d = ApiSettings()
    try:
        return ApiSettings(
            header_timeout_s=_float(table, "header_timeout_s", where, d.header_timeout_s),
            body_timeout_s=_float(table, "body_timeout_s", where, d.body_timeout_s),
            send_timeout_s=_float(table, "send_timeout_s", where, d.send_timeout_s),
            keep_alive_timeout_s=_float(table, "keep_alive_timeout_s", where, d.keep_alive_timeout_s),
            max_connections=_int(table, "max_connections", where, d.max_connections),
            max_answer_bytes_in_flight=_int(
                table, "max_answer_bytes_in_flight", where, d.max_answer_bytes_in_flight
            ),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """What this node keeps on disk; the optional [storage] table.

    `retain_blocks` > 0 prunes committed blocks older than the latest `retain_blocks`
    (`bft.node.storage`, `keep_latest`): the node then serves block sync, `GET /blocks/<h>` and
    its own replay only from there, and a peer further behind must join by state sync. 0 (the
    default) keeps every block. At least MIN_RETAIN_BLOCKS, and on a state-sync chain enough to
    hold the blocks above its newest servable snapshot (`bft.node.runtime.check_retention`).

    On a chain whose genesis says "state_sync", the built-in ledger writes a snapshot of its
    state every `snapshot_interval` heights and keeps the newest `snapshots_kept`, which peers
    join from (`bft.node.statesync`)."""

    retain_blocks: int = 0
    snapshot_interval: int = 1000
    snapshots_kept: int = 2

    def __post_init__(self) -> None:
        value = self.retain_blocks
        if type(value) is not int or not (value == 0 or value >= MIN_RETAIN_BLOCKS):
            raise ConfigError(
                f"[storage] retain_blocks must be 0 (keep every block) or at least {MIN_RETAIN_BLOCKS}, "
                f"got {value!r}"
            )
        for name in ("snapshot_interval", "snapshots_kept"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ConfigError(f"[storage] {name} must be a positive integer, got {value!r}")


# The least retention: a commit proof reaches 64 blocks up, leader reputation's window 10 per
# validator, and a peer that restarts after a short outage should catch up by block sync.
MIN_RETAIN_BLOCKS: Final = 256
_STORAGE_KEYS: Final = frozenset({"retain_blocks", "snapshot_interval", "snapshots_kept"})


def _storage_from_table(table: Mapping[str, Any], source: str) -> StorageSettings:
    where = f"{source}: [storage]"
    _check_keys(table, set(_STORAGE_KEYS), set(), where)
    d = StorageSettings()
    try:
        return StorageSettings(
            retain_blocks=_int(table, "retain_blocks", where, d.retain_blocks),
            snapshot_interval=_int(table, "snapshot_interval", where, d.snapshot_interval),
            snapshots_kept=_int(table, "snapshots_kept", where, d.snapshots_kept),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


# Node config


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's `<home>/config.toml`, with paths resolved against the home directory."""

    home: Path
    index: ValidatorIndex
    key_file: Path
    genesis_file: Path
    data_dir: Path
    log_file: Path
    p2p_listen: str
    api_listen: str
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    mempool: MempoolSettings = field(default_factory=MempoolSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    # "module:callable" returning an `Application` given the data directory; "" = the built-in
    # key-value ledger.
    app_factory: str = ""
    # [p2p] dial: where this node dials some peers instead of their genesis address (a relay, a
    # NAT's outside address); validator index -> "host:port".
    dial: Mapping[int, str] = field(default_factory=dict)
    # [chaos] clock_rate: this node's clock runs this many times as fast as real time (its view
    # timeouts, batch delays and health windows with it); 1.0 outside fault-injection runs.
    clock_rate: float = 1.0
    # The [consensus] keys config.toml sets; of the others, the block limits take the defaults
    # of the genesis' mode (`consensus_for`). Built by hand: every key, as `consensus` says.
    consensus_keys: frozenset[str] = _CONSENSUS_KEYS

    def consensus_for(self, genesis: Genesis) -> ConsensusSettings:
        """The settings this node runs `genesis` with: `consensus`, but under the quorum store
        the block limits config.toml does not set are `default_consensus(quorum_store=True)`'s."""
        if not genesis.quorum_store:
            return self.consensus
        defaults = default_consensus(quorum_store=True)
        unset = {key: getattr(defaults, key) for key in _BLOCK_LIMIT_KEYS - self.consensus_keys}
        return replace(self.consensus, **unset) if unset else self.consensus

    def replica_config(self, genesis: Genesis) -> ReplicaConfig:
        """The core's configuration for this node in `genesis` (call `check_identity` first),
        with the settings of `consensus_for`."""
        if not 0 <= self.index < len(genesis.validators):
            raise ConfigError(
                f"[node] index {self.index} is not a validator of {genesis.chain_id} "
                f"({len(genesis.validators)} validators)"
            )
        c = self.consensus_for(genesis)
        if genesis.quorum_store:
            # A full block (its batches' transactions and its proofs) must fit a message too.
            reason = check_block_limits(
                c.max_block_bytes,
                c.max_block_txs,
                len(genesis.validators),
                max_block_batches=c.max_block_batches,
            )
            if reason is not None:
                raise ConfigError(f"[consensus]: {reason}")
        try:
            return ReplicaConfig(
                chain_id=genesis.chain_id,
                validators=genesis.validator_set(),
                me=self.index,
                base_timeout_s=c.base_timeout_s,
                max_timeout_s=c.max_timeout_s,
                max_views_ahead=c.max_views_ahead,
                max_block_txs=c.max_block_txs,
                max_block_bytes=c.max_block_bytes,
                max_batch_delay_s=c.max_batch_delay_s,
                commit_chain=genesis.commit_chain,
                quorum_store=genesis.quorum_store,
                leader_reputation=genesis.leader_reputation,
                max_batch_txs=c.max_batch_txs,
                max_batch_bytes=c.max_batch_bytes,
                batch_lifetime_heights=c.batch_lifetime_heights,
                max_stored_batches=c.max_stored_batches,
                max_block_batches=c.max_block_batches,
            )
        except ValueError as exc:  # e.g. a block limit whose largest block would not fit a frame
            raise ConfigError(f"[consensus]: {exc}") from exc


_NODE_KEYS: Final = frozenset({"index", "key_file", "genesis_file", "data_dir", "log_file"})


def load_node_config(home: Path) -> NodeConfig:
    """Read `<home>/config.toml`; ConfigError naming the file and key for anything wrong."""
    home = home.resolve()
    path = home / CONFIG_FILE_NAME
    doc = _load_toml(path, "node config")
    source = str(path)
    _check_keys(
        doc,
        {"node", "p2p", "api", "consensus", "mempool", "storage", "app", "chaos"},
        {"node", "p2p", "api"},
        source,
    )
    node = _table(doc, "node", source)
    _check_keys(node, set(_NODE_KEYS), {"index"}, f"{source}: [node]")
    index = _int(node, "index", f"{source}: [node]", -1)
    if index < 0:
        raise ConfigError(f"{source}: [node] index must be >= 0, got {index}")

    def path_of(key: str, default: str) -> Path:
        text = _str(node, key, f"{source}: [node]", default)
        if not text:
            raise ConfigError(f"{source}: [node] {key} must not be empty")
        return home / text

    listens = {}
    for name in ("p2p", "api"):
        table = _table(doc, name, source)
        extra = _API_KEYS if name == "api" else frozenset({"dial"})
        _check_keys(table, {"listen", *extra}, {"listen"}, f"{source}: [{name}]")
        listen = _str(table, "listen", f"{source}: [{name}]", "")
        try:
            parse_host_port(listen)
        except ConfigError as exc:
            raise ConfigError(f"{source}: [{name}] listen: {exc}") from exc
        listens[name] = listen
    consensus = (
        _consensus_from_table(_table(doc, "consensus", source), source)
        if "consensus" in doc
        else ConsensusSettings()
    )
    consensus_keys = frozenset(_table(doc, "consensus", source)) if "consensus" in doc else frozenset()
    mempool = (
        _mempool_from_table(_table(doc, "mempool", source), source) if "mempool" in doc else MempoolSettings()
    )
    dial = _dial_from_table(_table(doc, "p2p", source), source, index)
    clock_rate = 1.0
    if "chaos" in doc:
        chaos = _table(doc, "chaos", source)
        _check_keys(chaos, {"clock_rate"}, set(), f"{source}: [chaos]")
        clock_rate = _float(chaos, "clock_rate", f"{source}: [chaos]", 1.0)
        if not (math.isfinite(clock_rate) and 0.01 <= clock_rate <= 100):
            raise ConfigError(f"{source}: [chaos] clock_rate must be in 0.01..100, got {clock_rate}")
    app_factory = ""
    if "app" in doc:
        app = _table(doc, "app", source)
        _check_keys(app, {"factory"}, set(), f"{source}: [app]")
        app_factory = _str(app, "factory", f"{source}: [app]", "")
        if app_factory and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", app_factory):
            raise ConfigError(f'{source}: [app] factory must look like "package.module:callable"')
    return NodeConfig(
        home=home,
        index=ValidatorIndex(index),
        key_file=path_of("key_file", KEY_FILE_NAME),
        genesis_file=path_of("genesis_file", GENESIS_FILE_NAME),
        data_dir=path_of("data_dir", "data"),
        log_file=path_of("log_file", "node.log"),
        p2p_listen=listens["p2p"],
        api_listen=listens["api"],
        consensus=consensus,
        mempool=mempool,
        api=_api_from_table(_table(doc, "api", source), source),
        storage=_storage_from_table(_table(doc, "storage", source), source)
        if "storage" in doc
        else StorageSettings(),
        app_factory=app_factory,
        dial=dial,
        clock_rate=clock_rate,
        consensus_keys=consensus_keys,
    )


def _dial_from_table(p2p: Mapping[str, Any], source: str, me: int) -> dict[int, str]:
    """[p2p] dial = { 1 = "host:port", ... }: validator indices (as TOML keys) to addresses."""
    where = f"{source}: [p2p] dial"
    if "dial" not in p2p:
        return {}
    table = p2p["dial"]
    if not isinstance(table, dict):
        raise ConfigError(f'{where} must be a table of validator index = "host:port"')
    dial: dict[int, str] = {}
    for key, address in table.items():
        if not re.fullmatch(r"\d{1,6}", key) or int(key) == me:
            raise ConfigError(f"{where}: {key!r} is not the index of another validator")
        if type(address) is not str:
            raise ConfigError(f'{where}: {key} must be a "host:port" string')
        try:
            _, port = parse_host_port(address)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {key}: {exc}") from exc
        if port == 0:
            raise ConfigError(f"{where}: {key}: cannot dial port 0")
        dial[int(key)] = address
    return dial


def check_identity(config: NodeConfig, genesis: Genesis, public_key: bytes) -> None:
    """ConfigError unless this node's index is in `genesis` and its key is the one listed there."""
    n = len(genesis.validators)
    if not 0 <= config.index < n:
        raise ConfigError(
            f"{config.home}: [node] index {config.index} is not a validator of {genesis.chain_id} "
            f"(indices 0..{n - 1})"
        )
    listed = genesis.validators[config.index].public_key
    if public_key != listed:
        raise ConfigError(
            f"{config.key_file}: public key {public_key.hex()} is not the key genesis "
            f"({config.genesis_file}) lists for validator {config.index} ({listed.hex()})"
        )


# Cluster defaults


@dataclass(frozen=True, slots=True)
class ClusterDefaults:
    """The committed default local cluster: `configs/local-4.toml`."""

    nodes: int = 4
    host: str = "127.0.0.1"
    base_port: int = 26600
    chain_id: str = "bft-local"
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ConfigError("[cluster] nodes must be >= 1")
        if not self.chain_id or not self.host:
            raise ConfigError("[cluster] chain_id and host must not be empty")
        check_port_range(self.base_port, self.nodes)


# Must equal configs/local-4.toml (a test checks): used when the file is not installed.
BUILTIN_CLUSTER_DEFAULTS: Final = ClusterDefaults()

DEFAULT_CLUSTER_FILE: Final = Path(__file__).resolve().parents[2] / "configs" / "local-4.toml"

_CLUSTER_KEYS: Final = frozenset({"nodes", "host", "base_port", "chain_id"})


def load_cluster_defaults(path: Path | None = None) -> ClusterDefaults:
    """Read a cluster definition; with no path, the repository's `configs/local-4.toml`, or the
    built-in copy of it when that file is not there (a non-editable install)."""
    if path is None:
        if not DEFAULT_CLUSTER_FILE.is_file():
            return BUILTIN_CLUSTER_DEFAULTS
        path = DEFAULT_CLUSTER_FILE
    doc = _load_toml(path, "cluster definition")
    source = str(path)
    _check_keys(doc, {"cluster", "consensus"}, {"cluster"}, source)
    cluster = _table(doc, "cluster", source)
    where = f"{source}: [cluster]"
    _check_keys(cluster, set(_CLUSTER_KEYS), set(), where)
    d = BUILTIN_CLUSTER_DEFAULTS
    consensus = (
        _consensus_from_table(_table(doc, "consensus", source), source)
        if "consensus" in doc
        else ConsensusSettings()
    )
    try:
        return ClusterDefaults(
            nodes=_int(cluster, "nodes", where, d.nodes),
            host=_str(cluster, "host", where, d.host),
            base_port=_int(cluster, "base_port", where, d.base_port),
            chain_id=_str(cluster, "chain_id", where, d.chain_id),
            consensus=consensus,
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


# TOML writing: values are only strings, integers and floats in plain tables, so a formatter
# this small is enough, and tomllib reading back what it wrote is tested.


def format_toml(doc: Mapping[str, Mapping[str, str | int | float]], header: str = "") -> str:
    """Render tables of scalar values as TOML; `header` lines become leading comments."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for table_name, table in doc.items():
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(table_name)}]")
        lines.extend(f"{_toml_key(key)} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY_RE.fullmatch(key) else _toml_string(key)


def _toml_value(value: str | int | float) -> str:
    if isinstance(value, bool):  # a bool is an int to Python, but not to TOML
        raise TypeError("format_toml does not write booleans")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"format_toml does not write {value}")
        return repr(value)  # repr always has a '.' or an exponent, so it stays a TOML float
    raise TypeError(f"format_toml cannot write {type(value).__name__}")


def _toml_string(text: str) -> str:
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        elif 0xD800 <= ord(c) <= 0xDFFF:
            raise ValueError("format_toml cannot write a lone surrogate")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


# Reading helpers


def _read_text(path: Path, what: str) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from exc
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {what} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8: {exc}") from exc


def _load_toml(path: Path, what: str) -> dict[str, Any]:
    text = _read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not valid TOML: {exc}") from exc


def _check_keys(table: Mapping[str, Any], allowed: set[str], required: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(table))
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}")


def _table(doc: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    table = doc[name]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {name!r} must be a table ([{name}])")
    return table


def _get(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    """The value of `key` if present (None if not), which must be exactly of `kind` (so a boolean
    is never an integer); an integer is accepted where a float is expected (`base_timeout_s = 1`)."""
    if key not in table:
        return None
    value = table[key]
    if kind is float and type(value) is int:
        return float(value)
    if type(value) is not kind:
        names = {int: "an integer", float: "a number", str: "a string"}
        raise ConfigError(f"{where} {key} must be {names[kind]}, got {type(value).__name__} {value!r}")
    return value


def _int(table: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = _get(table, key, int, where)
    return default if value is None else int(value)


def _float(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = _get(table, key, float, where)
    return default if value is None else float(value)


def _str(table: Mapping[str, Any], key: str, where: str, default: str) -> str:
    value = _get(table, key, str, where)
    return default if value is None else str(value)
