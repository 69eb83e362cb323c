"""The shape every node program has, honest replica or Byzantine behaviour alike.

Owns: the Program protocol that drivers (the simulator, the trio node) run.
May not: contain behaviour.
"""

from __future__ import annotations

from typing import Protocol

from bft.core.actions import Action
from bft.core.messages import Message
from bft.core.types import ValidatorIndex


class Program(Protocol):
    def on_message(self, sender: ValidatorIndex, msg: Message, now: float) -> list[Action]:
        """Handle one message whose sender the driver authenticated."""
        ...

    def on_timer(self, now: float) -> list[Action]:
        """Called once `now >= next_deadline()`."""
        ...

    def on_payload(self, now: float) -> list[Action]:
        """New transactions are available for proposals (a leader waiting to fill a batch may go)."""
        ...

    def next_deadline(self) -> float | None:
        """When on_timer next wants to run (absolute time), or None."""
        ...
