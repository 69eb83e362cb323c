"""How `bft bench` reads a node: its `/status` and its `/metrics`, over HTTP, as any user could.

Owns: `fetch_status` (the node's `/status` object, or None), `int_field` (an integer of it),
`fetch_sample` and `sample_all` (each node's resource figures from `/metrics`, completed from
/proc for a process of the local cluster), and the timeout of these probes.
May not: submit transactions (that is `bft.bench.load`), or reach a node other than over HTTP;
import httpx or trio at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from bft.bench.usage import NodeSample, merge_samples, parse_metrics, proc_sample

if TYPE_CHECKING:
    import httpx

PROBE_TIMEOUT_S: Final = 2.0


async def fetch_status(http: httpx.AsyncClient, api: str) -> dict[str, Any] | None:
    """The node's `/status`, or None if it does not answer with a JSON object."""
    import httpx

    try:
        response = await http.get(f"{api}/status", timeout=PROBE_TIMEOUT_S)
        data = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def int_field(status: dict[str, Any] | None, name: str) -> int | None:
    """The integer `name` of a `/status` object; None if there is none (or no status)."""
    value = None if status is None else status.get(name)
    return value if isinstance(value, int) else None


async def fetch_sample(http: httpx.AsyncClient, api: str, pid: int | None) -> NodeSample:
    """The node's resource figures from `/metrics`, completed from /proc for a local process."""
    import httpx
    import trio

    at = trio.current_time()
    try:
        response = await http.get(f"{api}/metrics", timeout=PROBE_TIMEOUT_S)
        sample = parse_metrics(response.text, at) if response.status_code == 200 else NodeSample(at=at)
    except httpx.HTTPError:
        sample = NodeSample(at=at)
    return sample if pid is None else merge_samples(sample, proc_sample(pid, at))


async def sample_all(
    http: httpx.AsyncClient, apis: Sequence[str], pids: Sequence[int | None]
) -> list[NodeSample]:
    import trio

    samples: list[NodeSample] = [NodeSample()] * len(apis)

    async def one(i: int) -> None:
        samples[i] = await fetch_sample(http, apis[i], pids[i])

    async with trio.open_nursery() as nursery:
        for i in range(len(apis)):
            nursery.start_soon(one, i)
    return samples
