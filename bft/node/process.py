"""Running one node as a process: logging, signals, clean shutdown.

Owns: `run_node`, the body of `bft node`.
May not: know about clusters; `bft.node.cluster` starts processes of this.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import trio

from bft.node.config import load_node_config
from bft.node.logs import kv, setup_node_logging
from bft.node.runtime import Node, crash_of

log = logging.getLogger("bft.node")

# How long a clean shutdown may take before the process gives up waiting.
SHUTDOWN_DEADLINE_S = 5.0


async def _serve_until_signal(node: Node) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            async for signum in signals:
                log.info(kv(event="shutdown", node=node.me, signal=signal.Signals(signum).name))
                nursery.cancel_scope.deadline = trio.current_time() + SHUTDOWN_DEADLINE_S
                nursery.cancel_scope.cancel()
                break


def run_node(
    home: Path, byzantine: str | None = None, *, log_level: int = logging.INFO, log_stdout: bool = False
) -> int:
    """Run the node at `home` until SIGINT or SIGTERM; 0 on a clean stop, 1 after a crash (the
    node logged it as `event=crashed`, with its traceback). Log lines at `log_level` and above go
    to the node's log file, and with `log_stdout` to stdout too (`setup_node_logging`)."""
    config = load_node_config(home)
    setup_node_logging(config.log_file, level=log_level, stdout=log_stdout)
    node = Node(home, byzantine)
    try:
        trio.run(_serve_until_signal, node)
    except Exception as e:
        crash = crash_of(e)
        if crash is None:
            raise
        print(f"bft node: crashed: {crash} (traceback in {config.log_file})", file=sys.stderr)
        return 1
    return 0
