"""Linux network namespaces for the multi-host tests: one namespace per validator, each with its
own address on a bridge of the test's own, created and removed by the test.

Owns: `Hosts` (a context manager: a bridge with an address in the root namespace, n namespaces
each with a veth pair into the bridge and the address 10.<a>.<b>.<i+1>/24, and their removal,
whatever happened), `netns_unavailable` (why this machine cannot, or None).
May not: touch any interface, namespace or route it did not create: every name it makes carries
this process's id, and the subnet is one no interface here has.

Why: `bft testnet --hosts` must work across machines, where nodes listen on and dial addresses
other than 127.0.0.1. Namespaces give each node a network stack of its own on this machine, so a
node really is reached at its own address, over a real (virtual) Ethernet link.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from types import TracebackType

COMMAND_TIMEOUT_S = 10.0


def _ip(*args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(result.args)}: {result.stderr.strip() or result.returncode}")


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (not Linux, not root, no `ip`, refused), or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"bftprobe{os.getpid()}"
    made = _ip("netns", "add", probe)
    if made.returncode != 0:
        return f"`ip netns add` refused: {made.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.0.0.0/8 that no interface here has an address in, chosen from this pid."""
    shown = _ip("-o", "-4", "addr", "show")
    _check(shown)
    taken = [ipaddress.ip_interface(word).network for word in shown.stdout.split() if "/" in word]
    for k in range(256):
        n = (os.getpid() + k) % 250 + 1
        subnet = ipaddress.IPv4Network(f"10.{200 + n % 50}.{n}.0/24")
        if not any(subnet.overlaps(t) for t in taken):
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet")


class Hosts:
    """`count` namespaces on one bridge; `addresses[i]` is namespace i's address, `exec_prefix(i)`
    the command prefix that runs a program inside it. The root namespace has an address on the
    bridge too, so the test reaches every node's API at its own address."""

    def __init__(self, count: int) -> None:
        tag = f"{os.getpid() % 100000}"
        self.bridge = f"bftbr{tag}"
        self.namespaces = [f"bftns{tag}-{i}" for i in range(count)]
        self._veths = [f"bftv{tag}n{i}" for i in range(count)]
        self.subnet = _free_subnet()
        hosts = list(self.subnet.hosts())
        self.addresses = [str(hosts[i]) for i in range(count)]
        self.gateway = str(hosts[-1])

    def exec_prefix(self, i: int) -> Sequence[str]:
        return ["ip", "netns", "exec", self.namespaces[i]]

    def __enter__(self) -> Hosts:
        try:
            self._create()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._remove()

    def _create(self) -> None:
        prefix = self.subnet.prefixlen
        _check(_ip("link", "add", self.bridge, "type", "bridge"))
        _check(_ip("addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge))
        _check(_ip("link", "set", self.bridge, "up"))
        for ns, veth, address in zip(self.namespaces, self._veths, self.addresses, strict=True):
            _check(_ip("netns", "add", ns))
            _check(_ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}p"))
            _check(_ip("link", "set", f"{veth}p", "netns", ns))
            _check(_ip("link", "set", f"{veth}p", "name", "eth0", netns=ns))
            _check(_ip("addr", "add", f"{address}/{prefix}", "dev", "eth0", netns=ns))
            _check(_ip("link", "set", "eth0", "up", netns=ns))
            _check(_ip("link", "set", "lo", "up", netns=ns))
            _check(_ip("link", "set", veth, "master", self.bridge))
            _check(_ip("link", "set", veth, "up"))

    def _remove(self) -> None:
        # Deleting a namespace deletes its end of the veth pair, and with it the other end.
        for ns in self.namespaces:
            _ip("netns", "del", ns)
        for veth in self._veths:
            _ip("link", "del", veth)
        _ip("link", "del", self.bridge)

    def leftovers(self) -> list[str]:
        """What of ours is still there (empty after a clean exit)."""
        listed = _ip("netns", "list").stdout + _ip("-o", "link", "show").stdout
        return [name for name in [*self.namespaces, self.bridge, *self._veths] if name in listed]
