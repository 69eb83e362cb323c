"""The node processes of a chaos run, and what can be done to them: start, kill -9, SIGSTOP and
SIGCONT, stop cleanly, wipe the data directory, and read their memory.

Owns: `NodeProcess` (one `bft node` process at a time for one home, its output appended to
`<home>/node.out`, in its own process group so a Ctrl-C of the runner reaches only the runner).
May not: decide when anything happens (the runner does), or touch a process it did not start.

A killed process is reaped at once, so no zombie waits for the end of the run; a paused one is
resumed before it is stopped (a stopped process cannot handle SIGTERM).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path
from typing import Final

import trio

from bft.node.cluster import node_command
from bft.node.config import load_node_config

# A node asked to stop (SIGTERM) is killed after this.
STOP_DEADLINE_S: Final = 10.0


class NodeProcess:
    def __init__(self, index: int, home: Path, byzantine: str | None) -> None:
        self.index = index
        self.home = home
        self.byzantine = byzantine
        self.process: trio.Process | None = None
        self.paused = False
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    async def start(self) -> None:
        """Start the node (it must not be running)."""
        assert not self.running, f"node {self.index} is already running"
        with (self.home / "node.out").open("ab") as sink:
            self.process = await trio.lowlevel.open_process(
                node_command(self.home, self.byzantine),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        self.paused = False
        self.starts += 1

    async def kill(self) -> None:
        """kill -9, and reap it."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGKILL)
        await process.wait()
        self.paused = False

    def pause(self) -> None:
        if self.running and not self.paused and self.process is not None:
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.running and self.paused and self.process is not None:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    async def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL past `STOP_DEADLINE_S`."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.resume()
        process.terminate()
        with trio.move_on_after(STOP_DEADLINE_S):
            await process.wait()
            return
        await self.kill()

    def wipe(self) -> None:
        """Remove the node's data directory (the node must be down): its safety record, its
        blocks and its application state are gone, as after a lost disk."""
        assert not self.running, f"wipe node {self.index} while it runs"
        shutil.rmtree(load_node_config(self.home).data_dir, ignore_errors=True)

    def rss_bytes(self) -> int | None:
        """The process's resident memory, from /proc (None if not running or not Linux)."""
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
        return None


def exit_description(process: trio.Process | None) -> str:
    if process is None or process.returncode is None:
        return "running"
    code = process.returncode
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited {code}"
