"""The `--quorum-store` option of the commands that set up a chain: `bft testnet`, `bft cluster`
and `bft bench` (its local cluster).

Owns: `add_quorum_store_option`, the one definition of the flag (what its help says), so that
every command names the quorum store the same way.
May not: know what a command does with the value (it ends up in the genesis' "quorum_store",
`bft.node.config`).
"""

from __future__ import annotations

import argparse
from typing import Final

QUORUM_STORE_HELP: Final = (
    "the genesis disseminates batches apart from ordering: each validator packs its clients' "
    "transactions into batches it sends to its peers (no mempool gossip), and proposals carry "
    "proofs of availability (f+1 signed acknowledgements) instead of transactions"
)


def add_quorum_store_option(parser: argparse.ArgumentParser, *, more_help: str = "") -> None:
    """Add `--quorum-store` (a switch, False when absent) to `parser`; `more_help` ends its help
    (by default it says that the default is off)."""
    parser.add_argument(
        "--quorum-store",
        action="store_true",
        help=f"{QUORUM_STORE_HELP}; {more_help or 'default off'}",
    )
