"""The health rule (`bft.node.health`): a quorum connected and a recent commit, at the bounds."""

from __future__ import annotations

from bft.core.config import DEFAULT_BASE_TIMEOUT_S
from bft.node.health import HEALTH_COMMIT_TIMEOUTS, assess_health, commit_window_s


def test_the_window_is_a_few_base_timeouts_and_detection_fits_in_10_s_by_default() -> None:
    assert commit_window_s(2.0) == 2.0 * HEALTH_COMMIT_TIMEOUTS
    # One down leader's term costs 3 base timeouts; the window must outlast it.
    assert commit_window_s(1.0) > 3.0
    assert commit_window_s(DEFAULT_BASE_TIMEOUT_S) <= 6.0


def test_a_quorum_exactly_and_a_commit_exactly_at_the_window_are_healthy() -> None:
    health = assess_health(
        validators=4, quorum=3, connected_peers=2, height=5, last_commit_age_s=5.0, window_s=5.0
    )
    assert (health.healthy, health.reason, health.connected_validators) == (True, None, 3)


def test_one_short_of_a_quorum_or_just_past_the_window_is_not() -> None:
    short = assess_health(
        validators=7, quorum=5, connected_peers=3, height=5, last_commit_age_s=0.0, window_s=5.0
    )
    assert (short.healthy, short.reason) == (False, "connected to 4 of 7 validators, a quorum is 5")
    stale = assess_health(
        validators=4, quorum=3, connected_peers=3, height=5, last_commit_age_s=5.2, window_s=5.0
    )
    assert (stale.healthy, stale.reason) == (False, "no commit for 5.2 s (at most 5.0 s)")


def test_a_node_that_never_committed_says_so() -> None:
    fresh = assess_health(
        validators=4, quorum=3, connected_peers=3, height=0, last_commit_age_s=8.0, window_s=5.0
    )
    assert fresh.reason == "no commit since start for 8.0 s (at most 5.0 s)"
