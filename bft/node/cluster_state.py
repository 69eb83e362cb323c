"""What `bft cluster` says about each node process it started, and how it exits.

Owns: the state of one node as the live view shows it (`starting`, `running`, `exited`,
`unreachable`), the words for a process's exit ("exited 1: OSError: ...", "killed by SIGKILL"),
the last line a node wrote to its output, and the exit status of `bft cluster`.
May not: start, poll or signal processes; everything here is a pure function of what the cluster
observed, so that every combination can be tested without a process.

Why the states differ: before this, a node that had died looked exactly like one still starting
("(down)"), so a node whose port was taken stayed "(down)" forever with no reason given.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

# A node process gets this long, from its start, to answer /status before the view calls it
# unreachable: imports, key loading and opening the stores take a few seconds on a slow machine.
START_GRACE_S: Final = 15.0
# How much of the end of a node's output file is read for its last line.
TAIL_BYTES: Final = 4096

# Exit statuses of `bft cluster`.
EXIT_OK: Final = 0
EXIT_NODE_FAILED: Final = 1
EXIT_REFUSED: Final = 2
EXIT_INTERRUPTED: Final = 130

StateKind = Literal["starting", "running", "exited", "unreachable"]


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as the live view shows it: `kind` is a closed set, `detail` the human part
    ("exited 1: OSError: [Errno 98] address already in use", "killed by SIGKILL")."""

    kind: StateKind
    detail: str = ""

    @property
    def label(self) -> str:
        return self.detail or self.kind

    @property
    def short(self) -> str:
        """The label for a table cell: "exited 1" without the error line (printed once, in full,
        when the node exited), "unreachable" without its duration."""
        if self.kind == "exited":
            return self.detail.partition(":")[0]
        return self.kind


def node_state(
    returncode: int | None,
    answering: bool,
    running_s: float,
    last_line: str | None,
    grace_s: float = START_GRACE_S,
) -> NodeState:
    """The state of a node process: `returncode` is None while it runs; `answering` says whether
    its /status answered the last poll; `running_s` is the time since the process started.

    An exited process is `exited` even if something answers on its port: that is another
    program's node, not this cluster's."""
    if returncode is not None:
        return NodeState("exited", describe_exit(returncode, last_line))
    if answering:
        return NodeState("running")
    if running_s <= grace_s:
        return NodeState("starting")
    return NodeState("unreachable", f"unreachable: no answer to /status after {running_s:.0f} s")


def describe_exit(returncode: int, last_line: str | None) -> str:
    """A process's exit in a few words: "exited 1: <its last line>", "exited 0", "killed by SIGKILL"
    (a negative `returncode` is the signal that ended it, as subprocess reports it)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    if last_line:
        return f"exited {returncode}: {last_line}"
    return f"exited {returncode}"


def last_line(path: Path, offset: int = 0) -> str | None:
    """The last non-empty line written to `path` past byte `offset` (what this run of the process
    wrote, not an earlier run appending to the same file), without a "bft node: " prefix; None if
    there is none or the file cannot be read."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(offset, size - TAIL_BYTES)
            f.seek(start)
            data = f.read(size - start)
    except OSError:
        return None
    lines = [line.strip() for line in data.decode(errors="replace").splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1].removeprefix("bft node: ")


def cluster_exit_status(
    exited_before_stop: list[int], codes_after_stop: list[int | None], interrupted_again: bool
) -> int:
    """The exit status of `bft cluster`: 130 if a second Ctrl-C cut the clean stop short (the nodes
    still running were killed); 1 if a node exited non-zero or by a signal before the stop, or did
    not stop cleanly (exit 0) on SIGTERM; else 0.

    `exited_before_stop` holds the return codes of the nodes that exited by themselves while the
    cluster ran; `codes_after_stop` those of the nodes the stop ended (None: never started)."""
    if interrupted_again:
        return EXIT_INTERRUPTED
    if any(code != 0 for code in exited_before_stop):
        return EXIT_NODE_FAILED
    if any(code is not None and code != 0 for code in codes_after_stop):
        return EXIT_NODE_FAILED
    return EXIT_OK
