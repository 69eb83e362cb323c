"""The checks `bft cluster` makes before it starts any node: one cluster per home, free ports.

Owns: the advisory lock on HOME/cluster.lock (held for the cluster's lifetime, with the holder's
pid written in it) and the check that every p2p and API address a node will listen on can be
bound now.
May not: start or stop processes; it only answers "may a cluster start here?".

Why: a second `bft cluster` on the same home (or on ports another program holds) used to look
healthy: its nodes died at once with "address already in use", its live view polled the same
ports and showed the first cluster's nodes as its own, and it exited 0. The lock is `flock`, so
the kernel releases it when the holder dies, even by kill -9: a stale lock file never blocks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

LOCK_FILE_NAME: Final = "cluster.lock"


class ClusterRefused(Exception):
    """The cluster cannot start; `str()` is the message for the user."""


@contextlib.contextmanager
def hold_home_lock(home: Path) -> Iterator[Path]:
    """Hold the lock on `home` (created if missing) until the block exits; ClusterRefused, naming
    the home and the pid that holds it, if another process holds it."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / LOCK_FILE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _read_pid(fd)
            who = f"pid {holder}" if holder is not None else "another process"
            raise ClusterRefused(
                f"{home} is in use by another bft cluster ({who}, lock {path}): stop that one "
                "first (Ctrl-C in its terminal), or pass --home DIR --base-port P for a second cluster"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        # Closing the descriptor releases the lock; the file stays, harmless once unlocked.
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Listen:
    """An address a node of the cluster will listen on: `what` says whose ("node 0 p2p")."""

    what: str
    host: str
    port: int


def check_ports_free(listens: Sequence[Listen]) -> None:
    """ClusterRefused naming the first address of `listens` that cannot be bound now.

    Binds as the node's listener does (SO_REUSEADDR, so a port left in TIME_WAIT by a stopped
    cluster counts as free, as it is for the node) and closes at once."""
    for listen in listens:
        reason = _bind_error(listen.host, listen.port)
        if reason is not None:
            raise ClusterRefused(
                f"{listen.host}:{listen.port} ({listen.what}) cannot be used: {reason}; no node was "
                "started. Stop the program that holds it (is another bft cluster running?), or pass "
                "--home DIR --base-port P for a cluster on other ports"
            )


def _bind_error(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        return str(e)
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                return e.strerror or str(e)
    return None
