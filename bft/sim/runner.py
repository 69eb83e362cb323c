"""Running schedules and campaigns of schedules.

Owns: `run_schedule` (one seed), `run_campaign` (a range of seeds in this process, with a
shared signature cache and deterministic validator keys), `collect_campaign` (schedule results,
from here or from worker processes, folded into a campaign result), and `sim_key`. A schedule
is a pure function of (spec, seed, factories): replaying a seed reproduces it exactly.
May not: import bft.adversary (behaviours arrive as factories) or trio, or do real I/O; it
reads the wall clock only to report schedules per second.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable

from bft.sim.node import Factories
from bft.sim.spec import CampaignResult, ScheduleResult, SimSpec
from bft.sim.world import TraceEntry, World
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache


@functools.cache
def sim_key(index: int) -> PrivateKey:
    """Validator `index`'s simulation key: a function of the index only, cached."""
    return PrivateKey.from_seed(sha256(b"sim-key-%d" % index))


def run_schedule(
    spec: SimSpec,
    seed: int,
    factories: Factories,
    *,
    sig_cache: SignatureCache | None = None,
    trace: list[TraceEntry] | None = None,
) -> ScheduleResult:
    """Run one seeded schedule. Pass a list as `trace` to collect (time, instance, event) lines."""
    cache = SignatureCache() if sig_cache is None else sig_cache
    return World(spec, seed, factories, sim_key, cache, trace).run()


def run_campaign(
    spec: SimSpec,
    seeds: Iterable[int],
    factories: Factories,
    on_result: Callable[[ScheduleResult], None] | None = None,
) -> CampaignResult:
    """Run every seed in this process; violations are collected with their seeds, never raised."""
    cache = SignatureCache()
    schedules = (run_schedule(spec, seed, factories, sig_cache=cache) for seed in seeds)
    return collect_campaign(spec, schedules, on_result)


def collect_campaign(
    spec: SimSpec,
    schedules: Iterable[ScheduleResult],
    on_result: Callable[[ScheduleResult], None] | None = None,
) -> CampaignResult:
    """Fold schedule results, in the order given, into a campaign result, calling `on_result`
    after each. The wall time covers the whole iteration, producing the results included, so
    schedules per second means the same whether they ran here or in worker processes."""
    result = CampaignResult(spec)
    started = time.perf_counter()
    for r in schedules:
        result.schedules += 1
        result.total_commits += r.commits
        result.events += r.events
        result.sim_time_s += r.sim_time_s
        if not r.ok:
            result.failures.extend((r.seed, v) for v in r.violations)
            result.failed.append(r)
        if on_result is not None:
            on_result(r)
        result.wall_time_s = time.perf_counter() - started
    result.wall_time_s = time.perf_counter() - started
    return result
