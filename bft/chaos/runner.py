"""`bft chaos run`: a scenario's plan carried out on a live cluster under load, then judged.

Owns: the run (`run_plan`): the testbed up and connected, the client load, the steps at their
times (each applied step recorded as a `FaultEvent`, each recovery point as a `RecoveryPoint`),
the samplers (every node's `/status` twice a second, its memory, its `/metrics` counters), the
block dumps fetched as the run goes (each block through the checker's `AgreementWatch`, so a
divergence is reported the moment it is seen), the settle phase (everything healed, until every
honest node holds every acknowledged height), and the `RunRecord` it hands the checker.
May not: judge (the checker does), or draw (the plan is fixed before the run starts).

Times are seconds since the load started, on this process's clock. A recovery point from a
restart is recorded once the restarted node's API answers (a Python process takes a second or
two to start on this machine), so that the liveness bound measures the protocol, not `exec`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from bft.chaos.checker import AgreementWatch, Violation
from bft.chaos.control import serve_control
from bft.chaos.load import Load
from bft.chaos.nemesis import Plan, Step, describe_action
from bft.chaos.record import BlockRecord, FaultEvent, RecoveryPoint, RunRecord, StatusSample
from bft.chaos.scenario import Action, Restart, Skew, Wipe
from bft.chaos.testbed import Testbed
from bft.node.logs import kv
from bft.node.metrics import NodeCounters, read_counters

log = logging.getLogger("bft.chaos")

SAMPLE_INTERVAL_S: Final = 0.5
METRICS_EVERY: Final = 4  # samples
FETCH_INTERVAL_S: Final = 2.0
FETCH_BATCH: Final = 200
READY_TIMEOUT_S: Final = 60.0
RESTART_READY_TIMEOUT_S: Final = 30.0
HTTP_TIMEOUT_S: Final = 2.0
# Lifts whose node must be up again before the recovery point counts.
_RESTARTS = (Restart, Skew, Wipe)


@dataclass(slots=True)
class Progress:
    """What the live line shows."""

    heights: dict[int, int | None] = field(default_factory=dict)
    acked: int = 0
    violations: list[Violation] = field(default_factory=list)


class ChaosRun:
    """One run of `plan` on `testbed`. With `control`, it also takes commands on that Unix
    socket (`bft ctl`, `bft.chaos.control`) and runs until `stop()` rather than for the plan's
    duration; `live_line` prints a progress line every few seconds."""

    def __init__(
        self,
        plan: Plan,
        testbed: Testbed,
        command: str,
        settle_s: float,
        say: Callable[[str], None],
        *,
        control: Path | None = None,
        live_line: bool = True,
    ) -> None:
        self.plan = plan
        self.control = control
        self.live_line = live_line
        self._stop = trio.Event()
        self.bed = testbed
        self.command = command
        self.settle_s = settle_s
        self.say = say
        n = testbed.nodes
        self.record = RunRecord(
            scenario=plan.scenario.source,
            seed=plan.seed,
            command=command,
            nodes=n,
            honest=testbed.honest,
            duration_s=plan.duration_s,
            liveness_bound_s=plan.liveness_bound_s,
        )
        self.record.blocks = {i: [] for i in testbed.honest}
        self.watch = AgreementWatch(testbed.honest)
        self.progress = Progress()
        self._t0 = 0.0
        self._open: dict[tuple[str, tuple[int, ...]], int] = {}  # open fault -> index in faults
        self.load = Load(plan.scenario.load, testbed.api_urls, testbed.serving, self.now, plan.seed)

    def now(self) -> float:
        return trio.current_time() - self._t0

    async def run(self) -> RunRecord:
        bed = self.bed
        async with trio.open_nursery() as outer:
            await bed.start(outer)
            try:
                async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
                    await self._wait_ready(http)
                    self._t0 = trio.current_time()
                    self.say(f"cluster ready; running {self.plan.duration_s:.0f} s")
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self.load.run)
                        nursery.start_soon(self._sample, http)
                        nursery.start_soon(self._fetch_blocks, http)
                        if self.live_line:
                            nursery.start_soon(self._live_line)
                        if self.control is not None:
                            await nursery.start(serve_control, self.control, bed.nodes, self.act)
                        await self._steps()
                        with trio.move_on_at(self._t0 + self.plan.duration_s):
                            await self._stop.wait()
                        nursery.cancel_scope.cancel()  # the load stops with the run
                    await self._settle(http)
            finally:
                with trio.CancelScope(shield=True):
                    await bed.stop()
                outer.cancel_scope.cancel()
        self.record.ops = self.load.history.ops
        return self.record

    def stop(self) -> None:
        """End the run now (then settle and hand over the record), e.g. on Ctrl-C."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def act(self, action: Action) -> str:
        """A command from live control: applied and recorded as a scenario step would be; a
        recovery point if it leaves the cluster with no active fault."""
        step = Step(round(self.now(), 3), action, "live control")
        await self._apply(step)
        if not self.bed.active_faults() and step.kind in ("heal", "restart", "resume", "clear"):
            if isinstance(action, _RESTARTS):
                await self._wait_node(step)
            self.record.recoveries.append(RecoveryPoint(round(self.now(), 3), f"{step.kind} (live)"))
        faults = ", ".join(self.bed.active_faults()) or "none"
        return f"{describe_action(action, self.bed.nodes)}; active faults: {faults}"

    # Readiness and steps.

    async def _wait_ready(self, http: httpx.AsyncClient) -> None:
        n = self.bed.nodes
        with trio.move_on_after(READY_TIMEOUT_S) as scope:
            while True:
                statuses = [await _status(http, self.bed.api_url(i)) for i in range(n)]
                if all(s is not None and s.get("peers") == n - 1 for s in statuses):
                    return
                await trio.sleep(0.2)
        if scope.cancelled_caught:
            raise ChaosError(
                f"the cluster did not come up within {READY_TIMEOUT_S:.0f} s (see {self.bed.net_dir})"
            )

    async def _steps(self) -> None:
        points = dict(self.plan.recovery_points())
        for step in self.plan.steps:
            await trio.sleep_until(self._t0 + step.at_s)
            late = self.now() - step.at_s
            await self._apply(step)
            if late > 1.0:
                log.warning(kv(event="step_late", step=step.kind, late_s=round(late, 3)))
            if step.at_s in points and not any(s.at_s == step.at_s for s in self._later(step)):
                what = points.pop(step.at_s)
                if isinstance(step.action, _RESTARTS):
                    await self._wait_node(step)
                self.record.recoveries.append(RecoveryPoint(round(self.now(), 3), what))

    def _later(self, step: Step) -> list[Step]:
        steps = self.plan.steps
        return list(steps[steps.index(step) + 1 :])

    async def _apply(self, step: Step) -> None:
        t = round(self.now(), 3)
        nodes = await self.bed.apply(step.action)
        text = describe_action(step.action, self.bed.nodes)
        log.info(kv(event="chaos_step", t_s=t, step=text))
        kind = step.kind
        self._close(_LIFTS.get(kind, set()), None if kind == "heal" else set(nodes), t)
        instant = kind in _LIFTS or kind == "skew"
        self.record.faults.append(FaultEvent(t, kind, text, nodes, t if instant else None))
        if not instant:
            self._open[(kind, nodes)] = len(self.record.faults) - 1

    def _close(self, kinds: set[str], nodes: set[int] | None, t: float) -> None:
        """End the open faults of `kinds` on any of `nodes` (None: on every node) at `t`."""
        for key in list(self._open):
            kind, touched = key
            if kind in kinds and (nodes is None or nodes & set(touched)):
                index = self._open.pop(key)
                event = self.record.faults[index]
                self.record.faults[index] = FaultEvent(event.t_s, event.kind, event.detail, event.nodes, t)

    async def _wait_node(self, step: Step) -> None:
        """Until every node the step restarted answers /status (bounded)."""
        action = step.action
        nodes = (action.node,) if isinstance(action, Skew) else action.nodes  # type: ignore[union-attr]
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as http:
            with trio.move_on_after(RESTART_READY_TIMEOUT_S):
                for i in nodes:
                    while await _status(http, self.bed.api_url(i)) is None:
                        await trio.sleep(0.1)

    # Sampling.

    async def _sample(self, http: httpx.AsyncClient) -> None:
        count = 0
        while True:
            count += 1
            with_metrics = count % METRICS_EVERY == 1
            async with trio.open_nursery() as nursery:
                for i in range(self.bed.nodes):
                    nursery.start_soon(self._sample_one, http, i, with_metrics)
            await trio.sleep(SAMPLE_INTERVAL_S)

    async def _sample_one(self, http: httpx.AsyncClient, i: int, with_metrics: bool) -> None:
        t = round(self.now(), 3)
        proc = self.bed.procs[i]
        status = await _status(http, self.bed.api_url(i)) if proc.running and not proc.paused else None
        height = _int(status, "height")
        self.progress.heights[i] = height
        counters = None
        if with_metrics and status is not None:
            counters = await _metrics(http, self.bed.api_url(i))
        self.record.samples.append(
            StatusSample(
                t_s=t,
                node=i,
                height=height,
                view=_int(status, "view"),
                rss_bytes=proc.rss_bytes(),
                timeouts=None if counters is None else counters.timeouts,
                tcs=None if counters is None else counters.tcs,
                refusals={} if counters is None else counters.refusals,
            )
        )

    async def _fetch_blocks(self, http: httpx.AsyncClient) -> None:
        while True:
            await self._fetch_round(http)
            await trio.sleep(FETCH_INTERVAL_S)

    async def _fetch_round(self, http: httpx.AsyncClient, limit: int = FETCH_BATCH) -> bool:
        """Fetch up to `limit` new blocks from each honest node; whether all are caught up."""
        caught_up = True
        for i in self.bed.honest:
            top = self.progress.heights.get(i)
            have = self.record.blocks[i]
            if top is None:
                caught_up = False
                continue
            for height in range(len(have) + 1, min(top, len(have) + limit) + 1):
                block = await _block(http, self.bed.api_url(i), height)
                if block is None:
                    caught_up = False
                    break
                have.append(block)
                found = self.watch.on_block(i, block, self.now())
                for violation in found:
                    self.say(f"VIOLATION {violation.format()}")
                self.progress.violations.extend(found)
            if len(have) < top:
                caught_up = False
        return caught_up

    async def _live_line(self) -> None:
        while True:
            await trio.sleep(5.0)
            heights = " ".join(
                f"{i}:{'-' if h is None else h}" for i, h in sorted(self.progress.heights.items())
            )
            ops = self.load.history.ops
            acked = sum(1 for op in ops if op.outcome == "ok")
            faults = ", ".join(self.bed.active_faults()) or "none"
            self.say(f"{self.now():7.1f}s  heights {heights}  ops {len(ops)} ({acked} ok)  faults: {faults}")

    # The end.

    async def _settle(self, http: httpx.AsyncClient) -> None:
        """Heal everything, then wait until every honest node holds every acknowledged height
        (and the same height), fetching their blocks; bounded by `settle_s`."""
        t = round(self.now(), 3)
        await self.bed.heal_everything()
        self._close({kind for kind, _ in self._open}, None, t)
        self.record.faults.append(FaultEvent(t, "heal", "the end of the run: everything healed", (), t))
        self.say(f"{t:.1f}s  run over: everything healed; settling (at most {self.settle_s:.0f} s)")
        wanted = self.load.history.max_acked_height
        with trio.move_on_after(self.settle_s):
            while True:
                await self._sample_heights(http)
                done = await self._fetch_round(http, limit=2000)
                heights = [self.progress.heights.get(i) for i in self.bed.honest]
                if done and all(h is not None and h >= wanted for h in heights) and len(set(heights)) == 1:
                    break
                await trio.sleep(0.5)
        self.record.duration_s = round(self.now(), 3)

    async def _sample_heights(self, http: httpx.AsyncClient) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(self.bed.nodes):
                nursery.start_soon(self._sample_one, http, i, False)


class ChaosError(Exception):
    """The run could not be carried out (the cluster did not start): not a verdict."""


# Which fault kinds each lifting step ends.
_LIFTS: Final = {
    "heal": {"partition", "delay", "drop", "duplicate", "reorder", "bandwidth", "cut"},
    "clear": {"delay", "drop", "duplicate", "reorder", "bandwidth", "cut"},
    "restart": {"kill", "wipe"},
    "resume": {"pause"},
}


async def _status(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await http.get(f"{url}/status")
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _int(doc: dict[str, Any] | None, key: str) -> int | None:
    value = None if doc is None else doc.get(key)
    return value if type(value) is int else None


async def _block(http: httpx.AsyncClient, url: str, height: int) -> BlockRecord | None:
    try:
        response = await http.get(f"{url}/blocks/{height}")
        if response.status_code != 200:
            return None
        doc = response.json()
        return BlockRecord(
            height=int(doc["height"]),
            view=int(doc["view"]),
            id=str(doc["id"]),
            parent_id=str(doc["parent_id"]),
            txs=tuple(base64.b64decode(tx) for tx in doc["txs"]),
            app_hash=str(doc["app_hash"]),
        )
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


async def _metrics(http: httpx.AsyncClient, url: str) -> NodeCounters | None:
    """This node's timeouts sent, TCs and refusals by reason (None if it did not answer)."""
    try:
        response = await http.get(f"{url}/metrics")
        return read_counters(response.text) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def record_path(out: Path) -> Path:
    return out / "record.json"
