"""Whether a node is healthy, as `GET /health` answers (200 if so, else 503 with the reason).

Owns: the rule and its window. A node is healthy while both hold:
- it is connected to a quorum: itself plus its connected peers are at least 2f+1 of the
  validators (by count: validators have no voting power here, each counts one);
- it is committing: its last commit (or, before the first one, its start) is at most
  `commit_window_s(base_timeout_s)` old.
May not: read the node or a clock; the runtime passes the numbers in.

Why "committing" is simply a recent commit: an idle chain keeps committing. A leader proposes
as soon as it holds its justification (an idle one after at most `max_batch_delay_s`), empty
block or not, so a healthy 4-node testnet with no load commits about 15 blocks a second. A node
that has not committed for several view timeouts is therefore cut off or stuck, not idle.

Why the window is HEALTH_COMMIT_TIMEOUTS base timeouts (5 s at the default base of 1 s): with up
to f validators down the chain stays live, and one down leader's term of two views costs a base
timeout plus a backed-off one (3 base timeouts) before a TC moves everyone on, then a few quick
views to the next commit; 5 base timeouts cover that with room. It is short enough that a stall
is reported within about 5 s (the acceptance bound is 10 s). What it does not cover: two dead
terms back to back (a down validator ending one shuffled round of leaders and starting the next)
cost 1 + 2 + 4 + 8 = 15 base timeouts, and for those seconds the chain really commits nothing:
/health says so until the next commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HEALTH_COMMIT_TIMEOUTS: Final = 5.0


def commit_window_s(base_timeout_s: float) -> float:
    """How long a healthy node may go without a commit (see the module docstring)."""
    return HEALTH_COMMIT_TIMEOUTS * base_timeout_s


@dataclass(frozen=True, slots=True)
class Health:
    """The verdict and the numbers it was made from. `reason` is None when healthy, else every
    failed condition, in words."""

    healthy: bool
    reason: str | None
    validators: int
    quorum: int
    connected_validators: int
    height: int
    last_commit_age_s: float
    commit_window_s: float


def assess_health(
    *,
    validators: int,
    quorum: int,
    connected_peers: int,
    height: int,
    last_commit_age_s: float,
    window_s: float,
) -> Health:
    """The health of a node connected to `connected_peers` others, whose last commit (or start)
    was `last_commit_age_s` ago."""
    connected = connected_peers + 1
    reasons: list[str] = []
    if connected < quorum:
        reasons.append(f"connected to {connected} of {validators} validators, a quorum is {quorum}")
    if last_commit_age_s > window_s:
        since = "no commit" if height > 0 else "no commit since start"
        reasons.append(f"{since} for {last_commit_age_s:.1f} s (at most {window_s:.1f} s)")
    return Health(
        healthy=not reasons,
        reason="; ".join(reasons) if reasons else None,
        validators=validators,
        quorum=quorum,
        connected_validators=connected,
        height=height,
        last_commit_age_s=round(last_commit_age_s, 3),
        commit_window_s=window_s,
    )
