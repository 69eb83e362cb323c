"""The `--commit-chain` option of the commands that set up a chain: `bft testnet`, `bft cluster`
and `bft bench` (its local cluster).

Owns: `add_commit_chain_option`, the one definition of the flag (its choices and what its help
says), so that every command names the commit rule the same way.
May not: know what a command does with the value (it ends up in the genesis' "commit_chain",
`bft.node.config`).
"""

from __future__ import annotations

import argparse
from typing import Final

from bft.core.commit_rule import COMMIT_CHAINS, DEFAULT_COMMIT_CHAIN

COMMIT_CHAIN_HELP: Final = "the commit rule: 3 (chained HotStuff's three-chain) or 2 (Jolteon's two-chain)"


def add_commit_chain_option(
    parser: argparse.ArgumentParser, *, default: int | None = DEFAULT_COMMIT_CHAIN, more_help: str = ""
) -> None:
    """Add `--commit-chain {2,3}` to `parser`, `default` when absent; `more_help` ends its help
    (by default it says the default)."""
    parser.add_argument(
        "--commit-chain",
        type=int,
        choices=COMMIT_CHAINS,
        default=default,
        help=f"{COMMIT_CHAIN_HELP}; {more_help or f'default {default}'}",
    )
