"""The pacemaker: the current view and its local timeout.

Owns: entering views (only ever forwards), the timeout deadline, exponential backoff with a cap,
and resetting the backoff on progress (a QC).
May not: sign or send; the replica turns a fired deadline into a timeout message.
"""

from __future__ import annotations

from bft.core.config import ReplicaConfig
from bft.core.types import View


class Pacemaker:
    def __init__(self, config: ReplicaConfig, view: View, now: float) -> None:
        self._config = config
        self._view = view
        self._consecutive_timeouts = 0
        self._deadline = now + self.timeout_s()

    @property
    def view(self) -> View:
        return self._view

    @property
    def deadline(self) -> float:
        return self._deadline

    def timeout_s(self) -> float:
        c = self._config
        return min(c.base_timeout_s * c.timeout_backoff**self._consecutive_timeouts, c.max_timeout_s)

    def enter(self, view: View, now: float, progress: bool) -> bool:
        """Move to `view` if it is ahead. `progress` (entered through a QC) resets the backoff."""
        if view <= self._view:
            return False
        self._view = view
        if progress:
            self._consecutive_timeouts = 0
        self._deadline = now + self.timeout_s()
        return True

    def on_local_timeout(self, now: float) -> None:
        """The deadline fired in the current view: back off and arm the next (re-send) deadline."""
        # Bounded so the backoff arithmetic never overflows; the cap binds long before.
        self._consecutive_timeouts = min(self._consecutive_timeouts + 1, 64)
        self._deadline = now + self.timeout_s()
