"""The cluster under test: a local testnet whose every p2p link runs through the relay, and
whose node processes can be killed, paused, wiped, restarted and skewed.

Owns: `Testbed` (the testnet it writes, the relay, one `NodeProcess` per validator, the link
state: each directed link's faults and the current partition, and `apply`, which carries out
one scenario action), so that `bft chaos run` and live control of `bft cluster` do the same
thing the same way. May not: decide when to act (the runner or the user does), or judge.

Links: what the scenario says of a link (its delay, drop rate, ..., its own one-way cut) and the
partition are kept apart, and the relay is given their combination: a link is cut if its own
`cut` is set or the partition puts its ends on different sides. So `clear` of one link's cut
leaves a partition in place, and `heal` lifts both.

A node's config gets `[p2p] dial`, the relay's port for each peer (the genesis still names the
nodes' real addresses, which they listen on), and `[chaos] clock_rate` when its clock is
skewed; each start rewrites it from the testnet's own config plus these.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import trio

from bft.chaos.links import LinkFaults
from bft.chaos.processes import NodeProcess
from bft.chaos.relay import Relay
from bft.chaos.scenario import (
    CLEAN_LINK_FAULTS,
    Action,
    ClearLinks,
    Heal,
    Kill,
    Link,
    LinkValue,
    Partition,
    Pause,
    Restart,
    Resume,
    Scenario,
    SetLinks,
    Skew,
    Wipe,
)
from bft.node.config import CONFIG_FILE_NAME, format_host_port, load_node_config
from bft.node.testnet import free_base_port, testnet_ports, write_testnet
from net.transport import DEFAULT_MAX_FRAME_BYTES

log = logging.getLogger("bft.chaos")

LOCALHOST: Final = "127.0.0.1"


class Testbed:
    """`scenario.cluster.nodes` validators under `out/net`, on 127.0.0.1 from `base_port` on (a
    free run of ports if None)."""

    def __init__(self, scenario: Scenario, out: Path, seed: int, base_port: int | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        n = scenario.cluster.nodes
        self.nodes = n
        self.base_port = base_port if base_port is not None else free_base_port(2 * n)
        self.net_dir = out / "net"
        self.homes = write_testnet(
            n,
            self.net_dir,
            self.base_port,
            chain_id=f"chaos-{scenario.name}-{seed}",
            consensus=scenario.consensus,
        )
        self._base_configs = [(home / CONFIG_FILE_NAME).read_text() for home in self.homes]
        byzantine = scenario.cluster.byzantine
        self.procs = [NodeProcess(i, home, byzantine.get(i)) for i, home in enumerate(self.homes)]
        self.clock_rates = {i: scenario.cluster.rate_of(i) for i in range(n)}
        routes = {
            (d, t): (LOCALHOST, testnet_ports(self.base_port, t)[0])
            for d in range(n)
            for t in range(n)
            if d != t
        }
        self.relay = Relay(routes, seed=seed, max_frame_bytes=DEFAULT_MAX_FRAME_BYTES)
        self._fields: dict[Link, dict[str, LinkValue]] = {link: dict(CLEAN_LINK_FAULTS) for link in routes}
        self._side: dict[int, int] | None = None  # node -> partition side, while partitioned

    # Addresses.

    def api_url(self, i: int) -> str:
        return f"http://{LOCALHOST}:{testnet_ports(self.base_port, i)[1]}"

    @property
    def api_urls(self) -> list[str]:
        return [self.api_url(i) for i in range(self.nodes)]

    @property
    def honest(self) -> tuple[int, ...]:
        return self.scenario.cluster.honest

    def serving(self) -> list[int]:
        """The nodes whose process runs and is not paused (where a client may go)."""
        return [p.index for p in self.procs if p.running and not p.paused]

    # Running.

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the relay (in `nursery`), then every node."""
        await nursery.start(self.relay.run)
        for proc in self.procs:
            await self._start(proc)

    async def stop(self) -> None:
        """Stop every node cleanly (the relay stops with its nursery)."""
        async with trio.open_nursery() as nursery:
            for proc in self.procs:
                nursery.start_soon(proc.stop)

    async def _start(self, proc: NodeProcess) -> None:
        i = proc.index
        dial = "\n".join(
            f'{t} = "{format_host_port(LOCALHOST, self.relay.port_of(i, t))}"'
            for t in range(self.nodes)
            if t != i
        )
        text = self._base_configs[i] + f"\n[p2p.dial]\n{dial}\n"
        if self.clock_rates[i] != 1.0:
            text += f"\n[chaos]\nclock_rate = {self.clock_rates[i]!r}\n"
        (proc.home / CONFIG_FILE_NAME).write_text(text)
        load_node_config(proc.home)  # what we wrote must be a valid config
        await proc.start()

    # Actions.

    async def apply(self, action: Action) -> tuple[int, ...]:
        """Carry out one scenario action; the nodes it touched."""
        match action:
            case Partition(groups=groups):
                self._side = {node: side for side, group in enumerate(groups) for node in group}
                self._sync_links()
                return tuple(range(self.nodes))
            case Heal():
                self._side = None
                for fields in self._fields.values():
                    fields.update(CLEAN_LINK_FAULTS)
                self._sync_links()
                return tuple(range(self.nodes))
            case SetLinks(links=links, changes=changes):
                for link in links:
                    self._fields[link].update(changes)
                self._sync_links()
                return _ends(links)
            case ClearLinks(links=links, fields=names):
                for link in links:
                    self._fields[link].update({name: CLEAN_LINK_FAULTS[name] for name in names})
                self._sync_links()
                return _ends(links)
            case Kill(nodes=nodes):
                for i in nodes:
                    await self.procs[i].kill()
                return nodes
            case Wipe(nodes=nodes):
                for i in nodes:
                    await self.procs[i].kill()
                    self.procs[i].wipe()
                return nodes
            case Restart(nodes=nodes):
                for i in nodes:
                    if not self.procs[i].running:
                        await self._start(self.procs[i])
                return nodes
            case Pause(nodes=nodes):
                for i in nodes:
                    self.procs[i].pause()
                return nodes
            case Resume(nodes=nodes):
                for i in nodes:
                    self.procs[i].resume()
                return nodes
            case Skew(node=node, rate=rate):
                self.clock_rates[node] = rate
                proc = self.procs[node]
                if proc.running:
                    await proc.stop()
                    await self._start(proc)
                return (node,)
        raise AssertionError(f"unknown action {action!r}")

    async def heal_everything(self) -> None:
        """The end of a run: links healed, every node resumed and running again."""
        await self.apply(Heal())
        for proc in self.procs:
            proc.resume()
            if not proc.running:
                await self._start(proc)

    def _sync_links(self) -> None:
        current = self.relay.links()
        for link, fields in self._fields.items():
            wanted = _link_faults(fields, self._cut_by_partition(link))
            if current.get(link) != wanted:
                self.relay.set_link(link[0], link[1], wanted)

    def _cut_by_partition(self, link: Link) -> bool:
        side = self._side
        return side is not None and side.get(link[0], -1) != side.get(link[1], -1)

    def active_faults(self) -> list[str]:
        """What is wrong right now, for the live line."""
        out = []
        if self._side is not None:
            out.append("partition")
        faulty = sum(1 for fields in self._fields.values() if fields != CLEAN_LINK_FAULTS)
        if faulty:
            out.append(f"{faulty} faulty links")
        for proc in self.procs:
            if not proc.running:
                out.append(f"{proc.index} down")
            elif proc.paused:
                out.append(f"{proc.index} paused")
        return out


def _ends(links: Iterable[Link]) -> tuple[int, ...]:
    return tuple(sorted({node for link in links for node in link}))


def _link_faults(fields: Mapping[str, LinkValue], partitioned: bool) -> LinkFaults:
    bandwidth = float(fields["bandwidth_bytes_per_s"])
    return LinkFaults(
        delay_s=float(fields["delay_s"]),
        jitter_s=float(fields["jitter_s"]),
        distribution=str(fields["distribution"]),  # type: ignore[arg-type]
        drop_rate=float(fields["drop_rate"]),
        duplicate_rate=float(fields["duplicate_rate"]),
        reorder_rate=float(fields["reorder_rate"]),
        bandwidth_bytes_per_s=bandwidth if bandwidth > 0 else None,
        cut=bool(fields["cut"]) or partitioned,
    )
