"""Shared builders for the core's unit tests: real keys, real signatures, real certificates.

Owns: a 4-validator test chain, block/QC/TC/proposal builders, an in-memory safety store that
records every save, a payload source, and a tiny synchronous message pump for whole clusters.
May not: reach into the core beyond its public constructors (tests may, this module does not).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar

from bft.core import wire
from bft.core.actions import Action, Broadcast, Commit, Refusal, Send, SendRaw, ViewChange
from bft.core.batch_store import MemoryBatchStore
from bft.core.blocktree import BlockTree, genesis
from bft.core.builder import build_replica
from bft.core.certs import Certifier
from bft.core.chain import MemoryChain
from bft.core.config import ReplicaConfig
from bft.core.journal import MemoryJournal
from bft.core.leader import leader_of
from bft.core.messages import (
    Block,
    Message,
    Proposal,
    QuorumCert,
    SafetyState,
    Timeout,
    TimeoutCert,
    Vote,
)
from bft.core.ports import PayloadSource, Ports
from bft.core.replica import Replica
from bft.core.safety import SafetyRules, initial_state
from bft.core.types import BlockId, ValidatorIndex, ValidatorSet, View
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

_A = TypeVar("_A")

CHAIN = "core-test-chain"
N = 4
KEYS = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(N)]
VALIDATORS = ValidatorSet(tuple(k.public_key for k in KEYS))
GENESIS_BLOCK, GENESIS_QC = genesis(CHAIN)
# The recovery probe's nonce of every replica built here (`bft.core.recovery`).
NONCE: Final = bytes(range(16))


def vi(i: int) -> ValidatorIndex:
    return ValidatorIndex(i)


def leader(view: int, **overrides: Any) -> ValidatorIndex:
    """The leader of `view` under the test chain's (default or overridden) schedule."""
    return leader_of(config(0, **overrides), View(view))


def certifier(chain_id: str = CHAIN) -> Certifier:
    return Certifier(chain_id, VALIDATORS, genesis(chain_id)[1], SignatureCache())


_SIGNER = Certifier(CHAIN, VALIDATORS, GENESIS_QC, SignatureCache())


def sign_vote(signer: int, view: int, block_id: bytes, chain_id: str = CHAIN) -> Vote:
    c = _SIGNER if chain_id == CHAIN else certifier(chain_id)
    return c.sign_vote(KEYS[signer], vi(signer), View(view), BlockId(block_id))


def sign_timeout(signer: int, view: int, high_qc: QuorumCert) -> Timeout:
    return _SIGNER.sign_timeout(KEYS[signer], vi(signer), View(view), high_qc)


def make_qc(
    block_id: bytes, view: int, signers: Iterable[int] = (0, 1, 2), chain_id: str = CHAIN
) -> QuorumCert:
    """A real QC: votes signed by `signers`, signatures sorted by signer."""
    sigs = sorted((vi(s), sign_vote(s, view, block_id, chain_id).signature) for s in signers)
    return QuorumCert(View(view), BlockId(block_id), tuple(sigs))


def qc_for(block: Block, signers: Iterable[int] = (0, 1, 2)) -> QuorumCert:
    return make_qc(block.id, block.view, signers)


def make_tc(view: int, high_qcs: dict[int, QuorumCert]) -> TimeoutCert:
    """A real TC for `view` from the signers in `high_qcs`, each with its own high QC."""
    timeouts = [sign_timeout(s, view, qc) for s, qc in sorted(high_qcs.items())]
    high = max(high_qcs.values(), key=lambda qc: qc.view)
    sigs = tuple((t.author, t.high_qc.view, t.signature) for t in timeouts)
    return TimeoutCert(View(view), high, sigs)


def make_block(
    parent: Block,
    view: int,
    *,
    qc: QuorumCert | None = None,
    proposer: int | None = None,
    txs: tuple[bytes, ...] | None = None,
    height: int | None = None,
) -> Block:
    """A child of `parent`; by default carries a real QC for `parent` and the view's leader."""
    return Block(
        view=View(view),
        height=parent.height + 1 if height is None else height,
        parent_id=parent.id,
        proposer=vi(leader(view) if proposer is None else proposer),
        qc=qc if qc is not None else (GENESIS_QC if parent.height == 0 else qc_for(parent)),
        txs=(f"tx-{view}-{parent.id.hex()[:8]}".encode(),) if txs is None else txs,
    )


def make_proposal(block: Block, tc: TimeoutCert | None = None, signer: int | None = None) -> Proposal:
    key = KEYS[block.proposer if signer is None else signer]
    return Proposal(block, tc, _SIGNER.sign_proposal(key, block))


def chain(parent: Block, views: Iterable[int]) -> list[Block]:
    """Blocks extending `parent` in the given views, each carrying a real QC for its parent."""
    out: list[Block] = []
    for v in views:
        parent = make_block(parent, v)
        out.append(parent)
    return out


def tree_with(blocks: Iterable[Block]) -> BlockTree:
    tree = BlockTree(GENESIS_BLOCK, GENESIS_QC)
    for b in blocks:
        tree.add(b)
    return tree


FIRST_STATE: Final = initial_state(GENESIS_QC)
LOST: Final = None


class MemoryStore:
    """An in-memory SafetyStore recording every save; `fail` makes save raise before storing.
    It starts with the first record of a new chain, as `bft testnet` writes it; `LOST` (None) is
    a validator whose record is gone."""

    def __init__(self, state: SafetyState | None = FIRST_STATE) -> None:
        self.saves: list[SafetyState] = []
        self.state = state
        self.fail = False

    def load(self) -> SafetyState | None:
        return self.state

    def save(self, state: SafetyState) -> None:
        if self.fail:
            raise OSError("disk full")
        self.saves.append(state)
        self.state = state


def safety_rules(store: MemoryStore | None = None, me: int = 0, commit_chain: int = 3) -> SafetyRules:
    return SafetyRules(KEYS[me], vi(me), store or MemoryStore(), _SIGNER, GENESIS_QC, commit_chain)


class Payload:
    """Two transactions per view, unique to the proposing replica and view."""

    def __init__(self, me: int) -> None:
        self.me = me

    def payload_for(self, view: View, exclude: Collection[bytes]) -> tuple[bytes, ...]:
        txs = (f"tx-{self.me}-{view}-a".encode(), f"tx-{self.me}-{view}-b".encode())
        return tuple(tx for tx in txs if tx not in exclude)


def config(me: int, **overrides: Any) -> ReplicaConfig:
    # Core tests expect a leader to propose at once unless a test batches on purpose.
    return ReplicaConfig(
        chain_id=CHAIN, validators=VALIDATORS, me=vi(me), **{"max_batch_delay_s": 0.0, **overrides}
    )


def make_replica(
    me: int,
    store: MemoryStore | None = None,
    now: float = 0.0,
    *,
    chain: MemoryChain | None = None,
    journal: MemoryJournal | None = None,
    payload: PayloadSource | None = None,
    batches: MemoryBatchStore | None = None,
    **overrides: Any,
) -> Replica:
    """A replica built as every driver builds one, over in-memory ports (fresh ones by default)."""
    chain = chain if chain is not None else MemoryChain(GENESIS_BLOCK, GENESIS_QC)
    ports = Ports(
        store or MemoryStore(),
        journal if journal is not None else MemoryJournal(),
        chain,
        chain,
        payload if payload is not None else Payload(me),
        batches if batches is not None else MemoryBatchStore(),
    )
    return build_replica(config(me, **overrides), KEYS[me], ports, now, SignatureCache(), NONCE)


def of_type(actions: Iterable[Action], kind: type[_A]) -> list[_A]:
    return [a for a in actions if isinstance(a, kind)]


def refusals(actions: Iterable[Action]) -> list[Refusal]:
    return of_type(actions, Refusal)


def sent_messages(actions: Iterable[Action]) -> list[Message]:
    out: list[Message] = []
    for a in actions:
        if isinstance(a, Send | Broadcast):
            out.append(a.msg)
    return out


@dataclass
class Cluster:
    """N replicas wired by an instant FIFO network; timers fire only when the network is idle.

    `down` replicas neither send nor receive (a partition) and their timers do not fire.
    `lifo` delivers the newest message first (a reordering network) instead of FIFO.
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    lifo: bool = False
    replicas: list[Replica] = field(init=False)
    stores: list[MemoryStore] = field(init=False)
    # Each replica's durable committed chain (its block store), which a restart keeps.
    chains: list[MemoryChain] = field(init=False)
    queue: deque[tuple[int, int, Message]] = field(init=False, default_factory=deque)
    commits: list[list[Block]] = field(init=False)
    commit_actions: list[list[Commit]] = field(init=False)
    refused: list[list[Refusal]] = field(init=False)
    view_changes: list[list[ViewChange]] = field(init=False)
    delivered: list[tuple[int, int, Message]] = field(init=False, default_factory=list)
    down: set[int] = field(init=False, default_factory=set)
    now: float = 0.0

    def __post_init__(self) -> None:
        self.stores = [MemoryStore() for _ in range(N)]
        self.chains = [MemoryChain(GENESIS_BLOCK, GENESIS_QC) for _ in range(N)]
        self.replicas = [
            make_replica(i, self.stores[i], chain=self.chains[i], **self.overrides) for i in range(N)
        ]
        self.commits = [[] for _ in range(N)]
        self.commit_actions = [[] for _ in range(N)]
        self.refused = [[] for _ in range(N)]
        self.view_changes = [[] for _ in range(N)]

    def handle(self, i: int, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                assert a.to != i, "a replica never sends to itself"
                self.queue.append((i, a.to, a.msg))
            elif isinstance(a, Broadcast):
                self.queue.extend((i, j, a.msg) for j in range(N) if j != i)
            elif isinstance(a, Commit):
                self.commits[i].extend(a.blocks)
                self.commit_actions[i].append(a)
            elif isinstance(a, Refusal):
                self.refused[i].append(a)
            elif isinstance(a, ViewChange):
                self.view_changes[i].append(a)
            else:
                assert not isinstance(a, SendRaw), "an honest replica never sends raw bytes"

    def step(self) -> None:
        """Deliver one message, or, if none is queued, advance time to the next deadline."""
        if self.queue:
            src, dst, msg = self.queue.pop() if self.lifo else self.queue.popleft()
            if src in self.down or dst in self.down:
                return
            self.delivered.append((src, dst, msg))
            self.handle(dst, self.replicas[dst].on_message(vi(src), msg, self.now))
            return
        up = [i for i in range(N) if i not in self.down]
        deadlines = [d for i in up if (d := self.replicas[i].next_deadline()) is not None]
        self.now = max(self.now, min(deadlines))
        for i in up:
            deadline = self.replicas[i].next_deadline()
            if deadline is not None and deadline <= self.now:
                self.handle(i, self.replicas[i].on_timer(self.now))

    def run(self, until: Callable[[], bool], max_steps: int = 20_000) -> None:
        for _ in range(max_steps):
            if until():
                return
            self.step()
        raise AssertionError(f"condition not reached in {max_steps} steps; heights {self.heights()}")

    def heights(self) -> list[int]:
        return [r.committed_height for r in self.replicas]


class Recording:
    """A program that records what reaches it (and does nothing)."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, Message]] = []
        self.payloads = 0

    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        self.messages.append((sender, msg))
        return []

    def on_timer(self, now: float) -> list[Action]:
        return []

    def on_payload(self, now: float) -> list[Action]:
        self.payloads += 1
        return []

    def next_deadline(self) -> float | None:
        return None


def with_state(**changes: Any) -> SafetyState:
    """A safety state derived from the initial one."""
    base = SafetyState(View(0), GENESIS_QC, View(0), None, None)
    return replace(base, **changes)


def encoded(msg: Message) -> bytes:
    return wire.encode(msg)
