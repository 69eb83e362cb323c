"""Structured logs: one line per event, key=value, to a file per node (and to stdout if asked).

Owns: the line format, the level names of `bft node --log-level` and the logger set-up of a
node process. `RateLimitedLog` (at most one
line per kind and source every few seconds, with a count of the lines left out) lives in
`net.ratelog`, since the transport needs it too, and is re-exported here.
May not: decide what is logged; callers pass the event and its fields.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import time
from pathlib import Path
from typing import Final

from net.ratelog import LOG_MAX_KEYS, LOG_WINDOW_S, RateLimitedLog

__all__ = [
    "LOG_BACKUPS",
    "LOG_LEVELS",
    "LOG_MAX_BYTES",
    "LOG_MAX_KEYS",
    "LOG_WINDOW_S",
    "KeyValueFormatter",
    "RateLimitedLog",
    "kv",
    "setup_node_logging",
]


def kv(**fields: object) -> str:
    """`key=value` pairs in order; values with spaces, quotes or `=` are quoted."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c in text for c in ' "=\n'):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={stamp}.{int(record.msecs):03d}Z level={record.levelname.lower()} {record.getMessage()}"
        if record.exc_info:
            line += " " + kv(exception=self.formatException(record.exc_info))
        return line


# A peer that makes us refuse messages makes us write log lines: rotate so the disk stays bounded.
LOG_MAX_BYTES = 64 * 1024 * 1024
LOG_BACKUPS = 3


# `bft node --log-level`: the names operators type, lower case as in the lines' `level=`.
LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def setup_node_logging(log_file: Path, *, level: int = logging.INFO, stdout: bool = False) -> None:
    """Send every `bft.*` logger of this process at `level` and above to `log_file`, one
    key=value line per event, rotated at LOG_MAX_BYTES with LOG_BACKUPS old files kept; with
    `stdout`, the same lines to standard output too.

    Why as well as, not instead of, the file: the file is the node's record (`bft cluster`, the
    cluster tests and an operator's `grep` read it, and it rotates); stdout is for whoever
    supervises the process (a container runtime, journald, a terminal), which keeps its own."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = KeyValueFormatter()
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(formatter)
    handlers: list[logging.Handler] = [handler]
    if stdout:
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(formatter)
        handlers.append(console)
    root = logging.getLogger("bft")
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
