"""Leader reputation: who leads a view, from the recent history of the chain a proposal extends.

Owns: `Record` (what a block tells of the validators: its proposer, the leaders it records as
failed, the signers of its QC), `window_blocks`, `benched` (the validators a window's history
sets aside), `reputation_leader` and `failed_leaders_between` (and their `_without` forms, for
a caller that keeps the benched set of a block).
May not: read a store or a clock; the chain state hands in the window (newest block first).

The rule, with the genesis' `"leader_reputation": true` (else `bft.core.leader.leader_of` alone).
- The window of a block P is P and its ancestors, the newest `window_blocks(n)` of them (genesis
  left out). Every replica that checks a proposal extending P has P, so every honest replica
  computes the same leaders from it: the schedule is a function of the chain, not of what a
  replica happens to have committed (Aptos computes it from committed history, which a lagging
  replica has less of; here a lagging replica fetches P's ancestors before it votes anyway).
- A block records the leaders of the views between its parent's and its own, which produced no
  block of its chain (`failed_leaders`, computed with its parent's window; voters check it), so
  that a window says who failed without replaying older windows.
- A validator is benched by a window if
  - it failed a turn (a block in the window names it) and has not proposed a block since, and
    either it has not voted since (no QC in the window after its failure carries its signature:
    crashed, partitioned) or it failed twice in the window (it votes but does not lead: too slow
    to, or Byzantine); or
  - the window is full and it neither proposed nor voted in it (long gone: its failure aged out).
  At most f validators are benched (the most failures first, then the longest silent, then the
  lowest index), so the schedule keeps n - f of them, at least f + 1 honest.
- The schedule is `leader_of`'s two-view terms in rounds shuffled per round; a benched
  validator's term goes to the next validator of that round's order that is not benched.
- How a benched validator regains its turn: by voting. Its signature in any QC of the window
  after its last failure ends the bench (unless it failed twice: then its failures must leave the
  window first, `window_blocks(n)` blocks). A restarted validator catches up, votes, and leads
  again in the next round; one that stays down costs its first term only (one or two view
  timeouts), and then nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bft.core.config import ReplicaConfig
from bft.core.leader import TERM_VIEWS, round_order
from bft.core.messages import Block
from bft.core.types import ValidatorIndex, View, max_faulty

# A window holds this many blocks per validator: long enough that every validator leads a few
# times in it, short enough that a crash is forgotten soon after the validator is back.
WINDOW_BLOCKS_PER_VALIDATOR = 10


@dataclass(frozen=True, slots=True)
class Record:
    """What one block of a window says: who proposed it, who failed before it, who voted for its parent."""

    proposer: ValidatorIndex
    failed: tuple[ValidatorIndex, ...]
    voters: frozenset[ValidatorIndex]

    @staticmethod
    def of(block: Block) -> Record:
        return Record(block.proposer, block.failed_leaders, frozenset(s for s, _ in block.qc.signatures))


def window_blocks(n: int) -> int:
    return WINDOW_BLOCKS_PER_VALIDATOR * n


def benched(n: int, window: Sequence[Record]) -> frozenset[ValidatorIndex]:
    """The validators `window` (newest first) sets aside (module header)."""
    proposed: dict[int, int] = {}  # validator -> age (0: newest) of its newest proposal
    voted: dict[int, int] = {}
    failed: dict[int, int] = {}
    failures: dict[int, int] = {}
    for age, record in enumerate(window):
        proposed.setdefault(record.proposer, age)
        for v in record.voters:
            voted.setdefault(v, age)
        for v in record.failed:
            failed.setdefault(v, age)
            failures[v] = failures.get(v, 0) + 1
    full = len(window) >= window_blocks(n)
    candidates = []
    for v in map(ValidatorIndex, range(n)):
        since_proposal = v in failed and failed[v] < proposed.get(v, len(window))
        voted_since = v in failed and voted.get(v, len(window)) < failed[v]
        failing = since_proposal and (not voted_since or failures[v] >= 2)
        silent = full and v not in proposed and v not in voted
        if failing or silent:
            last_seen = min(proposed.get(v, len(window)), voted.get(v, len(window)))
            candidates.append((-failures.get(v, 0), -last_seen, v))
    return frozenset(ValidatorIndex(v) for _, _, v in sorted(candidates)[: max_faulty(n)])


def reputation_leader(config: ReplicaConfig, view: View, window: Sequence[Record]) -> ValidatorIndex:
    """The leader of `view` for a proposal whose parent's window is `window` (newest first)."""
    return leader_without(config, view, benched(config.validators.n, window))


def leader_without(config: ReplicaConfig, view: View, out: frozenset[ValidatorIndex]) -> ValidatorIndex:
    """The leader of `view` when the validators in `out` are benched."""
    if 1 <= view <= len(config.leaders):
        return config.leaders[view - 1]
    n = config.validators.n
    term = view // TERM_VIEWS
    order = round_order(config.chain_id, n, term // n)
    position = term % n
    for step in range(n):
        candidate = order[(position + step) % n]
        if candidate not in out:
            return candidate
    return order[position]  # unreachable: at most f of n are benched


def failed_leaders_between(
    config: ReplicaConfig, parent_view: View, view: View, window: Sequence[Record]
) -> tuple[ValidatorIndex, ...]:
    """The leaders (distinct, ascending) of the views strictly between `parent_view` and `view`,
    by the schedule of the parent's `window`: what a block of `view` records."""
    return failed_leaders_without(config, parent_view, view, benched(config.validators.n, window))


def failed_leaders_without(
    config: ReplicaConfig, parent_view: View, view: View, out: frozenset[ValidatorIndex]
) -> tuple[ValidatorIndex, ...]:
    """`failed_leaders_between` when the validators in `out` are benched. Every 4n views hold a
    whole round, which names every leader the schedule has, so no more are looked at."""
    seen: set[ValidatorIndex] = set()
    last = min(view, parent_view + 1 + 4 * config.validators.n + len(config.leaders))
    for u in range(parent_view + 1, last):
        seen.add(leader_without(config, View(u), out))
    return tuple(sorted(seen))
