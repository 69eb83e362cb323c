"""The leader schedule: who proposes in which view.

Owns: leader_of. Round-robin (view mod n) after an optional explicit prefix of leaders.
May not: depend on anything but the view and the configuration.
"""

from __future__ import annotations

from bft.core.config import ReplicaConfig
from bft.core.types import ValidatorIndex, View


def leader_of(config: ReplicaConfig, view: View) -> ValidatorIndex:
    if 1 <= view <= len(config.leaders):
        return config.leaders[view - 1]
    return ValidatorIndex(view % config.validators.n)
