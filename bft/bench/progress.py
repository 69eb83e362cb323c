"""The progress display of `bft bench` on stderr, while the load runs.

Owns: `Progress` (what the view shows: phase, counts, live rate, recent p50, each node's height),
the poller of the nodes' heights (`poll_heights`), and the display itself (`show_progress`: a
rich Live panel on a terminal, else a plain line every few seconds); both run until cancelled.
May not: write to stdout (it belongs to the report); change what the load records; import trio,
httpx or rich at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from bft.bench.probe import fetch_status, int_field
from bft.bench.report import format_ms
from bft.bench.stats import Recorder

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from rich.table import Table

HEIGHT_POLL_S: Final = 0.5
LIVE_REFRESH_PER_S: Final = 4
PLAIN_PROGRESS_S: Final = 5.0


@dataclass(slots=True)
class Progress:
    """What the live view shows; written by the load and the height poller, read by the view."""

    started: float
    recorder: Recorder
    apis: Sequence[str]
    heights: list[int | None]

    def phase(self, now: float) -> str:
        if now < self.recorder.window_start:
            return "warm-up"
        return "measuring" if now < self.recorder.window_end else "finishing"

    def line(self, now: float) -> str:
        total = self.recorder.total
        p50 = self.recorder.recent_p50_ms()
        heights = " ".join("-" if h is None else str(h) for h in self.heights)
        return (
            f"{now - self.started:6.1f} s {self.phase(now):9}  submitted {total.submitted}  "
            f"committed {total.committed}  {self.recorder.rate_per_s(now, self.started):.1f} tx/s  "
            f"p50 {format_ms(p50)} ms  heights {heights}"
        )

    def panel(self, now: float) -> Table:
        from rich.table import Table

        table = Table(title="bft bench — Ctrl-C stops the run and every node it started")
        table.add_column("")
        table.add_column("", justify="right")
        total = self.recorder.total
        table.add_row("elapsed", f"{now - self.started:.1f} s ({self.phase(now)})")
        table.add_row("submitted", str(total.submitted))
        table.add_row("committed", str(total.committed))
        table.add_row("tx/s", f"{self.recorder.rate_per_s(now, self.started):.1f}")
        table.add_row("p50 (recent)", f"{format_ms(self.recorder.recent_p50_ms())} ms")
        for i, (api, height) in enumerate(zip(self.apis, self.heights, strict=True)):
            table.add_row(f"node {i} height ({api})", "-" if height is None else str(height))
        return table


async def poll_heights(http: httpx.AsyncClient, progress: Progress) -> None:
    import trio

    while True:
        for i, api in enumerate(progress.apis):
            progress.heights[i] = int_field(await fetch_status(http, api), "height")
        await trio.sleep(HEIGHT_POLL_S)


async def show_progress(progress: Progress, console: Console, live: bool) -> None:
    """A rich Live panel on `console`, or a plain line every few seconds; until cancelled."""
    import trio
    from rich.live import Live

    if not live:
        while True:
            await trio.sleep(PLAIN_PROGRESS_S)
            console.print(progress.line(trio.current_time()), highlight=False)
    now = trio.current_time()
    with Live(progress.panel(now), console=console, refresh_per_second=LIVE_REFRESH_PER_S) as view:
        while True:
            await trio.sleep(1 / LIVE_REFRESH_PER_S)
            view.update(progress.panel(trio.current_time()))
