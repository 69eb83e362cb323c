"""Where the simulator meets the Byzantine behaviours: named program factories for campaigns.

Owns: FACTORIES (behaviour name -> simulator program factory) and `behaviour_names`.
May not: hold behaviour logic (that is `bft.adversary`) or simulation logic (that is `bft.sim`).
"""

from __future__ import annotations

from collections.abc import Mapping

from bft.adversary import BEHAVIOURS, Behaviour
from bft.sim.node import NodeContext, ProgramFactory, honest_factory


def _factory(cls: type[Behaviour]) -> ProgramFactory:
    def build(ctx: NodeContext) -> Behaviour:
        return cls(ctx.honest(), ctx.key, ctx.config, ctx.rng)

    return build


FACTORIES: Mapping[str, ProgramFactory] = {
    "honest": honest_factory,
    **{name: _factory(cls) for name, cls in BEHAVIOURS.items()},
}


def behaviour_names() -> list[str]:
    """Behaviours a campaign can name: the wrappers above, plus Twins (a network arrangement)."""
    return [*sorted(BEHAVIOURS), "twins"]
