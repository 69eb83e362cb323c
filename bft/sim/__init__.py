"""The deterministic simulator: seeded schedules of the real core over a simulated network,
clock and disk, with fault plans, Twins and invariants checked after every event.

Public API: `SimSpec`, `run_schedule`, `run_campaign`, `ScheduleResult`, `CampaignResult`,
`NodeContext`, `ProgramFactory` (how Byzantine behaviours are injected), `Factories`, `NodeStorage`
and `StorageFactory` (how the node's storage and application are injected), `Violation`, and the
building blocks (`SimDisk`, `FaultPlan`, `TwinsScenario`, `InvariantChecker`, `Instance`).
May not: import bft.adversary or trio, or do real I/O.
"""

from bft.sim.disk import SimCrash, SimDisk
from bft.sim.faults import CrashEvent, CrashKind, FaultPlan
from bft.sim.invariants import InvariantChecker, Violation
from bft.sim.network import Instance
from bft.sim.node import Factories, NodeContext, ProgramFactory, honest_factory
from bft.sim.runner import run_campaign, run_schedule, sim_key
from bft.sim.spec import HONEST, TWINS, CampaignResult, ScheduleResult, SimSpec
from bft.sim.storage import NodeStorage, StorageContext, StorageFactory, Transactions
from bft.sim.twins import TwinsScenario
from bft.sim.world import TraceEntry

__all__ = [
    "HONEST",
    "TWINS",
    "CampaignResult",
    "CrashEvent",
    "CrashKind",
    "Factories",
    "FaultPlan",
    "Instance",
    "InvariantChecker",
    "NodeContext",
    "NodeStorage",
    "ProgramFactory",
    "ScheduleResult",
    "SimCrash",
    "SimDisk",
    "SimSpec",
    "StorageContext",
    "StorageFactory",
    "TraceEntry",
    "Transactions",
    "TwinsScenario",
    "Violation",
    "honest_factory",
    "run_campaign",
    "run_schedule",
    "sim_key",
]
