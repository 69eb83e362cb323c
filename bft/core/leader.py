"""The leader schedule: who proposes in which view.

Owns: leader_of. A leader holds a term of two consecutive views; terms are grouped in rounds of
n, each round visiting every validator once, in an order shuffled per round by a hash of the
chain id and the round number (after an optional explicit prefix of leaders, which Twins sets).

Why: the three-chain needs four consecutive views with working leaders (three blocks, and the
next leader to form the QC that commits). With plain round-robin, n = 4 and one validator down,
that never happens, so nothing would commit. With two-view terms, a round of 2n views always has
a run of at least four working views while at most f validators are down (the n - f working
terms fall into at most f + 1 runs, one of which holds two terms), and the shuffle keeps every
validator's share equal.
May not: depend on anything but the view and the configuration. (With the genesis' leader
reputation, `bft.core.reputation` skips the terms of validators the chain's recent history sets
aside, on top of this schedule.)
"""

from __future__ import annotations

import functools
import struct

from bft.core.config import ReplicaConfig
from bft.core.types import ValidatorIndex, View
from crypto.hashing import sha256

TERM_VIEWS = 2


def leader_of(config: ReplicaConfig, view: View) -> ValidatorIndex:
    if 1 <= view <= len(config.leaders):
        return config.leaders[view - 1]
    n = config.validators.n
    term = view // TERM_VIEWS
    return round_order(config.chain_id, n, term // n)[term % n]


@functools.lru_cache(maxsize=1024)
def round_order(chain_id: str, n: int, round_number: int) -> tuple[ValidatorIndex, ...]:
    seed = chain_id.encode() + struct.pack(">Q", round_number)
    order = sorted(range(n), key=lambda i: sha256(seed + struct.pack(">I", i)))
    return tuple(ValidatorIndex(i) for i in order)
