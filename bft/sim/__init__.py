"""The deterministic simulator: seeded schedules of the real core over a simulated network,
clock and disk, with fault plans, Twins and invariants checked after every event.

Public API: `SimSpec`, `run_schedule`, `run_campaign`, `ScheduleResult`, `CampaignResult`,
`NodeContext`, `ProgramFactory`, `Violation`.
May not: import bft.adversary or trio, or do real I/O.
"""

from bft.sim.invariants import Violation
from bft.sim.node import NodeContext, ProgramFactory, honest_factory
from bft.sim.runner import run_campaign, run_schedule, sim_key
from bft.sim.spec import HONEST, TWINS, CampaignResult, ScheduleResult, SimSpec

__all__ = [
    "HONEST",
    "TWINS",
    "CampaignResult",
    "NodeContext",
    "ProgramFactory",
    "ScheduleResult",
    "SimSpec",
    "Violation",
    "honest_factory",
    "run_campaign",
    "run_schedule",
    "sim_key",
]
