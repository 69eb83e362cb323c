"""Where the simulator meets the Byzantine behaviours: named program factories for campaigns,
and campaigns run across worker processes.

Owns: FACTORIES (behaviour name -> simulator program factory), `behaviour_names`, and
`run_campaign_jobs` (a campaign's seeds in N worker processes, results in seed order).
May not: hold behaviour logic (that is `bft.adversary`) or simulation logic (that is `bft.sim`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from types import TracebackType

from bft.adversary import BEHAVIOURS, Behaviour
from bft.adversary.noise import SIBLING_CHAIN_SUFFIX, CrossChain, SiblingChain
from bft.sim.node import NodeContext, ProgramFactory, honest_factory
from bft.sim.runner import collect_campaign, run_campaign, run_schedule, sim_key
from bft.sim.spec import CampaignResult, ScheduleResult, SimSpec
from crypto.signing import SignatureCache


def _factory(cls: type[Behaviour]) -> ProgramFactory:
    def build(ctx: NodeContext) -> Behaviour:
        return cls(ctx.honest(), ctx.key, ctx.config, ctx.rng)

    return build


def _cross_chain(ctx: NodeContext) -> Behaviour:
    """cross-chain with a record of the sibling chain's honest votes: the simulator plays the
    whole network, the sibling chain's too, so it has the validators' keys to stand in for that
    traffic (`bft.adversary.noise.SiblingChain` says why this forges nothing)."""
    validators = ctx.config.validators
    chain_id = ctx.config.chain_id + SIBLING_CHAIN_SUFFIX
    record = SiblingChain(chain_id, validators, [sim_key(i) for i in range(validators.n)])
    return CrossChain(ctx.honest(), ctx.key, ctx.config, ctx.rng, record=record)


FACTORIES: Mapping[str, ProgramFactory] = {
    "honest": honest_factory,
    **{name: _factory(cls) for name, cls in BEHAVIOURS.items()},
    CrossChain.name: _cross_chain,
}


def behaviour_names() -> list[str]:
    """Behaviours a campaign can name: the wrappers above, plus Twins (a network arrangement)."""
    return [*sorted(BEHAVIOURS), "twins"]


def default_factories() -> Mapping[str, ProgramFactory]:
    """FACTORIES, as a module-level function a worker process can be told to call."""
    return FACTORIES


# How a worker finds its factories: a module-level function (pickled by name, not by value).
FactoriesRef = Callable[[], Mapping[str, ProgramFactory]]

# Seeds handed to the pool ahead of the one being reported, per worker: enough to keep every
# worker busy while results are taken in seed order, few enough that Ctrl-C discards little.
_AHEAD_PER_JOB = 4
_JOIN_TIMEOUT_S = 5.0


def run_campaign_jobs(
    spec: SimSpec,
    seeds: Iterable[int],
    jobs: int = 1,
    on_result: Callable[[ScheduleResult], None] | None = None,
    factories: FactoriesRef = default_factories,
) -> CampaignResult:
    """Run every seed, in this process when `jobs` is 1, else in `jobs` worker processes.

    Each schedule is a pure function of (spec, seed, factories), so the results, reported in
    seed order (to `on_result` as well), are the same whatever `jobs` is; only the wall time
    differs. If anything interrupts the campaign (KeyboardInterrupt included), the workers are
    terminated and joined before the exception propagates."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if jobs == 1:
        return run_campaign(spec, seeds, factories(), on_result)
    with _WorkerPool(spec, jobs, factories) as pool:
        return collect_campaign(spec, pool.results(seeds), on_result)


# One worker process's campaign: set once by the pool's initializer.
_worker: tuple[SimSpec, Mapping[str, ProgramFactory], SignatureCache] | None = None


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _init_worker(spec: SimSpec, factories: FactoriesRef) -> None:
    global _worker
    # Ctrl-C reaches the whole foreground process group; the parent alone handles it and
    # terminates the workers, so a worker never dies half-way through sending a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    # A parent that dies without reaping its workers (SIGKILL, SIGTERM) would leave them blocked
    # on the task queue for ever: each worker leaves as soon as its parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), name="exit-with-parent", daemon=True).start()
    _worker = (spec, factories(), SignatureCache())


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _run_seed(seed: int) -> ScheduleResult:
    assert _worker is not None, "worker not initialised"
    spec, factories, cache = _worker
    return run_schedule(spec, seed, factories, sig_cache=cache)


class _WorkerPool:
    """A spawn-started process pool running one campaign; `results` yields in seed order."""

    def __init__(self, spec: SimSpec, jobs: int, factories: FactoriesRef) -> None:
        self.jobs = jobs
        self.executor = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(spec, factories),
        )

    def results(self, seeds: Iterable[int]) -> Iterator[ScheduleResult]:
        todo = iter(seeds)
        pending: deque[Future[ScheduleResult]] = deque(
            self._submit(seed) for seed in islice(todo, self.jobs * _AHEAD_PER_JOB)
        )
        while pending:
            result = pending.popleft().result()
            for seed in islice(todo, 1):
                pending.append(self._submit(seed))
            yield result

    def _submit(self, seed: int) -> Future[ScheduleResult]:
        # A submit may start a worker. It starts with SIGINT blocked (the mask is inherited),
        # so a Ctrl-C while it is still importing stays pending until its initializer ignores
        # it, instead of killing it with a traceback. The parent still sees the Ctrl-C.
        with _sigint_blocked():
            return self.executor.submit(_run_seed, seed)

    def __enter__(self) -> _WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.executor.shutdown(wait=True)
        else:
            self._terminate()

    def _terminate(self) -> None:
        """Drop queued seeds, stop running ones, and reap every worker."""
        processes = list((self.executor._processes or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        # The executor's manager thread may still be starting a worker: wait for it to finish
        # with every worker, then reap whatever it left.
        self.executor.shutdown(wait=True)
        for process in {*processes, *(self.executor._processes or {}).values()}:
            process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
