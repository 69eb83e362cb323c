"""The `--leader-reputation` option of the commands that set up a chain: `bft testnet`,
`bft cluster`, `bft bench` (its local cluster) and `bft sim`.

Owns: `add_leader_reputation_option`, the one definition of the flag and its help.
May not: know what a command does with the value (it ends up in the genesis'
"leader_reputation", `bft.node.config`, or the simulator's spec).
"""

from __future__ import annotations

import argparse
from typing import Final

LEADER_REPUTATION_HELP: Final = (
    "the genesis chooses leaders from the chain's recent history (bft.core.reputation): a "
    "validator that failed its turn and shows no sign of life since (no vote) is skipped until it "
    "votes again"
)


def add_leader_reputation_option(parser: argparse.ArgumentParser, *, more_help: str = "") -> None:
    """Add `--leader-reputation` (a switch, False when absent) to `parser`; `more_help` ends its help."""
    parser.add_argument(
        "--leader-reputation",
        action="store_true",
        help=f"{LEADER_REPUTATION_HELP}; {more_help or 'default off'}",
    )
