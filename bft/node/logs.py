"""Structured logs: one line per event, key=value, to a file per node.

Owns: the line format, the logger set-up of a node process, and `RateLimitedLog` (at most one
line per kind and source every few seconds, with a count of the lines left out).
May not: decide what is logged; callers pass the event and its fields.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Final


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


# A key (kind and source) logs at most one line per window; the others are counted.
LOG_WINDOW_S: Final = 5.0
# Keys remembered; the oldest is forgotten beyond this (its count logged first).
LOG_MAX_KEYS: Final = 1024


class RateLimitedLog:
    """Log lines thinned per key: the first line of a key in a window is written, the rest of
    that window are counted, and the next line written for the key says how many were left out
    (`suppressed=N`). Why: a peer that floods us with bad messages would otherwise write tens of
    thousands of lines a second and rotate the node's history away. Metrics, not the log, keep
    the exact counts."""

    def __init__(
        self,
        logger: logging.Logger,
        window_s: float = LOG_WINDOW_S,
        max_keys: int = LOG_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (when its window ends, lines left out in it)
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def log(self, level: int, key: Hashable, line: str) -> bool:
        """Write `line` unless `key` already wrote one in this window; whether it was written."""
        now = self._clock()
        known = self._keys.get(key)
        if known is not None and now < known[0]:
            self._keys[key] = (known[0], known[1] + 1)
            return False
        left_out = known[1] if known is not None else 0
        self._logger.log(level, line + (f" suppressed={left_out}" if left_out else ""))
        self._keys[key] = (now + self._window_s, 0)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            old, (_, count) = self._keys.popitem(last=False)
            if count:
                self._logger.log(level, kv(event="log_suppressed", key=old, suppressed=count))
        return True


# A peer that makes us refuse messages makes us write log lines: rotate so the disk stays bounded.
LOG_MAX_BYTES = 64 * 1024 * 1024
LOG_BACKUPS = 3


def setup_node_logging(log_file: Path, *, level: int = logging.INFO) -> None:
    """Send every `bft.*` logger of this process to `log_file`, one key=value line per event,
    rotated at LOG_MAX_BYTES with LOG_BACKUPS old files kept."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_file, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8"
    )
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger("bft")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
