"""The leader schedule: who proposes in which view.

Owns: leader_of. Views are grouped in rounds of n; each round visits every validator once, in an
order shuffled per round by a hash of the chain id and the round number (after an optional
explicit prefix of leaders, which Twins sets).

Why not plain round-robin: the three-chain needs four consecutive views with working leaders
(three blocks, and the next leader to form the QC that commits). With n = 4 and one validator
down, round-robin never has four working leaders in a row, so nothing would ever commit. A
per-round shuffle keeps every validator's share equal and makes such runs occur regularly.
May not: depend on anything but the view and the configuration.
"""

from __future__ import annotations

import functools
import struct

from bft.core.config import ReplicaConfig
from bft.core.types import ValidatorIndex, View
from crypto.hashing import sha256


def leader_of(config: ReplicaConfig, view: View) -> ValidatorIndex:
    if 1 <= view <= len(config.leaders):
        return config.leaders[view - 1]
    n = config.validators.n
    return _round_order(config.chain_id, n, view // n)[view % n]


@functools.lru_cache(maxsize=1024)
def _round_order(chain_id: str, n: int, round_number: int) -> tuple[ValidatorIndex, ...]:
    seed = chain_id.encode() + struct.pack(">Q", round_number)
    order = sorted(range(n), key=lambda i: sha256(seed + struct.pack(">I", i)))
    return tuple(ValidatorIndex(i) for i in order)
